// SPDX-License-Identifier: Apache-2.0

package strictyaml

import (
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type color string

func (color) Values() []string { return []string{"red", "green"} }

type leaf struct {
	Name  string        `json:"name" required:"true" doc:"what it is called"`
	MTU   int           `json:"mtu" range:"68..9000"`
	Mode  string        `json:"mode" oneOf:"a,b"`
	Color color         `json:"color"`
	Wait  time.Duration `json:"wait"`
}

func (l *leaf) Validate(e FieldErrors) {
	if l.Name == "bad" {
		e.Add("name", "%q is refused by Validate", l.Name)
	}
}

type root struct {
	Leaves []leaf            `json:"leaves" required:"true"`
	Data   map[string]string `json:"data"`
	Self   selfDecoded       `json:"self"`
}

// selfDecoded decodes itself and sees the decoder's Context.
type selfDecoded struct{ Got string }

func (s *selfDecoded) DecodeYAML(d *Decoder, n *yaml.Node, path string) {
	v, ok := d.Scalar(n, path, "a word")
	if ok {
		s.Got = v + "/" + d.Context.(string)
	}
}

// Every problem is reported with its field path, line and what is accepted; values
// that decode land with their defaults kept.
func TestDecode(t *testing.T) {
	doc := `
leaves:
  - {name: one, mtu: 1500, mode: a, color: red, wait: 10ms}
  - {mtu: 20, mode: c, color: blue, extra: 1}
  - {name: bad}
data: {a: true, b: 016}
self: word
`
	n, err := ParseDocument([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	var r root
	d := &Decoder{Context: "ctx"}
	d.DecodeStruct(n, Elem(&r), "")
	want := []string{
		`leaves[1].extra: unknown field (want one of: name, mtu, mode, color, wait) (line 4)`,
		`leaves[1].name: required: what it is called (line 4)`,
		`leaves[1].mtu: 20 is out of range (want 68 to 9000) (line 4)`,
		`leaves[1].mode: "c" is not one of a, b (line 4)`,
		`leaves[1].color: "blue" is not one of red, green (line 4)`,
		`leaves[2].name: "bad" is refused by Validate (line 5)`,
	}
	got := strings.Split(d.Err().Error(), "\n")
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if d.ErrCount() != len(want) {
		t.Errorf("ErrCount %d, want %d", d.ErrCount(), len(want))
	}
	if r.Leaves[0].Wait != 10*time.Millisecond || r.Leaves[0].Color != "red" {
		t.Errorf("leaf 0: %+v", r.Leaves[0])
	}
	if r.Data["a"] != "true" || r.Data["b"] != "016" {
		t.Errorf("data keeps the text as written: %v", r.Data)
	}
	if r.Self.Got != "word/ctx" {
		t.Errorf("self-decoded: %q", r.Self.Got)
	}
}

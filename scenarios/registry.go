// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"cmp"
	"context"
	"fmt"
	"net/netip"
	"reflect"
	"sort"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"podpath/internal/strictyaml"
	"podpath/topology"
)

// StepDef defines a step kind: the name a scenario file gives after `check:` (or
// `do:`), its parameters (`with:`) and expected values (`expect:`) as structs whose
// field values are the defaults, and the function that runs it; RegisterStep adds it.
// Struct fields are named by their json tag; `required:"true"`, `oneOf:"a,b"`,
// `range:"lo..hi"` and `doc:"..."` tags say what a file must and may give (see
// strictyaml.Decoder). Use an empty struct for a step without parameters or expected
// values.
type StepDef[W, E any] struct {
	Name string
	// Summary is one line for `podpath scenarios --steps`.
	Summary string
	// Agents says the step talks to the agents: the stage's topology must run them
	// (podNetwork: agent).
	Agents bool
	With   W
	Expect E
	// Timeout is the step's deadline unless the scenario file gives one (`timeout:`);
	// 0: DefaultStepTimeout. Waits inside the step have tighter deadlines of their own:
	// this one bounds the step as a whole.
	Timeout time.Duration
	// Run drives traffic and records checks with s.Check; an error is a setup failure
	// that ends the scenario.
	Run func(ctx context.Context, s *Stage, with W, expect E) error
}

type stepKind struct {
	name, summary string
	agents        bool
	timeout       time.Duration
	with, expect  reflect.Value // defaults
	run           func(ctx context.Context, s *Stage, with, expect any) error
}

var stepKinds = map[string]*stepKind{}

// RegisterStep makes a step kind available to scenario files. Step packages call it
// from init, the way database/sql drivers register: a program that blank-imports
// podpath/scenarios/steps has every step kind of the catalog. It panics when the name
// is taken.
func RegisterStep[W, E any](def StepDef[W, E]) {
	if _, dup := stepKinds[def.Name]; dup {
		panic("scenarios: step kind " + def.Name + " registered twice")
	}
	stepKinds[def.Name] = &stepKind{
		name: def.Name, summary: def.Summary, agents: def.Agents, timeout: cmp.Or(def.Timeout, DefaultStepTimeout),
		with: reflect.ValueOf(def.With), expect: reflect.ValueOf(def.Expect),
		run: func(ctx context.Context, s *Stage, with, expect any) error {
			return def.Run(ctx, s, with.(W), expect.(E))
		},
	}
}

func stepKindNames() []string {
	var out []string
	for n := range stepKinds {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// StepSpec is one step of a stage: a step kind with its parameters and expected
// values, decoded and checked.
type StepSpec struct {
	Kind   string
	With   any
	Expect any
	// Timeout is the step's deadline: the file's `timeout:`, else its kind's default.
	Timeout time.Duration
	// Path is the step's field path (stages[0].steps[2]), for messages.
	Path string
	kind *stepKind
}

func (s *StepSpec) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	s.Path = path
	if n == nil || n.Kind != yaml.MappingNode {
		d.Fail(n, path, "want a mapping {check: KIND, with: {...}, expect: {...}}, got %s", strictyaml.NodeKindOrNothing(n))
		return
	}
	var kindNode, with, expect *yaml.Node
	kindKey := "check"
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "check", "do":
			if kindNode != nil {
				d.Fail(k, strictyaml.JoinPath(path, k.Value), "a step has one kind: give check or do, once")
				continue
			}
			kindNode, kindKey = v, k.Value
		case "with":
			with = v
		case "expect":
			expect = v
		case "timeout":
			s.Timeout = decodeTimeout(d, v, strictyaml.JoinPath(path, k.Value))
		default:
			d.Fail(k, strictyaml.JoinPath(path, k.Value), "unknown field (want one of: check (or do), with, expect, timeout)")
		}
	}
	if kindNode == nil {
		d.Fail(n, strictyaml.JoinPath(path, "check"), "required: the step kind (have: %s)", strings.Join(stepKindNames(), ", "))
		return
	}
	name, ok := d.Scalar(kindNode, strictyaml.JoinPath(path, kindKey), "a step kind")
	if !ok {
		return
	}
	k, ok := stepKinds[name]
	if !ok {
		d.Fail(kindNode, strictyaml.JoinPath(path, kindKey), "unknown step kind %q (have: %s)", name, strings.Join(stepKindNames(), ", "))
		return
	}
	s.Kind, s.kind = name, k
	if s.Timeout == 0 {
		s.Timeout = k.timeout
	}
	if st := stateOf(d).stage; k.agents && st != nil && st.Topology.Spec != nil && st.Topology.Spec.PodNetwork != topology.PodNetworkAgent {
		d.Fail(kindNode, strictyaml.JoinPath(path, kindKey), "step kind %s talks to the agents, and topology %s runs none (podNetwork: kernel); set podNetwork: agent", name, st.Topology.Name)
	}
	s.With = decodeParams(d, with, n, k.with, strictyaml.JoinPath(path, "with"), "parameter of step kind "+name)
	s.Expect = decodeParams(d, expect, n, k.expect, strictyaml.JoinPath(path, "expect"), "expected value of step kind "+name)
}

// DefaultStepTimeout is the deadline of a step whose kind declares none and whose file
// gives none; MaxStepTimeout is the longest a file may give.
const (
	DefaultStepTimeout = 3 * time.Minute
	MaxStepTimeout     = time.Hour
)

// decodeTimeout reads a step's `timeout:`, a duration in (0, MaxStepTimeout]; 0 when
// it is not one (the problem is reported).
func decodeTimeout(d *strictyaml.Decoder, n *yaml.Node, path string) time.Duration {
	text, ok := d.Scalar(n, path, "a duration like 30s or 2m")
	if !ok {
		return 0
	}
	t, err := time.ParseDuration(text)
	if err != nil || t <= 0 || t > MaxStepTimeout {
		d.Fail(n, path, "%q is not a duration in (0, %v] like 30s or 2m: the step's deadline", text, MaxStepTimeout)
		return 0
	}
	return t
}

// decodeParams decodes n over a copy of the defaults; when n is absent, problems are
// reported at the step's line.
func decodeParams(d *strictyaml.Decoder, n, step *yaml.Node, defaults reflect.Value, path, noun string) any {
	if n == nil {
		n = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: step.Line}
	}
	v := reflect.New(defaults.Type()).Elem()
	v.Set(defaults)
	outer := d.Field
	d.Field = noun
	d.DecodeStruct(n, v, path)
	d.Field = outer
	return v.Interface()
}

// StepKindDoc describes a step kind for `podpath scenarios --steps`.
type StepKindDoc struct {
	Name    string `json:"name"`
	Summary string `json:"summary"`
	Agents  bool   `json:"agents"`
	// Timeout is the kind's default deadline (a step's `timeout:` overrides it).
	Timeout string     `json:"timeout"`
	With    []ParamDoc `json:"with,omitempty"`
	Expect  []ParamDoc `json:"expect,omitempty"`
}

// ParamDoc is one parameter or expected value of a step kind.
type ParamDoc struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Required bool   `json:"required,omitempty"`
	Default  string `json:"default,omitempty"`
	Doc      string `json:"doc,omitempty"`
}

// StepKinds documents every step kind scenario files may use.
func StepKinds() []StepKindDoc {
	var out []StepKindDoc
	for _, n := range stepKindNames() {
		k := stepKinds[n]
		out = append(out, StepKindDoc{Name: n, Summary: k.summary, Agents: k.agents, Timeout: k.timeout.String(), With: paramDocs(k.with), Expect: paramDocs(k.expect)})
	}
	return out
}

func paramDocs(defaults reflect.Value) []ParamDoc {
	var out []ParamDoc
	for _, f := range strictyaml.Fields(defaults.Type()) {
		v := defaults.Field(f.Index)
		p := ParamDoc{Name: f.Key, Type: typeName(v.Type()), Required: f.Required, Doc: f.Doc}
		if len(f.OneOf) > 0 {
			p.Type = strings.Join(f.OneOf, "|")
			if v.Kind() == reflect.Slice {
				p.Type = "list of " + p.Type
			}
		}
		if !v.IsZero() {
			p.Default = formatDefault(v)
		}
		out = append(out, p)
	}
	return out
}

func typeName(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[PodRef]():
		return "pod"
	case reflect.TypeFor[NodeRef]():
		return "node"
	case reflect.TypeFor[MemberRef]():
		return "member"
	case reflect.TypeFor[ServiceRef]():
		return "service"
	case reflect.TypeFor[ConfigRef]():
		return "cilium-config"
	case reflect.TypeFor[Regexp]():
		return "regular expression"
	case strictyaml.DurationType:
		return "duration"
	case strictyaml.AddrType:
		return "IPv4 address"
	case strictyaml.PrefixType:
		return "IPv4 prefix"
	}
	if e, ok := reflect.Zero(t).Interface().(strictyaml.Enum); ok {
		return strings.Join(e.Values(), "|")
	}
	switch t.Kind() {
	case reflect.Slice:
		return "list of " + typeName(t.Elem())
	case reflect.Pointer:
		return typeName(t.Elem())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "number"
	case reflect.Float64:
		return "number"
	case reflect.Struct:
		var names []string
		for _, f := range strictyaml.Fields(t) {
			names = append(names, f.Key)
		}
		return "mapping of " + strings.Join(names, ", ")
	case reflect.Map:
		return "mapping of field: value"
	}
	return t.Kind().String()
}

func formatDefault(v reflect.Value) string {
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case netip.Addr:
		return x.String()
	}
	if v.Kind() == reflect.Slice {
		var parts []string
		for i := range v.Len() {
			parts = append(parts, fmt.Sprint(v.Index(i).Interface()))
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	return fmt.Sprint(v.Interface())
}

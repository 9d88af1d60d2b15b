// SPDX-License-Identifier: Apache-2.0

package strictyaml

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Decoder turns a YAML node tree into Go values strictly: an unknown field, a value of
// the wrong type, a value outside the accepted ones or a missing required value is an
// error naming its field path (stages[1].steps[3].with.mtu) and what would be
// accepted. It collects every problem instead of stopping at the first.
//
// Fields are found by their json tag; struct tags say more:
//
//	required:"true"     the key must be present
//	oneOf:"a,b,c"       a string (or each string of a list) must be one of these
//	range:"68..65535"   a number must lie in this range
//	doc:"..."           one line for `podpath scenarios --steps`
//
// Fields are decoded in declaration order, whatever the order of the keys, so a stage's
// topology is known when its steps name pods.
type Decoder struct {
	// Context is the caller's own state, for the types that decode themselves
	// (Unmarshaler): a scenario file keeps the folder file references are relative to
	// and the stage being decoded there.
	Context any
	// Field is what a struct key is called in messages ("field", "parameter of step
	// kind mtu-sweep"); empty means "field".
	Field string
	errs  []error
}

// Unmarshaler is implemented by types that decode themselves.
type Unmarshaler interface {
	DecodeYAML(d *Decoder, n *yaml.Node, path string)
}

// Enum is implemented by string types with a fixed set of values.
type Enum interface{ Values() []string }

// FieldErrors collects the problems a struct's Validate method finds; each names a field
// relative to the struct.
type FieldErrors struct {
	path string
	line int
	d    *Decoder
}

// Decoder is the decoder that found the struct, for its Context.
func (e FieldErrors) Decoder() *Decoder { return e.d }

// Add records a problem with field (relative to the struct; "" for the struct itself).
func (e FieldErrors) Add(field, format string, args ...any) {
	e.d.errs = append(e.d.errs, fmt.Errorf("%s: %s (line %d)", JoinPath(e.path, field), fmt.Sprintf(format, args...), e.line))
}

// Validator is implemented by structs with rules across their fields; Validate runs
// only when the struct's own fields decoded without error.
type Validator interface{ Validate(e FieldErrors) }

// Fail records a problem at path, with n's line when it has one.
func (d *Decoder) Fail(n *yaml.Node, path, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if path == "" {
		path = "(document)"
	}
	if n != nil && n.Line > 0 {
		d.errs = append(d.errs, fmt.Errorf("%s: %s (line %d)", path, msg, n.Line))
		return
	}
	d.errs = append(d.errs, fmt.Errorf("%s: %s", path, msg))
}

// errorList is the errors joined in err (errors.Join), or err alone.
func errorList(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// FailAll records every error of err under path.
func (d *Decoder) FailAll(n *yaml.Node, path string, err error) {
	for _, e := range errorList(err) {
		d.Fail(n, path, "%v", e)
	}
}

// FailFields records every error of err, each starting with a field path relative to
// path ("nodes[0].podCIDR: ..."), under path.
func (d *Decoder) FailFields(n *yaml.Node, path string, err error) {
	for _, e := range errorList(err) {
		field, rest, ok := strings.Cut(e.Error(), ": ")
		if ok && !strings.ContainsRune(field, ' ') {
			d.Fail(n, JoinPath(path, field), "%s", rest)
			continue
		}
		d.Fail(n, path, "%v", e)
	}
}

// Err is every problem recorded, joined (nil when none).
func (d *Decoder) Err() error { return errors.Join(d.errs...) }

// ErrCount is how many problems were recorded so far: callers compare it before and
// after decoding a part to know whether that part decoded cleanly.
func (d *Decoder) ErrCount() int { return len(d.errs) }

// JoinPath is the field path of key under path.
func JoinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Index is the field path of element i of the list at path.
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

// The scalar types decoded from text besides Go's own kinds.
var (
	DurationType = reflect.TypeFor[time.Duration]()
	AddrType     = reflect.TypeFor[netip.Addr]()
	PrefixType   = reflect.TypeFor[netip.Prefix]()
)

// scalarOf says what a scalar of v's type must be, and parses one from its text and
// YAML tag (nil for types that are not scalars).
func scalarOf(v reflect.Value) (string, func(s, tag string) (reflect.Value, bool)) {
	t := v.Type()
	switch t {
	case DurationType:
		return "a duration like 10ms or 2s", func(s, _ string) (reflect.Value, bool) {
			d, err := time.ParseDuration(s)
			return reflect.ValueOf(d), err == nil && d >= 0
		}
	case AddrType:
		return "an IPv4 address", func(s, _ string) (reflect.Value, bool) {
			a, err := netip.ParseAddr(s)
			return reflect.ValueOf(a), err == nil && a.Is4()
		}
	case PrefixType:
		return "an IPv4 network prefix like 10.244.9.0/24", func(s, _ string) (reflect.Value, bool) {
			p, err := netip.ParsePrefix(s)
			return reflect.ValueOf(p), err == nil && p.Addr().Is4() && p.Masked() == p
		}
	}
	switch t.Kind() {
	case reflect.String:
		if e, ok := v.Interface().(Enum); ok {
			return "one of " + strings.Join(e.Values(), ", "), func(s, _ string) (reflect.Value, bool) {
				return reflect.ValueOf(s), slices.Contains(e.Values(), s)
			}
		}
		return "a string", func(s, _ string) (reflect.Value, bool) { return reflect.ValueOf(s), true }
	case reflect.Bool:
		return "true or false", func(s, tag string) (reflect.Value, bool) {
			b, err := strconv.ParseBool(strings.ToLower(s))
			return reflect.ValueOf(b), err == nil && tag == "!!bool"
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return "a whole number", func(s, tag string) (reflect.Value, bool) {
			i, err := strconv.ParseInt(s, 0, t.Bits())
			return reflect.ValueOf(i), err == nil && tag == "!!int"
		}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprintf("a whole number from 0 to %d", uint64(1)<<t.Bits()-1), func(s, tag string) (reflect.Value, bool) {
			u, err := strconv.ParseUint(s, 0, t.Bits())
			return reflect.ValueOf(u), err == nil && tag == "!!int"
		}
	case reflect.Float64:
		return "a number", func(s, tag string) (reflect.Value, bool) {
			f, err := strconv.ParseFloat(s, 64)
			return reflect.ValueOf(f), err == nil && (tag == "!!int" || tag == "!!float")
		}
	}
	return "", nil
}

// NodeKind names what a node holds, for messages.
func NodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "nothing"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "nothing"
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// Decode decodes n into v (settable) at path.
func (d *Decoder) Decode(n *yaml.Node, v reflect.Value, path string) {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() {
		if c, ok := v.Addr().Interface().(Unmarshaler); ok {
			c.DecodeYAML(d, n, path)
			return
		}
	}
	if what, parse := scalarOf(v); parse != nil {
		s, ok := d.Scalar(n, path, what)
		if !ok {
			return
		}
		x, ok := parse(s, n.Tag)
		if !ok {
			d.Fail(n, path, "%q is not %s", s, what)
			return
		}
		v.Set(x.Convert(v.Type()))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			d.Fail(n, path, "want a value, got nothing")
			return
		}
		p := reflect.New(v.Type().Elem())
		d.Decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.DecodeStruct(n, v, path)
	case reflect.Slice:
		if n == nil || n.Kind != yaml.SequenceNode {
			d.Fail(n, path, "want a list, got %s", NodeKindOrNothing(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.Decode(c, s.Index(i), Index(path, i))
		}
		v.Set(s)
	case reflect.Map:
		d.DecodeStringMap(n, v, path)
	default:
		panic(fmt.Sprintf("strictyaml: cannot decode into %s (at %s)", v.Type(), path))
	}
}

// NodeKindOrNothing is NodeKind that also takes a missing node.
func NodeKindOrNothing(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	return NodeKind(n)
}

// Scalar returns n's text when n is a scalar; else it records that want was expected.
func (d *Decoder) Scalar(n *yaml.Node, path, want string) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.Fail(n, path, "want %s, got %s", want, NodeKindOrNothing(n))
		return "", false
	}
	return n.Value, true
}

// DecodeStringMap decodes a mapping of scalars into a map[string]string, keeping each
// value's text as written (true stays "true", 016 stays "016").
func (d *Decoder) DecodeStringMap(n *yaml.Node, v reflect.Value, path string) {
	if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
		panic(fmt.Sprintf("strictyaml: cannot decode into %s (at %s)", v.Type(), path))
	}
	if n == nil || n.Kind != yaml.MappingNode {
		d.Fail(n, path, "want a mapping of keys to values, got %s", NodeKindOrNothing(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := JoinPath(path, k.Value)
		if m.MapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key())).IsValid() {
			d.Fail(k, p, "given twice")
			continue
		}
		s, ok := d.Scalar(val, p, "a value (string, number or boolean)")
		if !ok {
			continue
		}
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), reflect.ValueOf(s).Convert(v.Type().Elem()))
	}
	v.Set(m)
}

// Field is one decodable field of a struct, as its tags describe it.
type Field struct {
	Key      string
	Index    int // in the struct
	Required bool
	OneOf    []string
	Lo, Hi   *float64
	Doc      string
}

// Fields lists the decodable fields of struct type t.
func Fields(t reflect.Type) []Field {
	var out []Field
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if key == "-" {
			continue
		}
		if key == "" {
			key = f.Name
		}
		sf := Field{Key: key, Index: i, Required: f.Tag.Get("required") == "true", Doc: f.Tag.Get("doc")}
		if o := f.Tag.Get("oneOf"); o != "" {
			sf.OneOf = strings.Split(o, ",")
		}
		if r := f.Tag.Get("range"); r != "" {
			a, b, _ := strings.Cut(r, "..")
			if x, err := strconv.ParseFloat(a, 64); err == nil {
				sf.Lo = &x
			}
			if y, err := strconv.ParseFloat(b, 64); err == nil {
				sf.Hi = &y
			}
		}
		out = append(out, sf)
	}
	return out
}

func keysOf(fields []Field) []string {
	var keys []string
	for _, f := range fields {
		keys = append(keys, f.Key)
	}
	return keys
}

// DecodeStruct decodes a mapping into struct v: keys must be fields, required fields
// must be there, values must be in range and among the accepted ones.
func (d *Decoder) DecodeStruct(n *yaml.Node, v reflect.Value, path string) {
	fields := Fields(v.Type())
	start := len(d.errs)
	noun := d.Field
	if noun == "" {
		noun = "field"
	}
	given := map[string]*yaml.Node{}
	switch {
	case isNull(n):
	case n.Kind != yaml.MappingNode:
		d.Fail(n, path, "want a mapping (%s), got %s", strings.Join(keysOf(fields), ", "), NodeKind(n))
		return
	default:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := JoinPath(path, k.Value)
			switch {
			case !slices.Contains(keysOf(fields), k.Value):
				if len(fields) == 0 {
					d.Fail(k, p, "unknown %s: there are none here", noun)
				} else {
					d.Fail(k, p, "unknown %s (want one of: %s)", noun, strings.Join(keysOf(fields), ", "))
				}
			case given[k.Value] != nil:
				d.Fail(k, p, "given twice")
			default:
				given[k.Value] = n.Content[i+1]
			}
		}
	}
	line := 0
	if n != nil {
		line = n.Line
	}
	for _, f := range fields {
		p := JoinPath(path, f.Key)
		c, ok := given[f.Key]
		if !ok {
			if f.Required {
				what := "required"
				if f.Doc != "" {
					what += ": " + f.Doc
				}
				d.Fail(n, p, "%s", what)
			}
			continue
		}
		before := len(d.errs)
		fv := v.Field(f.Index)
		d.Decode(c, fv, p)
		if len(d.errs) > before {
			continue
		}
		checkValue(d, c, fv, p, f)
	}
	if val, ok := v.Addr().Interface().(Validator); ok && len(d.errs) == start {
		val.Validate(FieldErrors{path: path, line: line, d: d})
	}
}

// DecodeFields is DecodeStruct for a struct whose keys are called fields, wherever it
// sits (an inline topology spec among a step's parameters).
func (d *Decoder) DecodeFields(n *yaml.Node, v reflect.Value, path string) {
	outer := d.Field
	d.Field = ""
	d.DecodeStruct(n, v, path)
	d.Field = outer
}

// checkValue applies a field's oneOf and range rules to what was decoded.
func checkValue(d *Decoder, n *yaml.Node, v reflect.Value, path string, f Field) {
	switch {
	case len(f.OneOf) > 0 && v.Kind() == reflect.String:
		if !slices.Contains(f.OneOf, v.String()) {
			d.Fail(n, path, "%q is not one of %s", v.String(), strings.Join(f.OneOf, ", "))
		}
	case len(f.OneOf) > 0 && v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		for i := range v.Len() {
			if s := v.Index(i).String(); !slices.Contains(f.OneOf, s) {
				d.Fail(n.Content[i], Index(path, i), "%q is not one of %s", s, strings.Join(f.OneOf, ", "))
			}
		}
	}
	var x float64
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		x = float64(v.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		x = float64(v.Uint())
	case reflect.Float64:
		x = v.Float()
	default:
		return
	}
	if f.Lo != nil && x < *f.Lo || f.Hi != nil && x > *f.Hi {
		d.Fail(n, path, "%v is out of range (want %s to %s)", n.Value, fmtBound(f.Lo, "-∞"), fmtBound(f.Hi, "∞"))
	}
}

func fmtBound(b *float64, inf string) string {
	if b == nil {
		return inf
	}
	return strconv.FormatFloat(*b, 'f', -1, 64)
}

// Elem is the value a pointer points to, for decoding into it.
func Elem(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// ParseDocument parses data as one YAML document and returns its root node.
func ParseDocument(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return &doc, nil
}

// SPDX-License-Identifier: Apache-2.0

package scenarios

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

// decoder turns a YAML node tree into Go values strictly: an unknown field, a value of
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
type decoder struct {
	// base is the folder that file references are relative to; "" when decoding the
	// embedded catalog, where only catalog names and inline specs are accepted.
	base string
	// stage is the stage being decoded, for the references its steps make.
	stage *StageSpec
	// field is what a struct key is called in messages ("field", "parameter of step
	// kind mtu-sweep").
	field string
	errs  []error
}

// yamlDecoder is implemented by types that decode themselves.
type yamlDecoder interface {
	decodeYAML(d *decoder, n *yaml.Node, path string)
}

// enum is implemented by string types with a fixed set of values.
type enum interface{ values() []string }

// fieldErrors collects the problems a struct's validate method finds; each names a field
// relative to the struct.
type fieldErrors struct {
	path string
	line int
	d    *decoder
}

// stage is the stage being decoded, when its topology is known (nil otherwise: its
// references cannot be checked, and its topology's problems are reported already).
func (e fieldErrors) stage() *StageSpec {
	if e.d.stage == nil || e.d.stage.Topology.resolved == nil {
		return nil
	}
	return e.d.stage
}

func (e fieldErrors) add(field, format string, args ...any) {
	e.d.errs = append(e.d.errs, fmt.Errorf("%s: %s (line %d)", joinPath(e.path, field), fmt.Sprintf(format, args...), e.line))
}

// validater is implemented by structs with rules across their fields.
type validater interface{ validate(e fieldErrors) }

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
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

// failAll records every error of err under path.
func (d *decoder) failAll(n *yaml.Node, path string, err error) {
	for _, e := range errorList(err) {
		d.fail(n, path, "%v", e)
	}
}

// failFields records every error of err, each starting with a field path relative to
// path ("nodes[0].podCIDR: ..."), under path.
func (d *decoder) failFields(n *yaml.Node, path string, err error) {
	for _, e := range errorList(err) {
		field, rest, ok := strings.Cut(e.Error(), ": ")
		if ok && !strings.ContainsRune(field, ' ') {
			d.fail(n, joinPath(path, field), "%s", rest)
			continue
		}
		d.fail(n, path, "%v", e)
	}
}

func (d *decoder) err() error { return errors.Join(d.errs...) }

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

var (
	durationType = reflect.TypeFor[time.Duration]()
	addrType     = reflect.TypeFor[netip.Addr]()
	prefixType   = reflect.TypeFor[netip.Prefix]()
)

// scalarOf says what a scalar of v's type must be, and parses one from its text and
// YAML tag (nil for types that are not scalars).
func scalarOf(v reflect.Value) (string, func(s, tag string) (reflect.Value, bool)) {
	t := v.Type()
	switch t {
	case durationType:
		return "a duration like 10ms or 2s", func(s, _ string) (reflect.Value, bool) {
			d, err := time.ParseDuration(s)
			return reflect.ValueOf(d), err == nil && d >= 0
		}
	case addrType:
		return "an IPv4 address", func(s, _ string) (reflect.Value, bool) {
			a, err := netip.ParseAddr(s)
			return reflect.ValueOf(a), err == nil && a.Is4()
		}
	case prefixType:
		return "an IPv4 network prefix like 10.244.9.0/24", func(s, _ string) (reflect.Value, bool) {
			p, err := netip.ParsePrefix(s)
			return reflect.ValueOf(p), err == nil && p.Addr().Is4() && p.Masked() == p
		}
	}
	switch t.Kind() {
	case reflect.String:
		if e, ok := v.Interface().(enum); ok {
			return "one of " + strings.Join(e.values(), ", "), func(s, _ string) (reflect.Value, bool) {
				return reflect.ValueOf(s), slices.Contains(e.values(), s)
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

// nodeKind names what a node holds, for messages.
func nodeKind(n *yaml.Node) string {
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

// decode decodes n into v (settable) at path.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.CanAddr() {
		if c, ok := v.Addr().Interface().(yamlDecoder); ok {
			c.decodeYAML(d, n, path)
			return
		}
	}
	if what, parse := scalarOf(v); parse != nil {
		s, ok := d.scalar(n, path, what)
		if !ok {
			return
		}
		x, ok := parse(s, n.Tag)
		if !ok {
			d.fail(n, path, "%q is not %s", s, what)
			return
		}
		v.Set(x.Convert(v.Type()))
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if isNull(n) {
			d.fail(n, path, "want a value, got nothing")
			return
		}
		p := reflect.New(v.Type().Elem())
		d.decode(n, p.Elem(), path)
		v.Set(p)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n == nil || n.Kind != yaml.SequenceNode {
			d.fail(n, path, "want a list, got %s", nodeKindOrNothing(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			d.decode(c, s.Index(i), index(path, i))
		}
		v.Set(s)
	case reflect.Map:
		d.decodeStringMap(n, v, path)
	default:
		panic(fmt.Sprintf("scenarios: cannot decode into %s (at %s)", v.Type(), path))
	}
}

func nodeKindOrNothing(n *yaml.Node) string {
	if n == nil {
		return "nothing"
	}
	return nodeKind(n)
}

// scalar returns n's text when n is a scalar; else it records that want was expected.
func (d *decoder) scalar(n *yaml.Node, path, want string) (string, bool) {
	if n == nil || n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		d.fail(n, path, "want %s, got %s", want, nodeKindOrNothing(n))
		return "", false
	}
	return n.Value, true
}

// decodeStringMap decodes a mapping of scalars into a map[string]string, keeping each
// value's text as written (true stays "true", 016 stays "016").
func (d *decoder) decodeStringMap(n *yaml.Node, v reflect.Value, path string) {
	if v.Type().Key().Kind() != reflect.String || v.Type().Elem().Kind() != reflect.String {
		panic(fmt.Sprintf("scenarios: cannot decode into %s (at %s)", v.Type(), path))
	}
	if n == nil || n.Kind != yaml.MappingNode {
		d.fail(n, path, "want a mapping of keys to values, got %s", nodeKindOrNothing(n))
		return
	}
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		p := joinPath(path, k.Value)
		if m.MapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key())).IsValid() {
			d.fail(k, p, "given twice")
			continue
		}
		s, ok := d.scalar(val, p, "a value (string, number or boolean)")
		if !ok {
			continue
		}
		m.SetMapIndex(reflect.ValueOf(k.Value).Convert(v.Type().Key()), reflect.ValueOf(s).Convert(v.Type().Elem()))
	}
	v.Set(m)
}

// structField is one decodable field of a struct.
type structField struct {
	key      string
	index    int
	required bool
	oneOf    []string
	lo, hi   *float64
	doc      string
}

func fieldsOf(t reflect.Type) []structField {
	var out []structField
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
		sf := structField{key: key, index: i, required: f.Tag.Get("required") == "true", doc: f.Tag.Get("doc")}
		if o := f.Tag.Get("oneOf"); o != "" {
			sf.oneOf = strings.Split(o, ",")
		}
		if r := f.Tag.Get("range"); r != "" {
			a, b, _ := strings.Cut(r, "..")
			if x, err := strconv.ParseFloat(a, 64); err == nil {
				sf.lo = &x
			}
			if y, err := strconv.ParseFloat(b, 64); err == nil {
				sf.hi = &y
			}
		}
		out = append(out, sf)
	}
	return out
}

func keysOf(fields []structField) []string {
	var keys []string
	for _, f := range fields {
		keys = append(keys, f.key)
	}
	return keys
}

// decodeStruct decodes a mapping into struct v: keys must be fields, required fields
// must be there, values must be in range and among the accepted ones.
func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	fields := fieldsOf(v.Type())
	start := len(d.errs)
	noun := d.field
	if noun == "" {
		noun = "field"
	}
	given := map[string]*yaml.Node{}
	switch {
	case isNull(n):
	case n.Kind != yaml.MappingNode:
		d.fail(n, path, "want a mapping (%s), got %s", strings.Join(keysOf(fields), ", "), nodeKind(n))
		return
	default:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			p := joinPath(path, k.Value)
			switch {
			case !slices.Contains(keysOf(fields), k.Value):
				if len(fields) == 0 {
					d.fail(k, p, "unknown %s: there are none here", noun)
				} else {
					d.fail(k, p, "unknown %s (want one of: %s)", noun, strings.Join(keysOf(fields), ", "))
				}
			case given[k.Value] != nil:
				d.fail(k, p, "given twice")
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
		p := joinPath(path, f.key)
		c, ok := given[f.key]
		if !ok {
			if f.required {
				what := "required"
				if f.doc != "" {
					what += ": " + f.doc
				}
				d.fail(n, p, "%s", what)
			}
			continue
		}
		before := len(d.errs)
		fv := v.Field(f.index)
		d.decode(c, fv, p)
		if len(d.errs) > before {
			continue
		}
		checkValue(d, c, fv, p, f)
	}
	if val, ok := v.Addr().Interface().(validater); ok && len(d.errs) == start {
		val.validate(fieldErrors{path: path, line: line, d: d})
	}
}

// decodeFields is decodeStruct for a struct whose keys are called fields, wherever it
// sits (an inline topology spec among a step's parameters).
func (d *decoder) decodeFields(n *yaml.Node, v reflect.Value, path string) {
	outer := d.field
	d.field = ""
	d.decodeStruct(n, v, path)
	d.field = outer
}

// checkValue applies a field's oneOf and range rules to what was decoded.
func checkValue(d *decoder, n *yaml.Node, v reflect.Value, path string, f structField) {
	switch {
	case len(f.oneOf) > 0 && v.Kind() == reflect.String:
		if !slices.Contains(f.oneOf, v.String()) {
			d.fail(n, path, "%q is not one of %s", v.String(), strings.Join(f.oneOf, ", "))
		}
	case len(f.oneOf) > 0 && v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		for i := range v.Len() {
			if s := v.Index(i).String(); !slices.Contains(f.oneOf, s) {
				d.fail(n.Content[i], index(path, i), "%q is not one of %s", s, strings.Join(f.oneOf, ", "))
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
	if f.lo != nil && x < *f.lo || f.hi != nil && x > *f.hi {
		d.fail(n, path, "%v is out of range (want %s to %s)", n.Value, fmtBound(f.lo, "-∞"), fmtBound(f.hi, "∞"))
	}
}

func fmtBound(b *float64, inf string) string {
	if b == nil {
		return inf
	}
	return strconv.FormatFloat(*b, 'f', -1, 64)
}

// elem is the value a pointer points to, for decoding into it.
func elem(p any) reflect.Value { return reflect.ValueOf(p).Elem() }

// parseYAMLDocument parses data as one YAML document and returns its root node.
func parseYAMLDocument(data []byte) (*yaml.Node, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return &doc, nil
}

// SPDX-License-Identifier: Apache-2.0

package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"

	"sigs.k8s.io/yaml"
)

// ParseFile reads a cilium-config from path; see Parse for the accepted forms.
func ParseFile(path string) (*Config, *Report, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read cilium-config: %w", err)
	}
	c, r, err := Parse(b)
	if err != nil {
		return nil, r, fmt.Errorf("load %s: %w", path, err)
	}
	return c, r, nil
}

// Parse reads a cilium-config and resolves it like FromMap. Accepted forms:
//
//  1. a ConfigMap as `kubectl get cm cilium-config -o yaml` prints it;
//  2. just its data keys as a YAML map;
//  3. text that contains a ConfigMap: a kubectl-edit dump pasted with its
//     indentation lost (data keys, block scalar contents and metadata all at
//     column 0), or an intact ConfigMap with prose around it.
//
// Forms 1 and 2 are read as strict YAML. When that fails or yields no data, the
// recovery parser reads the text line by line: it finds the `data:` line, reads
// `key: value` lines (unquoting YAML scalars), and ends the data at the next
// top-level ConfigMap field (apiVersion, kind, metadata). In a flattened dump a
// block scalar (`etcd-config: |-`) runs until the next line that starts a known
// cilium-config key or a top-level field; when the last-applied-configuration
// annotation holds the same lines, its exact text is used. Report.Source says
// which path was taken. The Report is returned even with an error, unless the
// file could not be read.
func Parse(b []byte) (*Config, *Report, error) {
	r := &Report{}
	data, err := readInput(b, r)
	if err != nil {
		return nil, r, fmt.Errorf("parse cilium-config: %w", err)
	}
	c, err := resolve(data, r)
	return c, r, err
}

// topLevelFields are the fields of a ConfigMap object.
var topLevelFields = []string{"apiVersion", "kind", "metadata", "data", "binaryData", "immutable"}

// readInput detects the form of b and returns its data keys.
func readInput(b []byte, r *Report) (map[string]string, error) {
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("input is empty")
	}
	top, yerr := strictYAML(b)
	why := ""
	switch {
	case yerr != nil:
		why = "not valid YAML as a whole (" + yerr.Error() + ")"
	case top == nil:
		why = "YAML, but not a mapping"
	case isConfigMap(top):
		data, err := fromConfigMap(top, r)
		if err != nil {
			return nil, err
		}
		if len(data) > 0 {
			return data, nil
		}
		why = "a ConfigMap with no data keys in YAML (were its data keys un-indented?)"
	default:
		return fromDataMap(top, r)
	}

	rec, err := recoverConfigMap(string(b))
	if err != nil {
		return nil, fmt.Errorf("input is %s, and no ConfigMap data could be recovered from its text: %w", why, err)
	}
	r.notice("", "input is %s: recovered the ConfigMap data from the text line by line", why)
	rec.report(r)
	return rec.data, nil
}

// strictYAML decodes b as one YAML document; it returns nil without error when
// the document is not a mapping. Numbers keep their text.
func strictYAML(b []byte) (map[string]any, error) {
	j, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	m, _ := v.(map[string]any)
	return m, nil
}

func isConfigMap(m map[string]any) bool {
	for _, f := range []string{"apiVersion", "kind", "metadata", "data"} {
		if _, ok := m[f]; ok {
			return true
		}
	}
	return false
}

// fromConfigMap reads form 1. It returns no data (and no error) when the object
// has no data map, so that recovery can be tried.
func fromConfigMap(m map[string]any, r *Report) (map[string]string, error) {
	if k, ok := m["kind"]; ok && k != "ConfigMap" {
		return nil, fmt.Errorf("kind is %v: want a ConfigMap (cilium-config)", k)
	}
	raw, _ := m["data"].(map[string]any)
	if len(raw) == 0 {
		return nil, nil
	}
	data, err := scalarMap(raw, func(key string, v any, s string) {
		r.warn(key, "value is a YAML %T, read as %q: Kubernetes requires ConfigMap data values to be strings (quote it)", v, s)
	})
	if err != nil {
		return nil, err
	}
	meta, _ := m["metadata"].(map[string]any)
	name, _ := meta["name"].(string)
	ns, _ := meta["namespace"].(string)
	r.Source = fmt.Sprintf("ConfigMap %s (YAML): %d keys", objectName(ns, name), len(data))
	if name != "" && name != "cilium-config" {
		r.notice("", "the ConfigMap is named %q, not cilium-config", name)
	}
	if bd, ok := m["binaryData"].(map[string]any); ok && len(bd) > 0 {
		r.warn("", "binaryData keys ignored: %v", slices.Sorted(maps.Keys(bd)))
	}
	if ann, ok := meta["annotations"].(map[string]any); ok {
		if s, ok := ann[lastAppliedAnnotation].(string); ok {
			if la, err := parseLastApplied(s); err != nil {
				r.notice("", "%s annotation not readable: %v", lastAppliedAnnotation, err)
			} else {
				compareLastApplied(data, la, r)
			}
		}
	}
	return data, nil
}

// fromDataMap reads form 2.
func fromDataMap(m map[string]any, r *Report) (map[string]string, error) {
	if len(m) == 0 {
		return nil, errors.New("input is an empty YAML mapping: no data keys")
	}
	data, err := scalarMap(m, nil)
	if err != nil {
		return nil, err
	}
	r.Source = fmt.Sprintf("cilium-config data keys (YAML map): %d keys", len(data))
	return data, nil
}

// scalarMap converts YAML scalars to their string form; converted is called for
// every value that was not a string. Mappings and lists are errors.
func scalarMap(m map[string]any, converted func(key string, v any, s string)) (map[string]string, error) {
	data := make(map[string]string, len(m))
	var errs []error
	for _, k := range slices.Sorted(maps.Keys(m)) {
		var s string
		switch v := m[k].(type) {
		case string:
			data[k] = v
			continue
		case nil:
			s = ""
		case json.Number:
			s = v.String()
		case bool:
			s = strconv.FormatBool(v)
		default:
			errs = append(errs, fmt.Errorf("%s: value is a YAML %s; cilium-config values are strings (is this Helm values.yaml? use the rendered ConfigMap)", k, yamlType(v)))
			continue
		}
		data[k] = s
		if converted != nil {
			converted(k, m[k], s)
		}
	}
	return data, errors.Join(errs...)
}

func yamlType(v any) string {
	switch v.(type) {
	case map[string]any:
		return "mapping"
	case []any:
		return "list"
	}
	return fmt.Sprintf("%T", v)
}

func objectName(ns, name string) string {
	if name == "" {
		name = "(unnamed)"
	}
	if ns == "" {
		return name
	}
	return ns + "/" + name
}

const lastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration"

// parseLastApplied returns the data of a last-applied-configuration annotation.
func parseLastApplied(s string) (map[string]string, error) {
	var obj struct {
		Data map[string]string `json:"data"`
	}
	if err := json.Unmarshal([]byte(s), &obj); err != nil {
		return nil, err
	}
	return obj.Data, nil
}

// compareLastApplied reports, as notices, every data key that differs from the
// last-applied-configuration annotation (the object was changed since the last
// kubectl apply, e.g. with kubectl edit).
func compareLastApplied(data, applied map[string]string, r *Report) {
	const since = "since the last kubectl apply (per the last-applied-configuration annotation)"
	for _, k := range slices.Sorted(maps.Keys(data)) {
		la, ok := applied[k]
		switch {
		case !ok:
			r.notice(k, "added %s", since)
		case la != data[k]:
			r.notice(k, "changed from %q to %q %s", la, data[k], since)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(applied)) {
		if _, ok := data[k]; !ok {
			r.notice(k, "removed %s (it was %q)", since, applied[k])
		}
	}
}

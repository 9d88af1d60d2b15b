// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// recovered is a ConfigMap read from text by recoverConfigMap.
type recovered struct {
	data map[string]string
	// flattened: the data keys sit at the indentation of `data:` (indentation lost).
	flattened bool
	// blocks: keys whose value was a block scalar, with its number of lines.
	blocks map[string]int
	// first and last line (1-based) of the data section.
	first, last     int
	name, namespace string
	lastApplied     map[string]string // nil when there is no readable annotation
	lastAppliedErr  error
	findings        []Finding // warnings about lines that were skipped
}

var (
	// keyLineRE matches `key: value` and `key:`; ConfigMap keys are [-._a-zA-Z0-9]+
	// ('/' for annotation names in metadata).
	keyLineRE = regexp.MustCompile(`^([A-Za-z0-9][-._A-Za-z0-9/]*):(?:[ \t]+(.*?))?[ \t]*$`)
	// blockHeaderRE matches a block scalar header: |, |-, |+, >, >-, |2...
	blockHeaderRE = regexp.MustCompile(`^([|>])([-+]?)([1-9]?)([-+]?)[ \t]*(#.*)?$`)
)

// recoverConfigMap finds a ConfigMap's data section in text (see Parse).
func recoverConfigMap(text string) (*recovered, error) {
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	dataIdx := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "data:" })
	if dataIdx < 0 {
		return nil, errors.New("no `data:` line found")
	}
	dataIndent := indentOf(lines[dataIdx])
	keyIndent := -1
	for _, l := range lines[dataIdx+1:] {
		if t := strings.TrimSpace(l); t != "" && !strings.HasPrefix(t, "#") {
			keyIndent = indentOf(l)
			break
		}
	}
	if keyIndent < dataIndent {
		return nil, fmt.Errorf("the `data:` section at line %d is empty", dataIdx+1)
	}
	rec := &recovered{
		data:      map[string]string{},
		flattened: keyIndent == dataIndent,
		blocks:    map[string]int{},
		first:     dataIdx + 1,
	}
	seen := map[string]int{} // key -> line
	var errs []error

	var (
		blockKey    string
		blockHeader []string // style, chomping
		blockLines  []string
		blockIndent = -1
	)
	closeBlock := func() {
		rec.data[blockKey] = assembleBlock(blockHeader[0], blockHeader[1], blockLines)
		rec.blocks[blockKey] = len(trimTrailingEmpty(blockLines))
		blockKey, blockLines, blockIndent = "", nil, -1
	}

	end := len(lines)
loop:
	for i := dataIdx + 1; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " \t")
		t := strings.TrimSpace(line)
		ind := indentOf(line)

		if blockKey != "" {
			switch {
			case rec.flattened && !(ind == dataIndent && (isTopLevelField(t) || startsKnownKey(t))):
				blockLines = append(blockLines, line[min(ind, dataIndent):])
				continue
			case !rec.flattened && t == "":
				blockLines = append(blockLines, "")
				continue
			case !rec.flattened && ind > keyIndent:
				if blockIndent < 0 {
					blockIndent = ind
				}
				blockLines = append(blockLines, line[min(ind, blockIndent):])
				continue
			}
			closeBlock()
		}

		if t == "" {
			continue
		}
		if rec.flattened && ind == dataIndent && isTopLevelField(t) || !rec.flattened && ind < keyIndent {
			end = i
			break
		}
		if strings.HasPrefix(t, "#") {
			continue
		}
		if !rec.flattened && ind > keyIndent {
			rec.findings = append(rec.findings, Finding{Message: fmt.Sprintf("line %d: unexpected indentation in the data section: ignored: %q", i+1, t)})
			continue
		}
		m := keyLineRE.FindStringSubmatch(t)
		if m == nil {
			rec.findings = append(rec.findings, Finding{Message: fmt.Sprintf("line %d ends the data section: it is not a `key: value` line: %q", i+1, t)})
			end = i
			break
		}
		key, val := m[1], m[2]
		if prev, dup := seen[key]; dup {
			errs = append(errs, fmt.Errorf("%s: given twice (lines %d and %d)", key, prev, i+1))
		}
		seen[key] = i + 1
		if h := blockHeaderRE.FindStringSubmatch(val); h != nil {
			blockKey, blockHeader = key, []string{h[1], h[2] + h[4]}
			continue
		}
		s, used, err := yamlScalar(val, lines[i+1:])
		if err != nil {
			errs = append(errs, fmt.Errorf("%s (line %d): %w", key, i+1, err))
			break loop
		}
		rec.data[key] = s
		i += used
	}
	if blockKey != "" {
		closeBlock()
	}
	rec.last = end
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if len(rec.data) == 0 {
		return nil, fmt.Errorf("the `data:` section at line %d has no `key: value` lines", dataIdx+1)
	}
	rec.readMetadata(lines, dataIdx, end)
	rec.restoreBlocks()
	return rec, nil
}

func indentOf(l string) int { return len(l) - len(strings.TrimLeft(l, " ")) }

func isTopLevelField(t string) bool {
	m := keyLineRE.FindStringSubmatch(t)
	return m != nil && slices.Contains(topLevelFields, m[1])
}

func startsKnownKey(t string) bool {
	m := keyLineRE.FindStringSubmatch(t)
	return m != nil && lookupKey(m[1]) != nil
}

func trimTrailingEmpty(ls []string) []string {
	for len(ls) > 0 && strings.TrimSpace(ls[len(ls)-1]) == "" {
		ls = ls[:len(ls)-1]
	}
	return ls
}

// assembleBlock builds a block scalar's value from its content lines: style is
// "|" (literal) or ">" (folded), chomp is "", "-" or "+".
func assembleBlock(style, chomp string, lines []string) string {
	content := trimTrailingEmpty(lines)
	var s string
	if style == ">" {
		var b strings.Builder
		for i, l := range content {
			if i > 0 {
				prev := content[i-1]
				switch {
				case l == "": // an empty line is a line break
					b.WriteByte('\n')
				case prev == "": // the break was written by the empty line
				case strings.HasPrefix(l, " ") || strings.HasPrefix(prev, " "):
					b.WriteByte('\n') // more-indented lines are not folded
				default:
					b.WriteByte(' ')
				}
			}
			b.WriteString(l)
		}
		s = b.String()
	} else {
		s = strings.Join(content, "\n")
	}
	switch chomp {
	case "-":
		return s
	case "+":
		return s + strings.Repeat("\n", 1+len(lines)-len(content))
	}
	if s == "" {
		return ""
	}
	return s + "\n"
}

// yamlScalar unquotes a flow scalar. A quoted scalar may continue on the next
// lines; used says how many were consumed. A plain scalar is taken verbatim
// (minus a trailing comment), so True stays True.
func yamlScalar(val string, next []string) (s string, used int, err error) {
	if val == "" {
		return "", 0, nil
	}
	if val[0] != '"' && val[0] != '\'' {
		if i := strings.Index(val, " #"); i >= 0 {
			val = strings.TrimSpace(val[:i])
		}
		return val, 0, nil
	}
	doc := val
	for {
		var out any
		if err = yaml.Unmarshal([]byte("v: "+doc), &out); err == nil {
			if m, ok := out.(map[string]any); ok {
				if str, ok := m["v"].(string); ok {
					return str, used, nil
				}
			}
			return "", used, fmt.Errorf("not a quoted string: %s", val)
		}
		if used >= len(next) || used >= 100 {
			return "", used, fmt.Errorf("unterminated quoted value: %s", val)
		}
		doc += "\n " + strings.TrimSpace(next[used])
		used++
	}
}

// readMetadata picks name, namespace and the last-applied-configuration
// annotation from the lines outside the data section.
func (rec *recovered) readMetadata(lines []string, dataIdx, end int) {
	inMeta, expectJSON := false, false
	for i, l := range lines {
		if i >= dataIdx && i < end {
			continue
		}
		t := strings.TrimSpace(l)
		if t == "metadata:" {
			inMeta = true
			continue
		}
		if !inMeta || t == "" {
			continue
		}
		if r, _ := utf8.DecodeRuneInString(t); r >= utf8.RuneSelf {
			break // prose
		}
		if expectJSON {
			expectJSON = false
			if strings.HasPrefix(t, "{") {
				rec.lastApplied, rec.lastAppliedErr = parseLastApplied(t)
				continue
			}
		}
		m := keyLineRE.FindStringSubmatch(t)
		if m == nil {
			continue
		}
		val, _, _ := yamlScalar(m[2], nil)
		switch m[1] {
		case "name":
			if rec.name == "" {
				rec.name = val
			}
		case "namespace":
			if rec.namespace == "" {
				rec.namespace = val
			}
		case lastAppliedAnnotation:
			if blockHeaderRE.MatchString(m[2]) {
				expectJSON = true
			} else if val != "" {
				rec.lastApplied, rec.lastAppliedErr = parseLastApplied(val)
			}
		case "uid":
			return
		}
	}
}

// restoreBlocks replaces a block value recovered from a flattened dump by the
// annotation's value when both hold the same non-blank lines (the annotation
// keeps the indentation and blank lines the paste lost).
func (rec *recovered) restoreBlocks() {
	if !rec.flattened || rec.lastApplied == nil {
		return
	}
	for k := range rec.blocks {
		la, ok := rec.lastApplied[k]
		if ok && la != rec.data[k] && sameLines(la, rec.data[k]) {
			rec.data[k] = la
			rec.blocks[k] = -1 // restored
		}
	}
}

// sameLines compares two texts ignoring indentation and blank lines.
func sameLines(a, b string) bool {
	norm := func(s string) []string {
		var out []string
		for _, l := range strings.Split(s, "\n") {
			if t := strings.TrimSpace(l); t != "" {
				out = append(out, t)
			}
		}
		return out
	}
	return slices.Equal(norm(a), norm(b))
}

// report records how the data was recovered.
func (rec *recovered) report(r *Report) {
	obj := ""
	if rec.name != "" {
		obj = " from ConfigMap " + objectName(rec.namespace, rec.name)
	}
	lines := fmt.Sprintf(" (lines %d-%d)", rec.first, rec.last)
	if rec.flattened {
		r.Source = fmt.Sprintf("flattened kubectl-edit dump (indentation lost): recovered %d keys%s%s", len(rec.data), obj, lines)
	} else {
		r.Source = fmt.Sprintf("ConfigMap found in surrounding text: recovered %d keys%s%s", len(rec.data), obj, lines)
	}
	if rec.name != "" && rec.name != "cilium-config" {
		r.notice("", "the ConfigMap is named %q, not cilium-config", rec.name)
	}
	for _, k := range slices.Sorted(maps.Keys(rec.blocks)) {
		switch n := rec.blocks[k]; {
		case n < 0:
			r.notice(k, "block scalar recovered line by line; its exact text (indentation, blank lines) restored from the %s annotation, which holds the same lines", lastAppliedAnnotation)
		case rec.flattened:
			r.notice(k, "block scalar recovered line by line (%d lines, up to the next known cilium-config key); indentation inside it was lost", n)
		}
	}
	r.Warnings = append(r.Warnings, rec.findings...)
	switch {
	case rec.lastAppliedErr != nil:
		r.notice("", "%s annotation not readable: %v", lastAppliedAnnotation, rec.lastAppliedErr)
	case rec.lastApplied != nil:
		compareLastApplied(rec.data, rec.lastApplied, r)
	}
}

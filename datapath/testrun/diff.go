// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"fmt"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Diff explains how got differs from want: the differing header fields layer by layer
// (as gopacket decodes them), then a hex dump of the differing 16-byte rows.
func Diff(want, got []byte) string {
	var b strings.Builder
	if len(want) != len(got) {
		fmt.Fprintf(&b, "length: want %d, got %d\n", len(want), len(got))
	}
	b.WriteString(fieldDiff(want, got))
	b.WriteString(byteDiff(want, got))
	return b.String()
}

func layerLines(pkt []byte) map[string][]string {
	p := gopacket.NewPacket(pkt, layers.LayerTypeEthernet, gopacket.Default)
	out := map[string][]string{}
	for _, l := range p.Layers() {
		name := l.LayerType().String()
		s := gopacket.LayerString(l)
		out[name] = strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	}
	return out
}

func layerOrder(pkt []byte) []string {
	p := gopacket.NewPacket(pkt, layers.LayerTypeEthernet, gopacket.Default)
	var names []string
	for _, l := range p.Layers() {
		names = append(names, l.LayerType().String())
	}
	return names
}

// fieldDiff compares gopacket's rendering of each layer. LayerString prints a layer's
// fields as "Name{A=1 B=2 ...}", so the fields are split on spaces outside brackets.
func fieldDiff(want, got []byte) string {
	wl, gl := layerLines(want), layerLines(got)
	var b strings.Builder
	seen := map[string]bool{}
	for _, name := range append(layerOrder(want), layerOrder(got)...) {
		if seen[name] {
			continue
		}
		seen[name] = true
		w, wok := wl[name]
		g, gok := gl[name]
		switch {
		case !gok:
			fmt.Fprintf(&b, "%s: missing in output\n", name)
		case !wok:
			fmt.Fprintf(&b, "%s: unexpected in output\n", name)
		default:
			wf, gf := fields(strings.Join(w, " ")), fields(strings.Join(g, " "))
			for i := 0; i < max(len(wf), len(gf)); i++ {
				var x, y string
				if i < len(wf) {
					x = wf[i]
				}
				if i < len(gf) {
					y = gf[i]
				}
				if x != y && !strings.HasPrefix(x, "Contents=") && !strings.HasPrefix(x, "Payload=") {
					fmt.Fprintf(&b, "%s: want %s, got %s\n", name, x, y)
				}
			}
		}
	}
	return b.String()
}

func fields(s string) []string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '{'); i >= 0 && strings.HasSuffix(s, "}") {
		s = s[i+1 : len(s)-1]
	}
	var out []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '[', '{', '(':
			depth++
		case ']', '}', ')':
			depth--
		case ' ':
			if depth == 0 {
				if start < i {
					out = append(out, s[start:i])
				}
				start = i + 1
			}
		}
	}
	if start < len(s) {
		out = append(out, s[start:])
	}
	return out
}

func byteDiff(want, got []byte) string {
	var b strings.Builder
	const row = 16
	for off := 0; off < max(len(want), len(got)); off += row {
		w, g := slice(want, off, row), slice(got, off, row)
		if string(w) == string(g) {
			continue
		}
		fmt.Fprintf(&b, "%04x want % x\n%04x got  % x\n", off, w, off, g)
	}
	return b.String()
}

func slice(p []byte, off, n int) []byte {
	if off >= len(p) {
		return nil
	}
	return p[off:min(off+n, len(p))]
}

// SPDX-License-Identifier: Apache-2.0

package config

import (
	"strings"
	"testing"
)

func TestRecoverBlockScalars(t *testing.T) {
	// Each input is a ConfigMap that strict YAML cannot read (prose around it or
	// indentation lost); etcd-config is a block scalar followed by a known key.
	tests := []struct {
		name, header string
		flattened    bool
		want         string
	}{
		{"literal clip, flattened", "|", true, "a: 1\n\nb:\n- x\n"},
		{"literal strip, flattened", "|-", true, "a: 1\n\nb:\n- x"},
		{"literal keep, flattened", "|+", true, "a: 1\n\nb:\n- x\n\n"},
		{"folded, flattened", ">-", true, "a: 1\nb: - x"},
		{"literal clip, indented", "|", false, "a: 1\n\nb:\n  - x\n"},
		{"literal strip, indented", "|-", false, "a: 1\n\nb:\n  - x"},
		{"folded, indented", ">", false, "a: 1\nb:\n  - x\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ind := "  "
			body := []string{"a: 1", "", "b:", "  - x", ""}
			if tc.flattened {
				ind = ""
				body = []string{"a: 1", "", "b:", "- x", ""}
			}
			var lines []string
			lines = append(lines, "Pasted from kubectl edit:", "apiVersion: v1", "data:", ind+"etcd-config: "+tc.header)
			for _, l := range body {
				if l != "" {
					l = ind + "  " + l
					if tc.flattened {
						l = strings.TrimLeft(l, " ")
					}
				}
				lines = append(lines, l)
			}
			lines = append(lines, ind+"tunnel: vxlan", "kind: ConfigMap", "Done.")
			c, r, err := Parse([]byte(strings.Join(lines, "\n")))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := c.Raw["etcd-config"]; got != tc.want {
				t.Errorf("etcd-config = %q, want %q\n%s", got, tc.want, r)
			}
			if c.Raw["tunnel"] != "vxlan" || len(c.Raw) != 2 {
				t.Errorf("raw = %q", c.Raw)
			}
		})
	}
}

func TestRecoverSkippedLines(t *testing.T) {
	tests := []struct {
		name, input string
		keys        int
		warning     string
	}{
		{"prose inside a flattened data section ends it",
			"apiVersion: v1\ndata:\nmtu: \"1500\"\nthen we restarted the agent\ndebug: \"true\"\n", 1,
			`line 4 ends the data section: it is not a ` + "`key: value`" + ` line: "then we restarted the agent"`},
		{"over-indented line in an intact data section",
			"Here:\napiVersion: v1\ndata:\n  mtu: \"1500\"\n      stray\n  debug: \"true\"\nkind: ConfigMap\n", 2,
			`line 5: unexpected indentation in the data section: ignored: "stray"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, r, err := Parse([]byte(tc.input))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if len(c.Raw) != tc.keys || !hasFinding(r.Warnings, "", tc.warning) {
				t.Errorf("raw %q, report:\n%s", c.Raw, r)
			}
		})
	}
}

func TestStrings(t *testing.T) {
	for f, want := range map[TCPFlags]string{0: "none", 0xff: "all", FlagSYN | FlagFIN | FlagRST: "fin,syn,rst", FlagACK: "ack"} {
		if got := f.String(); got != want {
			t.Errorf("TCPFlags(%#x) = %q, want %q", uint8(f), got, want)
		}
	}
	for m, want := range map[MonitorAggregation]string{AggregationNone: "none", AggregationLow: "low", AggregationMedium: "medium", AggregationMaximum: "maximum", 7: "MonitorAggregation(7)"} {
		if got := m.String(); got != want {
			t.Errorf("MonitorAggregation(%d) = %q, want %q", uint32(m), got, want)
		}
	}
	r := &Report{Source: "map: 1 keys", Notices: []Finding{{"ipam", "ignored"}}, Warnings: []Finding{{"", "odd"}}}
	if got, want := r.String(), "source: map: 1 keys\nwarning: odd\nnotice: ipam: ignored\n"; got != want {
		t.Errorf("Report.String() = %q, want %q", got, want)
	}
}

// SPDX-License-Identifier: Apache-2.0

package report

import (
	"strings"
	"testing"
)

func TestHTMLKernelDropsTable(t *testing.T) {
	tests := []struct {
		name   string
		drops  []StepDrops
		want   []string
		absent []string
	}{
		{"none", nil, nil, []string{"Kernel drops"}},
		{"failed step", []StepDrops{{Stage: "l2", Step: "stages[0].steps[2]", Kind: "connectivity", Failed: true,
			Drops: []KernelDrop{{Member: "node2", Device: "eth0", Reason: "NETFILTER_DROP", Location: "nft_do_chain+0x46f", Packet: "10.244.1.10:1 > 10.244.2.10:7777 udp ttl 62", Len: 33}}}},
			[]string{"Kernel drops", "stages[0].steps[2] (connectivity): 1 drops", "a check of the step failed", "<td>node2</td><td>eth0</td><td>NETFILTER_DROP</td><td>nft_do_chain&#43;0x46f</td>"}, nil},
		{"warning", []StepDrops{{Stage: "l2", Step: "stages[0].steps[0]", Kind: "same-node-path",
			Drops: []KernelDrop{{Member: "pod1a", Reason: "NO_SOCKET", Packet: "x"}}}},
			[]string{"warning, not a check", "<td>NO_SOCKET</td>"}, []string{"a check of the step failed"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rep := &Report{Scenarios: []ScenarioResult{{Name: "kdrop", Passed: 1, KernelDrops: tt.drops}}}
			var b strings.Builder
			if err := rep.WriteHTML(&b, ""); err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(b.String(), w) {
					t.Errorf("report does not contain %q", w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(b.String(), a) {
					t.Errorf("report contains %q", a)
				}
			}
		})
	}
}

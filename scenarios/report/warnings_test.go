// SPDX-License-Identifier: Apache-2.0

package report

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestConfigWarningsInReport: a stage's agent warnings reach the report JSON and
// the HTML page, once per stage when the agents agree, per node when they do not.
func TestConfigWarningsInReport(t *testing.T) {
	masq := `enable-bpf-masquerade: "True" is not implemented: pods reach destinations outside the cluster with their own addresses (no masquerading)`
	kv := `kvstore: "etcd" is not implemented: no kvstore is contacted`
	rep := &Report{Scenarios: []ScenarioResult{{Name: "seed", Passed: 1,
		Checks: []CheckResult{{Name: "c", Passed: true}},
		ConfigWarnings: []StageWarnings{
			{Stage: "stages[0]: seed", Config: "seed.txt", Agents: []AgentWarnings{
				{Node: "node1", Warnings: []string{masq, kv}}, {Node: "node2", Warnings: []string{masq, kv}}}},
			{Stage: "stages[1]", Agents: []AgentWarnings{
				{Node: "node1", Warnings: []string{masq}}, {Node: "node2", Warnings: []string{}, Error: "agent not answering"}}},
		},
	}}}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if got := back.Scenarios[0].ConfigWarnings; len(got) != 2 || got[0].Agents[1].Warnings[1] != kv || !got[0].Same() || got[1].Same() {
		t.Errorf("config warnings after a JSON round trip: %+v", got)
	}
	var b bytes.Buffer
	if err := rep.WriteHTML(&b, ""); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	for _, want := range []string{
		"config warnings: stages[0]: seed (cilium-config seed.txt)",
		"2 warnings, the same on every node (node1, node2)",
		"status not read: agent not answering",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the page does not say %q", want)
		}
	}
	if n := strings.Count(page, "no kvstore is contacted"); n != 1 {
		t.Errorf("the kvstore warning appears %d times, want once (one list for agents that agree)", n)
	}
}

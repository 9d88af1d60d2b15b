// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// podpath up brings topologies up, never scenarios: a scenario file is refused with what
// up expects and the command that runs it, before anything is brought up.
func TestUpRefusesScenario(t *testing.T) {
	dir := t.TempDir()
	scenario := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(scenario, []byte("name: good\ndescription: one line\nstages:\n  - topology: l2-two-node\n    steps: [{check: connectivity-matrix}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"scenario file", []string{"up", scenario}, []string{
			"podpath up: " + scenario + " is a scenario file: podpath up wants a topology file or a catalog topology name (",
			"l2-two-node", "; to run the scenario: podpath run " + scenario}},
		{"scenario file, kind", []string{"up", "--backend", "kind", scenario}, []string{"is a scenario file", "podpath run " + scenario}},
		{"neither file nor catalog", []string{"up", "no-such-topology"}, []string{"no-such-topology: no such topology file, nor a catalog topology (have: ", "l2-two-node"}},
		{"unknown backend", []string{"up", "--backend", "vm", "../../../topology/catalog/l2-two-node.yaml"}, []string{`--backend: "vm" is not one of netns, kind`}},
		{"config without agents", []string{"up", "--config", "x.yaml", "../../../topology/catalog/l2-two-node.yaml"}, []string{"--config: the netns backend starts no agents on up"}},
		{"down, unknown backend", []string{"down", "--backend", "vm", "x"}, []string{`--backend: "vm" is not one of netns, kind`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := runCLI(t, "", tt.args...)
			if code != 1 || out != "" {
				t.Errorf("exit %d, stdout %q; want exit 1 and nothing printed", code, out)
			}
			for _, w := range tt.want {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
		})
	}
}

// podpath up takes a catalog topology by name; podpath down NAME removes it.
func TestUpCatalogNameAndDown(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs ip (iproute2)")
	}
	code, out, errs := runCLI(t, "", "up", "--json", "l2-two-node")
	if code != 0 {
		t.Fatalf("up: exit %d: %s", code, errs)
	}
	var got topologyJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("up --json: %v\n%s", err, out)
	}
	t.Cleanup(func() { runCLI(t, "", "down", got.RunID) })
	if got.Backend != "netns" || !strings.HasPrefix(got.Name, "l2-two-node-") || len(got.Nodes) != 2 || len(got.Members) == 0 {
		t.Errorf("up --json: %+v", got)
	}
	if code, _, errs := runCLI(t, "", "down", got.Name); code != 0 || !strings.Contains(errs, "deleting namespace pp-"+got.RunID+"-") {
		t.Errorf("down: exit %d, want progress lines: %s", code, errs)
	}
	if _, err := os.Stat("/run/podpath/" + got.RunID); !os.IsNotExist(err) {
		t.Errorf("run dir left after down (%v)", err)
	}
}

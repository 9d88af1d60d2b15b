// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// podpath scenarios lists the catalog from its files: name, labels, one-line description.
func TestScenariosList(t *testing.T) {
	code, out, errs := runCLI(t, "", "scenarios")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"NAME", "redirect-peer", "redirect-peer,host-routing", "vxlan-mtu", "vxlan,mtu,overlay",
		"maglev-consistency", "10,000 UDP flows to a shared external IP"} {
		if !strings.Contains(out, want) {
			t.Errorf("podpath scenarios lacks %q:\n%s", want, out)
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if len(strings.Fields(line)) < 3 {
			t.Errorf("line without a description: %q", line)
		}
	}

	code, out, _ = runCLI(t, "", "scenarios", "--show", "services-snat")
	if code != 0 || !strings.Contains(out, "check: nodeport-snat") {
		t.Errorf("scenarios --show: exit %d:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "", "scenarios", "--steps", "--json")
	var kinds []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &kinds) != nil || len(kinds) < 10 {
		t.Errorf("scenarios --steps --json: exit %d:\n%s", code, out)
	}
	code, out, _ = runCLI(t, "", "scenarios", "--steps")
	if code != 0 || !strings.Contains(out, "mtu-sweep\n") || !strings.Contains(squeeze(out), "routeMTU number [required] the path MTU between the pods") {
		t.Errorf("scenarios --steps:\n%s", out)
	}
}

// podpath run FILE and podpath validate FILE read a user's scenario file and report
// every problem with its field path before anything is brought up.
func TestRunAndValidateScenarioFile(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(bad, []byte(`name: mine
description: one line
stages:
  - topology: l2-two-node-agent
    steps:
      - check: mtu-sweep
        with: {from: pod1a, to: pod2a, mtu: 1400}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{{"run", bad}, {"validate", bad}} {
		code, _, errs := runCLI(t, "", cmd...)
		if code != 1 {
			t.Errorf("%v: exit %d, want 1", cmd, code)
		}
		for _, want := range []string{"scenario " + bad, "stages[0].steps[0].with.mtu: unknown parameter of step kind mtu-sweep (want one of: from, to, label) (line 7)",
			"stages[0].steps[0].expect.routeMTU: required"} {
			if !strings.Contains(errs, want) {
				t.Errorf("%v: stderr lacks %q:\n%s", cmd, want, errs)
			}
		}
	}
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte("name: good\ndescription: one line\nstages:\n  - topology: l2-two-node\n    steps: [{check: connectivity-matrix}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runCLI(t, "", "validate", good); code != 0 || !strings.Contains(out, "valid scenario") {
		t.Errorf("validate good: exit %d: %s %s", code, out, errs)
	}
	if code, _, errs := runCLI(t, "", "run", "no-such-scenario"); code != 1 || !strings.Contains(errs, `unknown scenario "no-such-scenario" (have: `) {
		t.Errorf("run unknown: exit %d: %s", code, errs)
	}
}

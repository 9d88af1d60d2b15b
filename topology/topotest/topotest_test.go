// SPDX-License-Identifier: Apache-2.0

package topotest

import (
	"os/exec"
	"strings"
	"testing"
)

// Only tests import topotest: it imports "testing" and brings topologies up, neither of
// which belongs in a binary (`go list -f '{{.Imports}}' podpath/...` lists non-test
// imports only).
func TestOnlyTestsImportTopotest(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}}:{{range .Imports}} {{.}}{{end}}`, "podpath/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v: %s", err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Fields(imports) {
			if imp == "podpath/topology/topotest" {
				t.Errorf("%s imports podpath/topology/topotest outside its tests", pkg)
			}
		}
	}
}

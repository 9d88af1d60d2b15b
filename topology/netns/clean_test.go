// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"os"
	"strings"
	"testing"

	"podpath/internal/nsutil"
)

func TestTestNamespaceOrphaned(t *testing.T) {
	for n, want := range map[string]bool{
		"pptest-lb-1-bench":         false, // pid 1 is alive
		"pptest-lb-999999999-bench": true,  // no such process
		"pp-abcdef-node1":           false,
		"someone-elses-ns":          false,
	} {
		if got := testNamespaceOrphaned(n); got != want {
			t.Errorf("%s: orphaned %v, want %v", n, got, want)
		}
	}
}

// A claimed run is left alone while its owner lives, and released without leftovers.
func TestClaimRelease(t *testing.T) {
	requireRoot(t)
	id, err := Claim("claimtest", "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := nsutil.Create(NetnsName(id, "a")); err != nil {
		t.Fatal(err)
	}
	removed, err := Clean(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range removed {
		if strings.Contains(r, id) {
			t.Fatalf("Clean removed live claimed run %s", r)
		}
	}
	if err := Release(t.Context(), id); err != nil {
		t.Fatal(err)
	}
	if err := Release(t.Context(), id); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if _, err := os.Stat(nsutil.Path(NetnsName(id, "a"))); !os.IsNotExist(err) {
		t.Errorf("namespace left after Release: %v", err)
	}
	if _, err := os.Stat(runDir(id)); !os.IsNotExist(err) {
		t.Errorf("run dir left after Release: %v", err)
	}
}

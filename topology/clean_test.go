// SPDX-License-Identifier: Apache-2.0

package topology

import "testing"

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

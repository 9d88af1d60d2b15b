// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"os/exec"
	"path"
	"path/filepath"
	"testing"
)

// Build builds the main package pkg of this module (podpath/cmd/...) into the test's
// temporary folder and returns the binary's path (`go build -o DIR/NAME PKG`).
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), path.Base(pkg))
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		tb.Fatalf("build %s: %v: %s", pkg, err, out)
	}
	return bin
}

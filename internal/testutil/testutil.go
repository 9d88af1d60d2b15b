// SPDX-License-Identifier: Apache-2.0

package testutil

import (
	"os"
	"testing"
)

// RequireRoot skips tests that load BPF programs or create namespaces when not root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN): run the tests as root")
	}
}

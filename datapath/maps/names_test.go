// SPDX-License-Identifier: Apache-2.0

package maps_test

import (
	"fmt"
	"testing"

	"podpath/datapath/maps"
)

// The names of the C enums come from BTF (btfnames), not from a Go copy.
func TestEnumNames(t *testing.T) {
	for _, tc := range []struct {
		v    fmt.Stringer
		want string
	}{
		{maps.ServiceClusterIP | maps.ServiceMaglev, "clusterip|maglev"},
		{maps.ServiceNodePort | maps.ServiceExternal, "nodeport|external"},
		{maps.ServiceFlags(0x100), "0x100"},
		{maps.ServiceLocal | maps.ServiceAffinity | maps.ServiceSourceRange | maps.ServiceFallback, "local|affinity|source-range|fallback"},
		{maps.BackendActive, "active"},
		{maps.BackendTerminating, "terminating"},
		{maps.BackendMaintenance, "maintenance"},
		{maps.BackendState(7), "state(7)"},
		{maps.CTService, "service"},
		{maps.CTReply, "reply"},
		{maps.CTDir(9), "dir(9)"},
		{maps.CTSynSeen | maps.CTEstablished, "syn-seen|established"},
		{maps.CTClosing | maps.CTNodePort | maps.CTSNAT | maps.CTDSR | maps.CTLoopback, "closing|nodeport|snat|dsr|loopback"},
	} {
		if got := tc.v.String(); got != tc.want {
			t.Errorf("%#v: got %q, want %q", tc.v, got, tc.want)
		}
	}
}

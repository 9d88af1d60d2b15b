// SPDX-License-Identifier: Apache-2.0

package btfnames_test

import (
	"testing"

	"podpath/datapath/bpfobj"
	"podpath/datapath/btfnames"
)

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{btfnames.Short("lb_backend_state", "LB_BACKEND_", uint64(bpfobj.LxcLbBackendStateLB_BACKEND_TERMINATING), "state"), "terminating"},
		{btfnames.Short("lb_backend_state", "LB_BACKEND_", 9, "state"), "state(9)"},
		{btfnames.Short("ct_dir", "CT_", uint64(bpfobj.LxcCtDirCT_REPLY), "dir"), "reply"},
		{btfnames.Short("no_such_enum", "X_", 1, "x"), "x(1)"},
		{btfnames.Flags("lb_service_flags", "SVC_F_", uint64(bpfobj.LxcLbServiceFlagsSVC_F_NODEPORT|bpfobj.LxcLbServiceFlagsSVC_F_MAGLEV)), "nodeport|maglev"},
		{btfnames.Flags("ct_flags", "CT_F_", uint64(bpfobj.LxcCtFlagsCT_F_SYN_SEEN)|0x100), "syn-seen|0x100"},
		{btfnames.Flags("ct_flags", "CT_F_", 0), ""},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q, want %q", tc.got, tc.want)
		}
	}
	drops, err := btfnames.Default("drop_reason")
	if err != nil {
		t.Fatal(err)
	}
	if drops[0] != "DROP_NONE" {
		t.Errorf("drop_reason 0 = %q", drops[0])
	}
}

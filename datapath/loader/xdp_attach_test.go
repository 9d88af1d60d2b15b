// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"

	"podpath/datapath/loader"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// AttachXDP attaches in native mode to a veth (whose driver runs XDP) and refuses a
// device whose driver cannot, with ErrXDPNativeNotSupported (what
// bpf-lb-acceleration native reports and best-effort puts into the status): a dummy
// device has no native XDP, and generic mode is never the fallback.
func TestAttachXDPNative(t *testing.T) {
	testutil.RequireRoot(t)
	nsA, nsB, ifB := vethPair(t)
	_ = nsA
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdp_pass", Type: ebpf.XDP, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	h := testrun.NetlinkAt(t, nsB)
	if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}); err != nil {
		t.Fatal(err)
	}
	d, err := h.LinkByName("br0")
	if err != nil {
		t.Fatal(err)
	}
	err = nsutil.Do(nsutil.Path(nsB), func() error {
		l, err := loader.AttachXDP(prog, ifB)
		if err != nil {
			t.Errorf("veth: %v", err)
		} else {
			l.Close()
		}
		if l, err := loader.AttachXDP(prog, d.Attrs().Index); err == nil {
			l.Close()
			t.Errorf("bridge: native XDP attached, want %v", loader.ErrXDPNativeNotSupported)
		} else if !errors.Is(err, loader.ErrXDPNativeNotSupported) {
			t.Errorf("bridge: %v, want %v", err, loader.ErrXDPNativeNotSupported)
		} else {
			t.Logf("bridge: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

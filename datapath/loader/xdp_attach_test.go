// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"errors"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/loader"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// AttachXDP attaches in native mode to a veth (whose driver runs XDP) and refuses a
// device whose driver cannot, with ErrXDPNativeNotSupported (what
// bpf-lb-acceleration native reports and best-effort puts into the status): a bridge
// has no native XDP (this kernel has no dummy driver), and generic mode is never the fallback; a jumbo
// veth refuses the single-buffer program with ErrXDPMTUTooLarge.
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
	// A jumbo veth pair: native XDP, but not for a single-buffer program at MTU 9000.
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "jumbo0", MTU: 9000}, PeerName: "jumbo1", PeerMTU: 9000}); err != nil {
		t.Fatal(err)
	}
	jumbo, err := h.LinkByName("jumbo0")
	if err != nil {
		t.Fatal(err)
	}
	err = nsutil.Do(nsutil.Path(nsB), func() error {
		for _, c := range []struct {
			name    string
			ifindex int
			want    error
		}{{"jumbo veth", jumbo.Attrs().Index, loader.ErrXDPMTUTooLarge}} {
			l, err := loader.AttachXDP(prog, c.ifindex)
			if err == nil {
				l.Close()
				t.Errorf("%s: native XDP attached, want %v", c.name, c.want)
				continue
			}
			var errno unix.Errno
			errors.As(err, &errno)
			t.Logf("%s: errno %d (%s): %v", c.name, int(errno), unix.ErrnoName(errno), err)
			if !errors.Is(err, c.want) {
				t.Errorf("%s: %v, want %v", c.name, err, c.want)
			}
		}
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
			var errno unix.Errno
			errors.As(err, &errno)
			t.Logf("bridge: errno %d (%s): %v", int(errno), unix.ErrnoName(errno), err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

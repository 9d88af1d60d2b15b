// SPDX-License-Identifier: Apache-2.0

// Package nicmodel makes a veth of a topology behave like a physical NIC where XDP
// needs it to: the peer of a device that sends with XDP_TX runs NAPI (PeerNAPI), and
// what goes on the wire carries complete checksums (TxChecksum).
package nicmodel

import (
	"fmt"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"podpath/internal/nsutil"
)

// PeerNAPI attaches an XDP program that passes everything to ifname (in nsPath), the
// bridge port at the far end of a node's NIC. A veth transmits what XDP sends back out
// (XDP_TX) only when its peer runs NAPI, which an XDP program on the peer turns on; a
// physical NIC needs nothing of the kind, so this makes the topology's wire behave like
// one. The program never changes or drops a packet. It is attached through netlink,
// not a bpf link, so it stays with the device after the process that brought the
// topology up exits, and goes when the device is deleted (topology down). It declares
// multi-buffer support (BPF_F_XDP_HAS_FRAGS): a veth refuses a program without it when
// its peer's MTU exceeds a page, and a jumbo wire must still get the model.
func PeerNAPI(nsPath, ifname string) error {
	err := nsutil.Do(nsPath, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdp_wire_pass", Type: ebpf.XDP, License: "GPL",
			Flags:        unix.BPF_F_XDP_HAS_FRAGS,
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()}})
		if err != nil {
			return err
		}
		// The device holds its own reference to the program once attached.
		defer prog.Close()
		return netlink.LinkSetXdpFdWithFlags(l, prog.FD(), nl.XDP_FLAGS_DRV_MODE)
	})
	if err != nil {
		return fmt.Errorf("XDP pass program on the wire's far end %s: %w", ifname, err)
	}
	return nil
}

// XDPProgID is the ID of the XDP program attached to ifname (in nsPath) as the kernel
// reports it in the link's attributes (IFLA_XDP_PROG_ID); 0: none.
func XDPProgID(nsPath, ifname string) (uint32, error) {
	var id uint32
	err := nsutil.Do(nsPath, func() error {
		l, err := netlink.LinkByName(ifname)
		if err != nil {
			return err
		}
		if x := l.Attrs().Xdp; x != nil && x.Attached {
			id = x.ProgId
		}
		return nil
	})
	return id, err
}

// TxChecksum turns transmit checksum offload of ifname (in nsPath) off or on
// (`ethtool -K IF tx off`, the legacy ETHTOOL_STXCSUM). With it off, the kernel
// completes every TCP/UDP checksum before the veth takes the packet, as a physical
// NIC does on the wire; with it on, a veth hands CHECKSUM_PARTIAL packets to its peer,
// whose XDP program sees only the pseudo-header sum, and a frame XDP sends back out
// (XDP_TX) is rebuilt without the offload state: the sum would never be completed.
func TxChecksum(nsPath, ifname string, on bool) error {
	return nsutil.Do(nsPath, func() error {
		var data uint32
		if on {
			data = 1
		}
		if _, err := ethtoolValue(ifname, 0x17 /* ETHTOOL_STXCSUM */, data); err != nil {
			return fmt.Errorf("ethtool -K %s tx %v: %w", ifname, on, err)
		}
		return nil
	})
}

// ethtoolValue runs one legacy ethtool_value command (SIOCETHTOOL) on ifname in the
// calling thread's namespace and returns the value the kernel left in it.
func ethtoolValue(ifname string, cmd, data uint32) (uint32, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	val := struct{ cmd, data uint32 }{cmd: cmd, data: data}
	var ifr struct {
		name [unix.IFNAMSIZ]byte
		data uintptr
		_    [16]byte
	}
	copy(ifr.name[:], ifname)
	ifr.data = uintptr(unsafe.Pointer(&val))
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
		return 0, errno
	}
	return val.data, nil
}

// TxChecksumOn reads whether transmit checksum offload of ifname (in nsPath) is on
// (`ethtool -k IF`, the legacy ETHTOOL_GTXCSUM), from the kernel.
func TxChecksumOn(nsPath, ifname string) (bool, error) {
	var on bool
	err := nsutil.Do(nsPath, func() error {
		val, err := ethtoolValue(ifname, 0x16 /* ETHTOOL_GTXCSUM */, 0)
		on = val != 0
		return err
	})
	return on, err
}

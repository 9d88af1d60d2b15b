// SPDX-License-Identifier: Apache-2.0

// Package nicmodel makes a veth of a topology behave like a physical NIC where XDP
// needs it to: the peer of a device that sends with XDP_TX runs NAPI (PeerNAPI), and
// what goes on the wire carries complete checksums (TxChecksum).
package nicmodel

import (
	"fmt"
	"net"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"podpath/internal/nsutil"
)

// PeerNAPI attaches an XDP program that passes everything to the bridge port at the
// far end of the entry node's NIC. A veth transmits what XDP sends back out
// (XDP_TX) only when its peer runs NAPI, which an XDP program on the peer turns on;
// a physical NIC needs nothing of the kind, so this makes the topology's wire behave
// like one. The program never changes or drops a packet.
func PeerNAPI(nsPath, ifname string) (func(), error) {
	var l link.Link
	var prog *ebpf.Program
	err := nsutil.Do(nsPath, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdp_wire_pass", Type: ebpf.XDP, License: "GPL",
			Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2 /* XDP_PASS */), asm.Return()}})
		if err != nil {
			return err
		}
		l, err = link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifi.Index, Flags: link.XDPDriverMode})
		return err
	})
	if err != nil {
		if prog != nil {
			prog.Close()
		}
		return nil, fmt.Errorf("XDP pass program on the wire's far end %s: %w", ifname, err)
	}
	return func() { l.Close(); prog.Close() }, nil
}

// TxChecksum turns transmit checksum offload of ifname (in nsPath) off or on
// (`ethtool -K IF tx off`, the legacy ETHTOOL_STXCSUM). With it off, the kernel
// completes every TCP/UDP checksum before the veth takes the packet, as a physical
// NIC does on the wire; with it on, a veth hands CHECKSUM_PARTIAL packets to its peer,
// whose XDP program sees only the pseudo-header sum, and a frame XDP sends back out
// (XDP_TX) is rebuilt without the offload state: the sum would never be completed.
func TxChecksum(nsPath, ifname string, on bool) error {
	return nsutil.Do(nsPath, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		val := struct{ cmd, data uint32 }{cmd: 0x17 /* ETHTOOL_STXCSUM */}
		if on {
			val.data = 1
		}
		var ifr struct {
			name [unix.IFNAMSIZ]byte
			data uintptr
			_    [16]byte
		}
		copy(ifr.name[:], ifname)
		ifr.data = uintptr(unsafe.Pointer(&val))
		if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr))); errno != 0 {
			return fmt.Errorf("ethtool -K %s tx %v: %w", ifname, on, errno)
		}
		return nil
	})
}

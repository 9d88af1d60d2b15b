// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/topology"
)

// RawProbe is one IPv4 packet whose every header field the harness chooses, so that it
// can be recognised at every hop whatever NAT or encapsulation does to it: the IPv4 ID
// survives both (NAT leaves it, Geneve copies it to the outer header, VXLAN keeps the
// inner one).
type RawProbe struct {
	Proto   Protocol // icmp (echo request), udp, tcp (a SYN)
	Dst     netip.Addr
	DstPort uint16 // udp, tcp
	SrcPort uint16 // udp, tcp; the ICMP echo identifier for icmp
	ID      uint16 // IPv4 identification, non-zero
	TTL     uint8
	DF      bool
	Payload int // bytes after the L4 header
}

// SendRaw sends p once from member's namespace through an IPPROTO_RAW socket: the
// kernel routes it as any locally generated packet (the source address is the route's
// preferred source, resolved here first so the L4 checksum can cover it) and leaves
// every field set here as it is. It returns the source address used.
func SendRaw(t topology.Cluster, member string, p RawProbe) (netip.Addr, error) {
	var src netip.Addr
	err := t.Do(member, func() error {
		routes, err := netlink.RouteGet(p.Dst.AsSlice())
		if err != nil || len(routes) == 0 {
			return fmt.Errorf("route to %s in %s: %v", p.Dst, member, err)
		}
		a, ok := netip.AddrFromSlice(routes[0].Src.To4())
		if !ok {
			return fmt.Errorf("route to %s in %s has no source address", p.Dst, member)
		}
		src = a
		pkt, err := buildRaw(src, p)
		if err != nil {
			return err
		}
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket in %s: %w", member, err)
		}
		defer unix.Close(fd)
		sa := &unix.SockaddrInet4{Addr: p.Dst.As4()}
		if err := unix.Sendto(fd, pkt, 0, sa); err != nil {
			return fmt.Errorf("send %d-byte %s probe %s -> %s in %s: %w", len(pkt), p.Proto, src, p.Dst, member, err)
		}
		return nil
	})
	return src, err
}

// buildRaw lays out the IPv4 header and the L4 header with its checksum.
func buildRaw(src netip.Addr, p RawProbe) ([]byte, error) {
	var l4 []byte
	switch p.Proto {
	case ICMP:
		l4 = make([]byte, 8+p.Payload)
		l4[0] = 8 // echo request
		binary.BigEndian.PutUint16(l4[4:6], p.SrcPort)
		binary.BigEndian.PutUint16(l4[6:8], 1)
		fillPayload(l4[8:])
		binary.BigEndian.PutUint16(l4[2:4], ^sum16(l4, 0))
	case UDP:
		l4 = make([]byte, 8+p.Payload)
		binary.BigEndian.PutUint16(l4[0:2], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:4], p.DstPort)
		binary.BigEndian.PutUint16(l4[4:6], uint16(len(l4)))
		fillPayload(l4[8:])
		c := ^sum16(l4, pseudo(src, p.Dst, 17, len(l4)))
		if c == 0 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[6:8], c)
	case TCP:
		l4 = make([]byte, 20+p.Payload)
		binary.BigEndian.PutUint16(l4[0:2], p.SrcPort)
		binary.BigEndian.PutUint16(l4[2:4], p.DstPort)
		binary.BigEndian.PutUint32(l4[4:8], uint32(p.ID)<<16|0x5eed)
		l4[12] = 5 << 4
		l4[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(l4[14:16], 64240)
		fillPayload(l4[20:])
		binary.BigEndian.PutUint16(l4[16:18], ^sum16(l4, pseudo(src, p.Dst, 6, len(l4))))
	default:
		return nil, fmt.Errorf("raw probe: protocol %q is not icmp, udp or tcp", p.Proto)
	}
	total := 20 + len(l4)
	if total > 0xffff {
		return nil, fmt.Errorf("raw probe: %d bytes do not fit one IPv4 packet", total)
	}
	ip := make([]byte, 20, total)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(total))
	binary.BigEndian.PutUint16(ip[4:6], p.ID)
	if p.DF {
		ip[6] = 0x40
	}
	ip[8] = p.TTL
	ip[9] = map[Protocol]byte{ICMP: 1, UDP: 17, TCP: 6}[p.Proto]
	s4, d4 := src.As4(), p.Dst.As4()
	copy(ip[12:16], s4[:])
	copy(ip[16:20], d4[:])
	binary.BigEndian.PutUint16(ip[10:12], ^sum16(ip, 0)) // the kernel recomputes it anyway
	return append(ip, l4...), nil
}

func fillPayload(b []byte) {
	for i := range b {
		b[i] = byte('a' + i%26)
	}
}

// pseudo is the one's complement sum of the IPv4 pseudo-header.
func pseudo(src, dst netip.Addr, proto byte, length int) uint32 {
	s, d := src.As4(), dst.As4()
	b := append(append(s[:], d[:]...), 0, proto, byte(length>>8), byte(length))
	return uint32(sum16(b, 0))
}

// sum16 folds the one's complement sum of b (padded to even length) onto initial.
func sum16(b []byte, initial uint32) uint16 {
	sum := initial
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

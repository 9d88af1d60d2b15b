// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"fmt"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
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

// buildRaw lays the packet out with gopacket and the package's serialize options
// (lengths and checksums computed, the L4 one over the pseudo-header). Not serialize():
// that one trims Ethernet frames, and this packet has no Ethernet header.
func buildRaw(src netip.Addr, p RawProbe) ([]byte, error) {
	ip := &layers.IPv4{Version: 4, IHL: 5, Id: p.ID, TTL: p.TTL, SrcIP: src.AsSlice(), DstIP: p.Dst.AsSlice()}
	if p.DF {
		ip.Flags = layers.IPv4DontFragment
	}
	payload := make(gopacket.Payload, p.Payload)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	switch p.Proto {
	case ICMP:
		ip.Protocol = layers.IPProtocolICMPv4
		return serializeIP(ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: p.SrcPort, Seq: 1}, payload)
	case UDP:
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: layers.UDPPort(p.SrcPort), DstPort: layers.UDPPort(p.DstPort)}
		if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		return serializeIP(ip, udp, payload)
	case TCP:
		ip.Protocol = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: layers.TCPPort(p.SrcPort), DstPort: layers.TCPPort(p.DstPort), Seq: uint32(p.ID)<<16 | 0x5eed, SYN: true, Window: 64240}
		if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
			return nil, err
		}
		return serializeIP(ip, tcp, payload)
	}
	return nil, fmt.Errorf("raw probe: protocol %q is not icmp, udp or tcp", p.Proto)
}

func serializeIP(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, serializeOpts, ls...); err != nil {
		return nil, fmt.Errorf("serialize probe: %w", err)
	}
	return buf.Bytes(), nil
}

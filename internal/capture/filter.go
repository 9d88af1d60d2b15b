// SPDX-License-Identifier: Apache-2.0

package capture

import (
	"net"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Filter selects decoded packets. A nil Filter matches every packet.
//
// The header filters below (IPv4Flow, ICMPEcho…, UDPPort, TCPPort) match a header
// wherever it sits, outside or inside a VXLAN/Geneve tunnel, so one filter follows a
// packet across every hop, encapsulated or not. InnerIPv4 and Inner only look inside a
// tunnel. Combining header filters with And checks each one on its own: they may be
// satisfied by different headers of the same frame (outer and inner).
type Filter func(gopacket.Packet) bool

// AnyVNI makes VXLAN and Geneve match any VNI (VNIs are 24 bits, so it is never real).
const AnyVNI uint32 = 1<<32 - 1

func (f Filter) match(p Packet) bool { return f == nil || f(p.Decode()) }

// And matches packets that every filter matches.
func And(fs ...Filter) Filter {
	return func(p gopacket.Packet) bool {
		for _, f := range fs {
			if f != nil && !f(p) {
				return false
			}
		}
		return true
	}
}

// Or matches packets that at least one filter matches.
func Or(fs ...Filter) Filter {
	return func(p gopacket.Packet) bool {
		for _, f := range fs {
			if f == nil || f(p) {
				return true
			}
		}
		return false
	}
}

// Not matches packets that f does not match.
func Not(f Filter) Filter {
	return func(p gopacket.Packet) bool { return f != nil && !f(p) }
}

// ipMatch reports whether ip is want, or want is nil (any address).
func ipMatch(want, ip net.IP) bool { return want == nil || want.Equal(ip) }

// anyIPv4 reports whether some IPv4 header src>dst (nil = any), together with the layer
// that follows it (nil if none), satisfies fn. With innerOnly, only headers carried inside
// a tunnel count.
func anyIPv4(p gopacket.Packet, src, dst net.IP, innerOnly bool, fn func(*layers.IPv4, gopacket.Layer) bool) bool {
	ls := p.Layers()
	inner := false
	for i, l := range ls {
		if isTunnel(l) {
			inner = true
			continue
		}
		ip, ok := l.(*layers.IPv4)
		if !ok || (innerOnly && !inner) || !ipMatch(src, ip.SrcIP) || !ipMatch(dst, ip.DstIP) {
			continue
		}
		var next gopacket.Layer
		if i+1 < len(ls) {
			next = ls[i+1]
		}
		if fn == nil || fn(ip, next) {
			return true
		}
	}
	return false
}

// IPv4Flow matches packets with an IPv4 header from src to dst carrying proto. A nil
// address matches any address; proto 0 matches any protocol.
func IPv4Flow(src, dst net.IP, proto layers.IPProtocol) Filter {
	return func(p gopacket.Packet) bool {
		return anyIPv4(p, src, dst, false, func(ip *layers.IPv4, _ gopacket.Layer) bool {
			return proto == 0 || ip.Protocol == proto
		})
	}
}

// InnerIPv4 matches packets whose tunnel (VXLAN or Geneve) carries an IPv4 header from
// src to dst (nil matches any address).
func InnerIPv4(src, dst net.IP) Filter {
	return func(p gopacket.Packet) bool { return anyIPv4(p, src, dst, true, nil) }
}

func icmpEcho(src, dst net.IP, typ uint8, id, seq int) Filter {
	return func(p gopacket.Packet) bool {
		return anyIPv4(p, src, dst, false, func(_ *layers.IPv4, next gopacket.Layer) bool {
			icmp, ok := next.(*layers.ICMPv4)
			return ok && icmp.TypeCode.Type() == typ &&
				(id < 0 || int(icmp.Id) == id) && (seq < 0 || int(icmp.Seq) == seq)
		})
	}
}

// ICMPEcho matches ICMPv4 echo requests from src to dst, any identifier and sequence
// (nil matches any address).
func ICMPEcho(src, dst net.IP) Filter {
	return icmpEcho(src, dst, layers.ICMPv4TypeEchoRequest, -1, -1)
}

// ICMPEchoSeq matches the ICMPv4 echo request from src to dst with this identifier and
// sequence number.
func ICMPEchoSeq(src, dst net.IP, id, seq uint16) Filter {
	return icmpEcho(src, dst, layers.ICMPv4TypeEchoRequest, int(id), int(seq))
}

// ICMPEchoReply matches ICMPv4 echo replies from src (the pinged host) to dst, any
// identifier and sequence.
func ICMPEchoReply(src, dst net.IP) Filter {
	return icmpEcho(src, dst, layers.ICMPv4TypeEchoReply, -1, -1)
}

// ICMPEchoReplySeq matches the ICMPv4 echo reply from src to dst with this identifier
// and sequence number.
func ICMPEchoReplySeq(src, dst net.IP, id, seq uint16) Filter {
	return icmpEcho(src, dst, layers.ICMPv4TypeEchoReply, int(id), int(seq))
}

// UDPPort matches packets with a UDP header whose source or destination port is port.
func UDPPort(port uint16) Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			if u, ok := l.(*layers.UDP); ok && (uint16(u.SrcPort) == port || uint16(u.DstPort) == port) {
				return true
			}
		}
		return false
	}
}

// TCPPort matches packets with a TCP header whose source or destination port is port.
func TCPPort(port uint16) Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			if t, ok := l.(*layers.TCP); ok && (uint16(t.SrcPort) == port || uint16(t.DstPort) == port) {
				return true
			}
		}
		return false
	}
}

// Tunnel matches VXLAN- or Geneve-encapsulated packets.
func Tunnel() Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			if isTunnel(l) {
				return true
			}
		}
		return false
	}
}

// VXLAN matches packets with a VXLAN header carrying vni (AnyVNI for any).
func VXLAN(vni uint32) Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			if v, ok := l.(*layers.VXLAN); ok && (vni == AnyVNI || v.VNI == vni) {
				return true
			}
		}
		return false
	}
}

// Geneve matches packets with a Geneve header carrying vni (AnyVNI for any).
func Geneve(vni uint32) Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			if g, ok := l.(*layers.Geneve); ok && (vni == AnyVNI || g.VNI == vni) {
				return true
			}
		}
		return false
	}
}

// Inner applies f to the packet carried by the outermost VXLAN or Geneve tunnel alone,
// so every header f looks at is an inner one. Packets without a tunnel do not match.
func Inner(f Filter) Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			var next gopacket.Decoder
			switch t := l.(type) {
			case *layers.VXLAN:
				next = layers.LayerTypeEthernet
			case *layers.Geneve:
				next = t.NextLayerType()
			default:
				continue
			}
			inner := gopacket.NewPacket(l.LayerPayload(), next, gopacket.DecodeOptions{NoCopy: true})
			return f == nil || f(inner)
		}
		return false
	}
}

// SPDX-License-Identifier: Apache-2.0

package capture

import (
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Tunnel ports decoded out of the box.
const (
	VXLANPortLinux = 8472 // Linux and Cilium default
	VXLANPortIANA  = 4789
	GenevePort     = 6081
)

func init() { RegisterVXLANPort(VXLANPortLinux) }

// RegisterVXLANPort makes UDP datagrams to (or from) port decode as VXLAN, for datapaths
// configured with another tunnel port. Ports 8472 and 4789 are registered already.
// It changes gopacket's global port table: call it during setup, never while packets
// are being decoded.
func RegisterVXLANPort(port uint16) {
	layers.RegisterUDPPortLayerType(layers.UDPPort(port), layers.LayerTypeVXLAN)
}

// RegisterGenevePort makes UDP datagrams to (or from) port decode as Geneve. Port 6081
// is registered already. Same caveat as RegisterVXLANPort.
func RegisterGenevePort(port uint16) {
	layers.RegisterUDPPortLayerType(layers.UDPPort(port), layers.LayerTypeGeneve)
}

// Packet is one frame seen at one capture point.
type Packet struct {
	Member    string    // node, pod, router or client that owns the interface
	Interface string    // interface name inside the member's namespace
	Timestamp time.Time // kernel receive/transmit time (CLOCK_REALTIME, shared by all points)
	Outgoing  bool      // sent by the interface (PACKET_OUTGOING) rather than received
	Data      []byte    // captured bytes, at most the snaplen
	Length    int       // original length on the wire
	// LinkType is the first header of Data; the zero value means Ethernet.
	LinkType layers.LinkType
	// GSO is set for a super-packet that the kernel segments before a real wire.
	GSO GSO

	decoded *decodeCache
}

// WireFrameLen is the length of the largest frame this packet is on a real wire: its
// Length, or for a GSO super-packet its headers (up to the innermost TCP or UDP
// payload) plus one segment.
func (p Packet) WireFrameLen() int {
	if p.GSO.Size == 0 {
		return p.Length
	}
	var payload int = -1
	for _, l := range p.Decode().Layers() {
		switch l.LayerType() {
		case layers.LayerTypeTCP, layers.LayerTypeUDP:
			payload = len(l.LayerPayload())
		}
	}
	if payload < 0 {
		return p.Length
	}
	return len(p.Data) - payload + int(p.GSO.Size)
}

type decodeCache struct {
	once sync.Once
	pkt  gopacket.Packet
}

// Decode returns the packet decoded into gopacket layers. Packets from a Session decode
// once and share the result, which must be treated as read-only.
func (p Packet) Decode() gopacket.Packet {
	if p.decoded == nil {
		return p.decode()
	}
	p.decoded.once.Do(func() { p.decoded.pkt = p.decode() })
	return p.decoded.pkt
}

func (p Packet) decode() gopacket.Packet {
	lt := p.LinkType
	if lt == 0 {
		lt = layers.LinkTypeEthernet
	}
	pkt := gopacket.NewPacket(p.Data, lt, gopacket.DecodeOptions{NoCopy: true})
	md := pkt.Metadata()
	md.Timestamp = p.Timestamp
	md.CaptureLength = len(p.Data)
	md.Length = max(p.Length, len(p.Data))
	md.Truncated = md.Truncated || p.Length > len(p.Data)
	return pkt
}

// String is Summary.
func (p Packet) String() string { return p.Summary() }

// Summary describes the packet on one line for evidence in reports and failures: time,
// member/interface, direction, length, then each header; the headers inside a VXLAN or
// Geneve tunnel follow an "| inner:" marker.
//
//	12:00:01.000000123 node1/eth0 out len=148: ETH 02:..>02:.. IPv4 192.168.0.1>192.168.0.2 ttl=64 len=134 UDP 51234>8472 len=114 VXLAN vni=2 | inner: ETH .. IPv4 10.0.1.5>10.0.2.7 ...
func (p Packet) Summary() string {
	dir := "in "
	if p.Outgoing {
		dir = "out"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s/%s %s len=%d", p.Timestamp.Format("15:04:05.000000000"), p.Member, p.Interface, dir, p.Length)
	if len(p.Data) < p.Length {
		fmt.Fprintf(&b, " caplen=%d", len(p.Data))
	}
	if p.GSO.Size != 0 {
		fmt.Fprintf(&b, " gso=%d (wire frames %d)", p.GSO.Size, p.WireFrameLen())
	}
	b.WriteString(":")
	b.WriteString(LayersSummary(p.Decode()))
	return b.String()
}

// LayersSummary describes the headers of a decoded packet on one line (the part of
// Summary after the colon, with a leading space).
func LayersSummary(pkt gopacket.Packet) string {
	var b strings.Builder
	for _, l := range pkt.Layers() {
		b.WriteByte(' ')
		b.WriteString(layerSummary(l))
		if isTunnel(l) {
			b.WriteString(" | inner:")
		}
	}
	return b.String()
}

func isTunnel(l gopacket.Layer) bool {
	t := l.LayerType()
	return t == layers.LayerTypeVXLAN || t == layers.LayerTypeGeneve
}

func layerSummary(l gopacket.Layer) string {
	switch h := l.(type) {
	case *layers.Ethernet:
		return fmt.Sprintf("ETH %s>%s", h.SrcMAC, h.DstMAC)
	case *layers.Dot1Q:
		return fmt.Sprintf("VLAN %d", h.VLANIdentifier)
	case *layers.ARP:
		return arpSummary(h)
	case *layers.IPv4:
		s := fmt.Sprintf("IPv4 %s>%s ttl=%d len=%d", h.SrcIP, h.DstIP, h.TTL, h.Length)
		if h.Flags&layers.IPv4DontFragment != 0 {
			s += " DF"
		}
		if h.FragOffset != 0 || h.Flags&layers.IPv4MoreFragments != 0 {
			s += fmt.Sprintf(" frag=%d", int(h.FragOffset)*8)
			if h.Flags&layers.IPv4MoreFragments != 0 {
				s += "+"
			}
		}
		if h.IHL > 5 {
			s += fmt.Sprintf(" optlen=%d", (int(h.IHL)-5)*4)
		}
		return s
	case *layers.IPv6:
		return fmt.Sprintf("IPv6 %s>%s hlim=%d len=%d", h.SrcIP, h.DstIP, h.HopLimit, h.Length)
	case *layers.UDP:
		return fmt.Sprintf("UDP %d>%d len=%d", h.SrcPort, h.DstPort, h.Length)
	case *layers.TCP:
		return fmt.Sprintf("TCP %d>%d [%s] seq=%d ack=%d win=%d len=%d",
			h.SrcPort, h.DstPort, tcpFlags(h), h.Seq, h.Ack, h.Window, len(h.Payload))
	case *layers.ICMPv4:
		return icmpv4Summary(h)
	case *layers.ICMPv6:
		return fmt.Sprintf("ICMPv6 %s", h.TypeCode)
	case *layers.VXLAN:
		return fmt.Sprintf("VXLAN vni=%d", h.VNI)
	case *layers.Geneve:
		s := fmt.Sprintf("Geneve vni=%d", h.VNI)
		for _, o := range h.Options {
			s += fmt.Sprintf(" opt=%#04x/%d", o.Class, o.Type)
		}
		return s
	case *gopacket.Payload:
		return fmt.Sprintf("payload=%d", len(*h))
	case *gopacket.DecodeFailure:
		return fmt.Sprintf("undecoded(%d bytes): %v", len(h.LayerContents()), h.Error())
	}
	return l.LayerType().String()
}

func arpSummary(h *layers.ARP) string {
	switch h.Operation {
	case layers.ARPRequest:
		return fmt.Sprintf("ARP who-has %s tell %s", ipString(h.DstProtAddress), ipString(h.SourceProtAddress))
	case layers.ARPReply:
		return fmt.Sprintf("ARP %s is-at %s", ipString(h.SourceProtAddress), macString(h.SourceHwAddress))
	}
	return fmt.Sprintf("ARP op=%d", h.Operation)
}

func icmpv4Summary(h *layers.ICMPv4) string {
	switch h.TypeCode.Type() {
	case layers.ICMPv4TypeEchoRequest:
		return fmt.Sprintf("ICMPv4 echo-request id=%d seq=%d", h.Id, h.Seq)
	case layers.ICMPv4TypeEchoReply:
		return fmt.Sprintf("ICMPv4 echo-reply id=%d seq=%d", h.Id, h.Seq)
	}
	if h.TypeCode == layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded) {
		// The next-hop MTU sits where an echo carries its sequence number.
		return fmt.Sprintf("ICMPv4 frag-needed mtu=%d", h.Seq)
	}
	return fmt.Sprintf("ICMPv4 %s", h.TypeCode)
}

func tcpFlags(h *layers.TCP) string {
	var f []byte
	for _, x := range []struct {
		on bool
		c  byte
	}{{h.SYN, 'S'}, {h.FIN, 'F'}, {h.RST, 'R'}, {h.PSH, 'P'}, {h.URG, 'U'}, {h.ECE, 'E'}, {h.CWR, 'W'}, {h.ACK, '.'}} {
		if x.on {
			f = append(f, x.c)
		}
	}
	return string(f)
}

func ipString(b []byte) string {
	if len(b) == 4 || len(b) == 16 {
		return net.IP(b).String()
	}
	return fmt.Sprintf("%x", b)
}

func macString(b []byte) string {
	if len(b) == 6 {
		return net.HardwareAddr(b).String()
	}
	return fmt.Sprintf("%x", b)
}

// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"podpath/internal/nsutil"
)

// The injector: hand-built Ethernet frames (forged tunnel packets, spoofed sources,
// malformed headers) sent raw with an AF_PACKET socket bound to one interface inside a
// member's namespace, never in the root namespace. The builders are pure: the step
// chooses addresses, all of them of the run's own namespaces.

// L2 is the Ethernet addressing of a built frame.
type L2 struct {
	Src, Dst net.HardwareAddr
}

// IPv4Fields are the IPv4 header fields a builder sets; ID marks the packet so that
// captures and trace records can tell it from any other.
type IPv4Fields struct {
	Src, Dst netip.Addr
	ID       uint16
	TTL      uint8 // 0: 64
	TOS      uint8
	// Flags and FragOffset (in 8-byte units) of the fragment fields.
	Flags      layers.IPv4Flag
	FragOffset uint16
}

func (f IPv4Fields) layer(proto layers.IPProtocol) *layers.IPv4 {
	ttl := f.TTL
	if ttl == 0 {
		ttl = 64
	}
	return &layers.IPv4{
		Version: 4, IHL: 5, TOS: f.TOS, Id: f.ID, TTL: ttl, Protocol: proto,
		Flags: f.Flags, FragOffset: f.FragOffset,
		SrcIP: net.IP(f.Src.AsSlice()), DstIP: net.IP(f.Dst.AsSlice()),
	}
}

var serializeOpts = gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}

func serialize(ls ...gopacket.SerializableLayer) ([]byte, error) {
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, serializeOpts, ls...); err != nil {
		return nil, fmt.Errorf("serialize frame: %w", err)
	}
	b := buf.Bytes()
	// No Ethernet padding (gopacket pads to 60 bytes): the frame ends with its IPv4
	// packet, so what a capture sees is byte for byte what was built.
	if len(b) >= 14+20 {
		if end := 14 + int(binary.BigEndian.Uint16(b[14+2:])); end < len(b) {
			b = b[:end]
		}
	}
	return b, nil
}

func ethernet(l2 L2) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: l2.Src, DstMAC: l2.Dst, EthernetType: layers.EthernetTypeIPv4}
}

// TCPSYN builds an Ethernet/IPv4/TCP SYN frame with checksums, sequence number seq.
func TCPSYN(l2 L2, ip IPv4Fields, sport, dport uint16, seq uint32) ([]byte, error) {
	ip4 := ip.layer(layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, SYN: true, Window: 64240}
	if err := tcp.SetNetworkLayerForChecksum(ip4); err != nil {
		return nil, fmt.Errorf("tcp checksum: %w", err)
	}
	return serialize(ethernet(l2), ip4, tcp)
}

// ICMPEchoRequest builds an Ethernet/IPv4/ICMP echo request frame with a small payload.
func ICMPEchoRequest(l2 L2, ip IPv4Fields, id, seq uint16) ([]byte, error) {
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: id, Seq: seq}
	return serialize(ethernet(l2), ip.layer(layers.IPProtocolICMPv4), icmp, gopacket.Payload("podpath-inject"))
}

// ARPRequest builds an Ethernet/ARP who-has frame: an inner frame that is not IPv4.
func ARPRequest(l2 L2, sender, target netip.Addr) ([]byte, error) {
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6,
		ProtAddressSize: 4, Operation: layers.ARPRequest, SourceHwAddress: l2.Src, SourceProtAddress: sender.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: target.AsSlice()}
	eth := &layers.Ethernet{SrcMAC: l2.Src, DstMAC: l2.Dst, EthernetType: layers.EthernetTypeARP}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, serializeOpts, eth, arp); err != nil {
		return nil, fmt.Errorf("serialize arp: %w", err)
	}
	return buf.Bytes()[:14+28], nil
}

// Outer is the outer Ethernet/IPv4/UDP of an encapsulated frame. The UDP checksum is
// left 0 (allowed over IPv4, as the kernel's tunnels send it).
type Outer struct {
	L2    L2
	IP    IPv4Fields
	Sport uint16
	Dport uint16
}

func (o Outer) wrap(tunnelHdr []byte, inner []byte) ([]byte, error) {
	return UDPFrame(o, append(append([]byte(nil), tunnelHdr...), inner...))
}

// UDPFrame builds the outer Ethernet/IPv4/UDP frame with payload as it is (a tunnel
// header cut short, say).
func UDPFrame(o Outer, payload []byte) ([]byte, error) {
	ip4 := o.IP.layer(layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(o.Sport), DstPort: layers.UDPPort(o.Dport)}
	if err := udp.SetNetworkLayerForChecksum(ip4); err != nil {
		return nil, fmt.Errorf("udp checksum: %w", err)
	}
	b, err := serialize(ethernet(o.L2), ip4, udp, gopacket.Payload(payload))
	if err != nil {
		return nil, err
	}
	// gopacket computes the UDP checksum when asked for checksums; clear it: a zero
	// checksum is what the tunnels send, and nothing in the path verifies it.
	binary.BigEndian.PutUint16(b[14+20+6:], 0)
	return b, nil
}

// VXLANHeader is the 8-byte VXLAN header (RFC 7348): flags with the I bit, the VNI.
func VXLANHeader(vni uint32) []byte {
	h := make([]byte, 8)
	h[0] = 0x08
	binary.BigEndian.PutUint32(h[4:], vni<<8)
	return h
}

// VXLAN builds a VXLAN-encapsulated frame around inner (a whole Ethernet frame).
func VXLAN(o Outer, vni uint32, inner []byte) ([]byte, error) {
	return o.wrap(VXLANHeader(vni), inner)
}

// GeneveHeader is a Geneve header (RFC 8926) as built, including malformed ones: any
// version, the O and C bits, the protocol type, and raw options (whose length, in
// 4-byte words, goes into the header unless OptLenWords overrides it).
type GeneveHeader struct {
	Version     uint8 // 2 bits
	OAM         bool
	Critical    bool
	Protocol    uint16 // 0: 0x6558 (Transparent Ethernet Bridging)
	VNI         uint32
	Options     []byte
	OptLenWords int // -1 or 0: len(Options)/4
}

// Bytes encodes the header and its options.
func (g GeneveHeader) Bytes() []byte {
	words := len(g.Options) / 4
	if g.OptLenWords > 0 {
		words = g.OptLenWords
	}
	proto := g.Protocol
	if proto == 0 {
		proto = 0x6558
	}
	h := make([]byte, 8, 8+len(g.Options))
	h[0] = g.Version<<6 | uint8(words&0x3f)
	if g.OAM {
		h[1] |= 0x80
	}
	if g.Critical {
		h[1] |= 0x40
	}
	binary.BigEndian.PutUint16(h[2:], proto)
	binary.BigEndian.PutUint32(h[4:], g.VNI<<8)
	return append(h, g.Options...)
}

// CiliumDSROption is Cilium's Geneve DSR option (class 0x014B, type 1, 2 words): the
// service address and port a backend's replies must come from.
func CiliumDSROption(svc netip.AddrPort) []byte {
	o := []byte{0x01, 0x4b, 0x01, 0x02, 0, 0, 0, 0, 0, 0, 0, 0}
	a := svc.Addr().As4()
	copy(o[4:8], a[:])
	binary.BigEndian.PutUint16(o[8:], svc.Port())
	return o
}

// Geneve builds a Geneve-encapsulated frame around inner (a whole Ethernet frame).
func Geneve(o Outer, g GeneveHeader, inner []byte) ([]byte, error) {
	return o.wrap(g.Bytes(), inner)
}

// The malformations of an IPv4 frame (Ethernet + IPv4 header at offset 14).
type Malformation string

const (
	// BadIHL sets the IPv4 IHL to 4 words (below the minimum of 5).
	BadIHL Malformation = "bad-ihl"
	// BadIPVersion sets the IPv4 version field to 6 under EtherType IPv4.
	BadIPVersion Malformation = "bad-ip-version"
	// TotalLenPastFrame sets the IPv4 total length 200 bytes past the frame's end.
	TotalLenPastFrame Malformation = "total-len-past-frame"
	// TruncatedTCP cuts the TCP header to its first 10 bytes, IPv4 total length to match.
	TruncatedTCP Malformation = "truncated-tcp"
)

// Malform returns a copy of a well-formed Ethernet/IPv4 frame with one header field
// broken (the IPv4 header checksum recomputed over the 20 bytes, as a sender would).
func Malform(frame []byte, m Malformation) ([]byte, error) {
	if len(frame) < 14+20 || frame[14]>>4 != 4 {
		return nil, errors.New("malform: not an Ethernet/IPv4 frame")
	}
	b := append([]byte(nil), frame...)
	ip := b[14:]
	switch m {
	case BadIHL:
		ip[0] = 0x44
	case BadIPVersion:
		ip[0] = 0x60 | ip[0]&0x0f
	case TotalLenPastFrame:
		binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)+200))
	case TruncatedTCP:
		if ip[9] != uint8(layers.IPProtocolTCP) || len(ip) < 20+20 {
			return nil, errors.New("malform: truncated-tcp needs a TCP frame")
		}
		b = b[:14+20+10]
		ip = b[14:]
		binary.BigEndian.PutUint16(ip[2:], 30)
	default:
		return nil, fmt.Errorf("malform: unknown malformation %q", m)
	}
	ipChecksum(ip[:20])
	return b, nil
}

// ipChecksum writes the IPv4 header checksum over h (20 bytes).
func ipChecksum(h []byte) {
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(h[10:], ^uint16(sum))
}

// Inject sends frames as they are, with an AF_PACKET raw socket bound to iface inside
// the namespace at nsPath (a member of the run). nsPath must not be empty: frames are
// never sent from the root namespace.
func Inject(nsPath, iface string, frames ...[]byte) error {
	if nsPath == "" {
		return errors.New("inject: no namespace: refusing to send from the root namespace")
	}
	return nsutil.Do(nsPath, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return fmt.Errorf("inject: %w", err)
		}
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("inject: socket: %w", err)
		}
		defer unix.Close(fd)
		addr := &unix.SockaddrLinklayer{Ifindex: ifi.Index, Protocol: htons(unix.ETH_P_ALL)}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Ifindex: ifi.Index}); err != nil {
			return fmt.Errorf("inject: bind %s: %w", iface, err)
		}
		for i, f := range frames {
			if err := unix.Sendto(fd, f, 0, addr); err != nil {
				return fmt.Errorf("inject: send frame %d on %s: %w", i, iface, err)
			}
		}
		return nil
	})
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

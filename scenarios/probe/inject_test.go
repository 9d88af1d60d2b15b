// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"podpath/internal/capture"
	"podpath/internal/nsutil"
)

var (
	macA  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xaa}
	macB  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xbb}
	podA  = netip.MustParseAddr("10.244.2.10")
	podB  = netip.MustParseAddr("10.244.1.10")
	nodeA = netip.MustParseAddr("10.0.0.2")
	nodeB = netip.MustParseAddr("10.0.0.1")
)

func innerEcho(t *testing.T, id uint16) []byte {
	t.Helper()
	b, err := ICMPEchoRequest(L2{Src: macA, Dst: macB}, IPv4Fields{Src: podA, Dst: podB, ID: id}, id, 1)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// validIPv4Checksum reports whether the 20-byte IPv4 header sums to 0xffff.
func validIPv4Checksum(h []byte) bool {
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return sum == 0xffff
}

func TestInnerFrames(t *testing.T) {
	echo := innerEcho(t, 0x5e01)
	syn, err := TCPSYN(L2{Src: macA, Dst: macB}, IPv4Fields{Src: nodeA, Dst: nodeB, ID: 0x5e02}, 41000, 30080, 7)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		size  int
		check func(gopacket.Packet) error
	}{
		{"icmp echo", echo, 14 + 20 + 8 + 14, func(p gopacket.Packet) error {
			icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			if icmp == nil || icmp.TypeCode.Type() != layers.ICMPv4TypeEchoRequest || icmp.Id != 0x5e01 {
				return fmt.Errorf("icmp %v", icmp)
			}
			return nil
		}},
		{"tcp syn", syn, 14 + 20 + 20, func(p gopacket.Packet) error {
			tcp, _ := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if tcp == nil || !tcp.SYN || tcp.DstPort != 30080 || tcp.SrcPort != 41000 || tcp.Seq != 7 {
				return fmt.Errorf("tcp %v", tcp)
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// No Ethernet padding: the frame ends with its IPv4 packet.
			if len(tc.frame) != tc.size {
				t.Errorf("frame of %d bytes, want %d", len(tc.frame), tc.size)
			}
			p := gopacket.NewPacket(tc.frame, layers.LayerTypeEthernet, gopacket.Default)
			if el := p.ErrorLayer(); el != nil {
				t.Fatalf("decode: %v", el.Error())
			}
			if !validIPv4Checksum(tc.frame[14:]) {
				t.Error("IPv4 header checksum wrong")
			}
			if err := tc.check(p); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestVXLANFrame(t *testing.T) {
	inner := innerEcho(t, 0x5e01)
	o := Outer{L2: L2{Src: macA, Dst: macB}, IP: IPv4Fields{Src: nodeA, Dst: nodeB, ID: 0x5e01}, Sport: 40001, Dport: 4789}
	b, err := VXLAN(o, 0x123456, inner)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 14+20+8+8+len(inner) {
		t.Fatalf("frame of %d bytes, want %d", len(b), 14+20+8+8+len(inner))
	}
	// 4789 is the port gopacket decodes as VXLAN.
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	vx, _ := p.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
	if ip4 == nil || udp == nil || vx == nil {
		t.Fatalf("not IPv4/UDP/VXLAN: %v", p)
	}
	if ip4.SrcIP.String() != nodeA.String() || ip4.DstIP.String() != nodeB.String() || ip4.Id != 0x5e01 || ip4.TTL != 64 {
		t.Errorf("outer IPv4 %v -> %v id %#x ttl %d", ip4.SrcIP, ip4.DstIP, ip4.Id, ip4.TTL)
	}
	if !validIPv4Checksum(b[14:]) {
		t.Error("outer IPv4 checksum wrong")
	}
	if udp.SrcPort != 40001 || udp.DstPort != 4789 || udp.Checksum != 0 || int(udp.Length) != 8+8+len(inner) {
		t.Errorf("UDP %d -> %d checksum %#x length %d", udp.SrcPort, udp.DstPort, udp.Checksum, udp.Length)
	}
	if !vx.ValidIDFlag || vx.VNI != 0x123456 {
		t.Errorf("VXLAN I flag %v VNI %#x", vx.ValidIDFlag, vx.VNI)
	}
	if !bytes.Equal(vx.LayerPayload(), inner) {
		t.Error("inner frame differs from the one given")
	}
}

func TestGeneveHeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		g    GeneveHeader
		want []byte
	}{
		{"plain", GeneveHeader{VNI: 0x5f34}, []byte{0x00, 0x00, 0x65, 0x58, 0x00, 0x5f, 0x34, 0x00}},
		{"version 1", GeneveHeader{Version: 1, VNI: 1}, []byte{0x40, 0x00, 0x65, 0x58, 0x00, 0x00, 0x01, 0x00}},
		{"O bit", GeneveHeader{OAM: true, VNI: 1}, []byte{0x00, 0x80, 0x65, 0x58, 0x00, 0x00, 0x01, 0x00}},
		{"C bit", GeneveHeader{Critical: true, VNI: 1}, []byte{0x00, 0x40, 0x65, 0x58, 0x00, 0x00, 0x01, 0x00}},
		{"protocol", GeneveHeader{Protocol: 0x0800, VNI: 1}, []byte{0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x01, 0x00}},
		{"option length past the packet", GeneveHeader{OptLenWords: 63, VNI: 1}, []byte{0x3f, 0x00, 0x65, 0x58, 0x00, 0x00, 0x01, 0x00}},
		{"one option", GeneveHeader{VNI: 2, Options: []byte{0x01, 0x4b, 0x01, 0x01, 1, 2, 3, 4}},
			[]byte{0x02, 0x00, 0x65, 0x58, 0x00, 0x00, 0x02, 0x00, 0x01, 0x4b, 0x01, 0x01, 1, 2, 3, 4}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.g.Bytes(); !bytes.Equal(got, tc.want) {
				t.Errorf("% x, want % x", got, tc.want)
			}
		})
	}
}

func TestGeneveFrame(t *testing.T) {
	inner := innerEcho(t, 0x5e03)
	o := Outer{L2: L2{Src: macA, Dst: macB}, IP: IPv4Fields{Src: nodeA, Dst: nodeB, ID: 0x5e03}, Sport: 40003, Dport: 6081}
	b, err := Geneve(o, GeneveHeader{VNI: 0x5f34}, inner)
	if err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
	ip4, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	gn, _ := p.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
	if ip4 == nil || gn == nil {
		t.Fatalf("not IPv4/UDP/Geneve: %v", p)
	}
	if ip4.Flags != 0 || ip4.FragOffset != 0 || ip4.Id != 0x5e03 {
		t.Errorf("outer flags %v offset %d id %#x", ip4.Flags, ip4.FragOffset, ip4.Id)
	}
	if gn.Version != 0 || gn.VNI != 0x5f34 || gn.Protocol != layers.EthernetTypeTransparentEthernetBridging || gn.OAMPacket || gn.CriticalOption {
		t.Errorf("Geneve %+v", gn)
	}
	if !bytes.Equal(gn.LayerPayload(), inner) {
		t.Error("inner frame differs from the one given")
	}
}

// A first fragment: MF set, offset 0 (gopacket then decodes no further).
func TestGeneveFragment(t *testing.T) {
	o := Outer{L2: L2{Src: macA, Dst: macB}, IP: IPv4Fields{Src: nodeA, Dst: nodeB, ID: 1, Flags: layers.IPv4MoreFragments}, Sport: 40003, Dport: 6081}
	b, err := Geneve(o, GeneveHeader{VNI: 1}, innerEcho(t, 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := binary.BigEndian.Uint16(b[14+6:]); got != 0x2000 {
		t.Errorf("flags/fragment offset %#04x, want 0x2000 (MF, offset 0)", got)
	}
	if !validIPv4Checksum(b[14:]) {
		t.Error("outer IPv4 checksum wrong")
	}
}

func TestUDPFrameAndARP(t *testing.T) {
	o := Outer{L2: L2{Src: macA, Dst: macB}, IP: IPv4Fields{Src: nodeA, Dst: nodeB, ID: 2}, Sport: 40000, Dport: 6081}
	b, err := UDPFrame(o, []byte{1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 14+20+8+4 || !bytes.Equal(b[len(b)-4:], []byte{1, 2, 3, 4}) || binary.BigEndian.Uint16(b[14+20+4:]) != 12 {
		t.Errorf("UDP frame % x", b)
	}
	a, err := ARPRequest(L2{Src: macA, Dst: macB}, podA, podB)
	if err != nil {
		t.Fatal(err)
	}
	p := gopacket.NewPacket(a, layers.LayerTypeEthernet, gopacket.Default)
	arp, _ := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if len(a) != 14+28 || arp == nil || arp.Operation != layers.ARPRequest || !bytes.Equal(arp.DstProtAddress, podB.AsSlice()) {
		t.Errorf("ARP frame % x: %v", a, arp)
	}
}

func TestCiliumDSROption(t *testing.T) {
	got := CiliumDSROption(netip.MustParseAddrPort("10.96.0.20:80"))
	want := []byte{0x01, 0x4b, 0x01, 0x02, 10, 96, 0, 20, 0, 80, 0, 0}
	if !bytes.Equal(got, want) {
		t.Errorf("% x, want % x", got, want)
	}
}

func TestMalform(t *testing.T) {
	good, err := TCPSYN(L2{Src: macA, Dst: macB}, IPv4Fields{Src: nodeA, Dst: nodeB, ID: 9}, 41000, 30080, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		m      Malformation
		len    int
		verIHL byte
		totLen int
	}{
		{BadIHL, len(good), 0x44, 40},
		{BadIPVersion, len(good), 0x65, 40},
		{TotalLenPastFrame, len(good), 0x45, 40 + 200},
		{TruncatedTCP, 14 + 20 + 10, 0x45, 30},
	} {
		t.Run(string(tc.m), func(t *testing.T) {
			b, err := Malform(good, tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) != tc.len || b[14] != tc.verIHL || int(binary.BigEndian.Uint16(b[16:])) != tc.totLen {
				t.Errorf("len %d (want %d), version/IHL %#x (want %#x), total length %d (want %d)",
					len(b), tc.len, b[14], tc.verIHL, binary.BigEndian.Uint16(b[16:]), tc.totLen)
			}
			if !validIPv4Checksum(b[14:]) {
				t.Error("IPv4 header checksum not recomputed")
			}
			if !bytes.Equal(b[:14], good[:14]) || !bytes.Equal(b[14+12:14+20], good[14+12:14+20]) {
				t.Error("Ethernet header or addresses changed")
			}
		})
	}
	if b, _ := Malform(good, BadIHL); bytes.Equal(good, b) {
		t.Error("Malform changed the frame it was given")
	}
	if _, err := Malform(good[:20], BadIHL); err == nil {
		t.Error("a frame shorter than Ethernet + IPv4 was malformed")
	}
	icmp := innerEcho(t, 1)
	if _, err := Malform(icmp, TruncatedTCP); err == nil {
		t.Error("truncated-tcp of an ICMP frame was accepted")
	}
}

func TestInjectRefusesRootNamespace(t *testing.T) {
	if err := Inject("", "eth0", []byte{1}); err == nil {
		t.Error("Inject without a namespace sent from the root namespace")
	}
}

// TestInject sends a frame on one end of a veth pair inside a fresh namespace and
// captures it, byte for byte, on the other end.
func TestInject(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a network namespace and a veth pair")
	}
	name := fmt.Sprintf("pp-injtest-%d", os.Getpid())
	if err := nsutil.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(name) })
	ns := nsutil.Path(name)
	err := nsutil.Do(ns, func() error {
		veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "inj0"}, PeerName: "inj1"}
		if err := netlink.LinkAdd(veth); err != nil {
			return err
		}
		for _, n := range []string{"inj0", "inj1"} {
			l, err := netlink.LinkByName(n)
			if err == nil {
				err = netlink.LinkSetUp(l)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := capture.Start(t.TempDir(), capture.Point{Member: "ns", Interface: "inj1", NsPath: ns})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	frame, err := VXLAN(Outer{L2: L2{Src: macA, Dst: macB}, IP: IPv4Fields{Src: nodeA, Dst: nodeB, ID: 0x5e77}, Sport: 40000, Dport: 8472},
		7, innerEcho(t, 0x5e77))
	if err != nil {
		t.Fatal(err)
	}
	// Sent again every 200 ms until seen (or the deadline): the capture socket may
	// still be coming up.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if err := Inject(ns, "inj0", frame); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		for _, p := range s.Packets("ns", "inj1", nil) {
			if bytes.Equal(p.Data, frame) {
				return
			}
		}
	}
	t.Fatalf("the injected frame never arrived on inj1; seen: %v", s.Packets("ns", "inj1", nil))
}

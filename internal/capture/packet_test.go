// SPDX-License-Identifier: Apache-2.0

package capture

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	podA  = net.IPv4(10, 0, 1, 5)
	podB  = net.IPv4(10, 0, 2, 7)
	nodeA = net.IPv4(192, 168, 0, 1)
	nodeB = net.IPv4(192, 168, 0, 2)
	macA  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xa}
	macB  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0xb}
)

func serialize(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("serialize: %v", err)
	}
	return buf.Bytes()
}

func ethIPv4(src, dst net.IP, proto layers.IPProtocol) (*layers.Ethernet, *layers.IPv4) {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto, SrcIP: src, DstIP: dst}
}

func icmpEchoFrame(t *testing.T, src, dst net.IP, typ uint8, id, seq uint16) []byte {
	eth, ip := ethIPv4(src, dst, layers.IPProtocolICMPv4)
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: seq}
	return serialize(t, eth, ip, icmp, gopacket.Payload("0123456789abcdef"))
}

func udpFrame(t *testing.T, src, dst net.IP, sport, dport uint16, payload []byte) []byte {
	eth, ip := ethIPv4(src, dst, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, udp, gopacket.Payload(payload))
}

func tcpSYN(t *testing.T, src, dst net.IP, sport, dport uint16) []byte {
	eth, ip := ethIPv4(src, dst, layers.IPProtocolTCP)
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Seq: 100, Window: 64240}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, tcp)
}

// vxlanFrame wraps inner in outer Ethernet/IPv4/UDP/VXLAN, as a VXLAN device sends it.
func vxlanFrame(t *testing.T, port uint16, vni uint32, inner []byte) []byte {
	eth, ip := ethIPv4(nodeA, nodeB, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, udp, &layers.VXLAN{ValidIDFlag: true, VNI: vni}, gopacket.Payload(inner))
}

// geneveFrame wraps inner in outer Ethernet/IPv4/UDP/Geneve with one Cilium-class
// option (gopacket v1.1.19 cannot serialize Geneve, so the header is built by hand).
func geneveFrame(t *testing.T, vni uint32, inner []byte) []byte {
	opt := []byte{0x01, 0x4b, 0x01, 0x02, 10, 0, 2, 7, 0x1f, 0x90, 0, 0} // class 0x014b type 1, 8 bytes
	hdr := make([]byte, 8, 8+len(opt))
	hdr[0] = byte(len(opt) / 4)
	binary.BigEndian.PutUint16(hdr[2:], uint16(layers.EthernetTypeTransparentEthernetBridging))
	binary.BigEndian.PutUint32(hdr[4:], vni<<8)
	hdr = append(hdr, opt...)
	eth, ip := ethIPv4(nodeA, nodeB, layers.IPProtocolUDP)
	udp := &layers.UDP{SrcPort: 40001, DstPort: GenevePort}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return serialize(t, eth, ip, udp, gopacket.Payload(append(hdr, inner...)))
}

func testPackets(t *testing.T) map[string]Packet {
	req := icmpEchoFrame(t, podA, podB, layers.ICMPv4TypeEchoRequest, 7, 1)
	frames := map[string][]byte{
		"request":   req,
		"reply":     icmpEchoFrame(t, podB, podA, layers.ICMPv4TypeEchoReply, 7, 1),
		"request2":  icmpEchoFrame(t, podA, podB, layers.ICMPv4TypeEchoRequest, 7, 2),
		"udp":       udpFrame(t, podA, podB, 5000, 6000, []byte("hello")),
		"tcp":       tcpSYN(t, podA, podB, 40000, 80),
		"vxlan":     vxlanFrame(t, VXLANPortLinux, 2, req),
		"vxlanIANA": vxlanFrame(t, VXLANPortIANA, 3, req),
		"geneve":    geneveFrame(t, 5, req),
	}
	out := make(map[string]Packet, len(frames))
	ts := time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
	for name, data := range frames {
		out[name] = Packet{Member: "node1", Interface: "eth0", Timestamp: ts, Outgoing: true, Data: data, Length: len(data), decoded: &decodeCache{}}
	}
	return out
}

func TestDecodeTunnels(t *testing.T) {
	pkts := testPackets(t)
	tests := []struct {
		name   string
		tunnel gopacket.LayerType
		want   []string // substrings of Summary, in order
	}{
		{"vxlan", layers.LayerTypeVXLAN, []string{
			"node1/eth0 out", "IPv4 192.168.0.1>192.168.0.2", "UDP 40000>8472", "VXLAN vni=2", "| inner:",
			"IPv4 10.0.1.5>10.0.2.7", "ICMPv4 echo-request id=7 seq=1"}},
		{"vxlanIANA", layers.LayerTypeVXLAN, []string{"UDP 40000>4789", "VXLAN vni=3", "| inner:", "IPv4 10.0.1.5>10.0.2.7"}},
		{"geneve", layers.LayerTypeGeneve, []string{
			"IPv4 192.168.0.1>192.168.0.2", "UDP 40001>6081", "Geneve vni=5 opt=0x014b/1", "| inner:",
			"IPv4 10.0.1.5>10.0.2.7", "ICMPv4 echo-request id=7 seq=1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := pkts[tt.name]
			d := p.Decode()
			if d != p.Decode() {
				t.Error("Decode is not cached")
			}
			if el := d.ErrorLayer(); el != nil {
				t.Fatalf("decode error: %v", el.Error())
			}
			var got []gopacket.LayerType
			for _, l := range d.Layers() {
				got = append(got, l.LayerType())
			}
			want := []gopacket.LayerType{layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeUDP, tt.tunnel,
				layers.LayerTypeEthernet, layers.LayerTypeIPv4, layers.LayerTypeICMPv4, gopacket.LayerTypePayload}
			if len(got) != len(want) {
				t.Fatalf("layers %v, want %v", got, want)
			}
			for i := range want {
				if got[i] != want[i] {
					t.Fatalf("layers %v, want %v", got, want)
				}
			}
			sum := p.Summary()
			rest := sum
			for _, w := range tt.want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("summary %q lacks %q (in order)", sum, w)
				}
				rest = rest[i+len(w):]
			}
		})
	}
}

func TestFilters(t *testing.T) {
	pkts := testPackets(t)
	tests := []struct {
		name   string
		filter Filter
		match  []string
	}{
		{"nil", nil, []string{"request", "reply", "request2", "udp", "tcp", "vxlan", "vxlanIANA", "geneve"}},
		{"echo any", ICMPEcho(nil, nil), []string{"request", "request2", "vxlan", "vxlanIANA", "geneve"}},
		{"echo a>b", ICMPEcho(podA, podB), []string{"request", "request2", "vxlan", "vxlanIANA", "geneve"}},
		{"echo b>a", ICMPEcho(podB, podA), nil},
		{"echo seq 1", ICMPEchoSeq(podA, podB, 7, 1), []string{"request", "vxlan", "vxlanIANA", "geneve"}},
		{"echo seq 2", ICMPEchoSeq(podA, podB, 7, 2), []string{"request2"}},
		{"echo wrong id", ICMPEchoSeq(podA, podB, 8, 1), nil},
		{"reply", ICMPEchoReply(podB, podA), []string{"reply"}},
		{"reply seq", ICMPEchoReplySeq(podB, podA, 7, 1), []string{"reply"}},
		{"reply seq 2", ICMPEchoReplySeq(podB, podA, 7, 2), nil},
		{"flow icmp", IPv4Flow(podA, podB, layers.IPProtocolICMPv4), []string{"request", "request2", "vxlan", "vxlanIANA", "geneve"}},
		{"flow any proto", IPv4Flow(podA, podB, 0), []string{"request", "request2", "udp", "tcp", "vxlan", "vxlanIANA", "geneve"}},
		{"flow outer udp", IPv4Flow(nodeA, nodeB, layers.IPProtocolUDP), []string{"vxlan", "vxlanIANA", "geneve"}},
		{"udp 6000", UDPPort(6000), []string{"udp"}},
		{"udp 8472", UDPPort(8472), []string{"vxlan"}},
		{"tcp 80", TCPPort(80), []string{"tcp"}},
		{"tcp 81", TCPPort(81), nil},
		{"tunnel", Tunnel(), []string{"vxlan", "vxlanIANA", "geneve"}},
		{"vxlan 2", VXLAN(2), []string{"vxlan"}},
		{"vxlan any", VXLAN(AnyVNI), []string{"vxlan", "vxlanIANA"}},
		{"geneve 5", Geneve(5), []string{"geneve"}},
		{"geneve 2", Geneve(2), nil},
		{"inner ipv4", InnerIPv4(podA, podB), []string{"vxlan", "vxlanIANA", "geneve"}},
		{"inner ipv4 outer addrs", InnerIPv4(nodeA, nodeB), nil},
		{"inner any", InnerIPv4(nil, nil), []string{"vxlan", "vxlanIANA", "geneve"}},
		{"inner echo", Inner(ICMPEchoSeq(podA, podB, 7, 1)), []string{"vxlan", "vxlanIANA", "geneve"}},
		{"inner has no outer udp", Inner(UDPPort(8472)), nil},
		{"and", And(VXLAN(AnyVNI), InnerIPv4(podA, podB), UDPPort(4789)), []string{"vxlanIANA"}},
		{"or", Or(TCPPort(80), UDPPort(6000)), []string{"udp", "tcp"}},
		{"not", Not(Or(Tunnel(), ICMPEcho(nil, nil))), []string{"reply", "udp", "tcp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := make(map[string]bool)
			for _, n := range tt.match {
				want[n] = true
			}
			for name, p := range pkts {
				if got := tt.filter.match(p); got != want[name] {
					t.Errorf("%s: match = %v, want %v\n  %s", name, got, want[name], p.Summary())
				}
			}
		})
	}
}

func TestRegisterVXLANPort(t *testing.T) {
	const port = 48879
	req := icmpEchoFrame(t, podA, podB, layers.ICMPv4TypeEchoRequest, 1, 1)
	p := Packet{Data: vxlanFrame(t, port, 9, req)}
	if VXLAN(9)(p.Decode()) {
		t.Fatalf("port %d decoded as VXLAN before registration", port)
	}
	RegisterVXLANPort(port)
	t.Cleanup(func() { layers.RegisterUDPPortLayerType(port, gopacket.LayerTypePayload) })
	if !And(VXLAN(9), InnerIPv4(podA, podB))(p.Decode()) {
		t.Fatalf("port %d not decoded as VXLAN after registration: %s", port, p.Summary())
	}
}

func TestSummary(t *testing.T) {
	ts := time.Date(2025, 1, 2, 3, 4, 5, 123456789, time.Local)
	tcp := tcpSYN(t, podA, podB, 40000, 80)
	raw := tcp[14:] // IPv4 onwards
	tests := []struct {
		name string
		p    Packet
		want []string
	}{
		{"tcp syn", Packet{Member: "pod1", Interface: "eth0", Timestamp: ts, Data: tcp, Length: len(tcp)},
			[]string{fmt.Sprintf("03:04:05.123456789 pod1/eth0 in  len=%d:", len(tcp)), "ETH 02:00:00:00:00:0a>02:00:00:00:00:0b", "IPv4 10.0.1.5>10.0.2.7 ttl=64 len=40", "TCP 40000>80 [S] seq=100"}},
		{"truncated", Packet{Member: "n", Interface: "e", Timestamp: ts, Outgoing: true, Data: tcp[:34], Length: len(tcp)},
			[]string{fmt.Sprintf("n/e out len=%d caplen=34:", len(tcp)), "IPv4 10.0.1.5>10.0.2.7"}},
		{"raw ip", Packet{Member: "n", Interface: "tun0", Timestamp: ts, Data: raw, Length: len(raw), LinkType: layers.LinkTypeRaw},
			[]string{fmt.Sprintf("n/tun0 in  len=%d: IPv4 10.0.1.5>10.0.2.7", len(raw)), "TCP 40000>80"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := tt.p.Summary()
			for _, w := range tt.want {
				if !strings.Contains(s, w) {
					t.Errorf("summary %q lacks %q", s, w)
				}
			}
		})
	}
}

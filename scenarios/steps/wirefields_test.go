// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// tcpFrame builds an Ethernet/IPv4/TCP frame with right checksums.
func tcpFrame(t *testing.T) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.IP{10, 0, 0, 1}, DstIP: net.IP{10, 244, 2, 10}, Flags: layers.IPv4DontFragment}
	tcp := &layers.TCP{SrcPort: 61234, DstPort: 7777, SYN: true, Seq: 1000, Window: 64240}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp, gopacket.Payload("podpath")); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestChecksumReaders(t *testing.T) {
	for _, tc := range []struct {
		name        string
		mangle      func(b []byte)
		hdrOK, l4OK bool
	}{
		{"as built", func([]byte) {}, true, true},
		{"IPv4 checksum off by one", func(b []byte) { b[14+11]++ }, false, true},
		{"address rewritten, no checksum update", func(b []byte) { b[14+15] = 99 }, false, false},
		{"TCP checksum off by one", func(b []byte) { b[14+20+17]++ }, true, false},
		{"checksum offload: the pseudo-header sum", func(b []byte) {
			ip := b[14:]
			pseudo := onesSum(0, ip[12:20]) + 6 + uint32(len(ip)-20)
			binary.BigEndian.PutUint16(ip[20+16:], fold(pseudo))
		}, true, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tcpFrame(t)
			tc.mangle(b)
			p, ok := parseIPv4Frame(b)
			if !ok {
				t.Fatal("parseIPv4Frame: not IPv4")
			}
			if err := p.headerChecksumErr(); (err == nil) != tc.hdrOK {
				t.Errorf("headerChecksumErr() = %v, want ok %v", err, tc.hdrOK)
			}
			if err := p.l4ChecksumErr(); (err == nil) != tc.l4OK {
				t.Errorf("l4ChecksumErr() = %v, want ok %v", err, tc.l4OK)
			}
		})
	}
}

func TestSNATPortErr(t *testing.T) {
	var seed [12]byte
	client := netip.MustParseAddrPort("10.0.0.3:52024")
	backend := netip.MustParseAddrPort("10.244.2.11:7777")
	first := uint16(snatPortMin + lbHashSpec(seed, client, backend, 6)%(snatPortMax-snatPortMin+1))
	wrap := func(p int) uint16 {
		return uint16(snatPortMin + (p-snatPortMin+snatPortMax-snatPortMin+1)%(snatPortMax-snatPortMin+1))
	}
	for _, tc := range []struct {
		port uint16
		ok   bool
	}{
		{first, true},
		{wrap(int(first) + 1), true},
		{wrap(int(first) + snatPortTries - 1), true},
		{wrap(int(first) + snatPortTries), false},
		{wrap(int(first) - 1), false},
		{1234, false},
	} {
		if err := snatPortErr(seed, client, backend, tc.port); (err == nil) != tc.ok {
			t.Errorf("port %d (first %d): %v, want ok %v", tc.port, first, err, tc.ok)
		}
	}
}

func TestOuterECN(t *testing.T) {
	// RFC 6040 normal mode: not-ECT, ECT(1), ECT(0) copied; CE becomes ECT(0).
	for inner, want := range map[byte]byte{0x00: 0, 0x01: 1, 0x02: 2, 0x03: 2, 0xb8 | 0x03: 2, 0xb8: 0} {
		if got := outerECN(inner); got != want {
			t.Errorf("outerECN(%#x) = %d, want %d", inner, got, want)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"net"
	"strings"
	"testing"

	"github.com/google/gopacket/layers"
)

func udpPacket(ttl uint8, dport layers.UDPPort) []byte {
	return MustBuild(
		&layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Protocol: layers.IPProtocolUDP, SrcIP: net.IPv4(10, 0, 0, 1), DstIP: net.IPv4(10, 0, 0, 2)},
		&layers.UDP{SrcPort: 1000, DstPort: dport},
	)
}

func TestDiffNamesTheChangedFields(t *testing.T) {
	want, got := udpPacket(64, 53), udpPacket(63, 54)
	d := Diff(want, got)
	for _, s := range []string{"IPv4: want TTL=64, got TTL=63", "UDP: want DstPort=53(domain), got DstPort=54", "0010 want", "0020 got"} {
		if !strings.Contains(d, s) {
			t.Errorf("diff should contain %q:\n%s", s, d)
		}
	}
	if d := Diff(want, want); d != "" {
		t.Errorf("identical packets should have an empty diff, got:\n%s", d)
	}
}

func TestDiffReportsLengthAndMissingLayers(t *testing.T) {
	full := udpPacket(64, 53)
	d := Diff(full, full[:34])
	for _, s := range []string{"length: want 60, got 34", "UDP: missing in output"} {
		if !strings.Contains(d, s) {
			t.Errorf("diff should contain %q:\n%s", s, d)
		}
	}
}

func TestVerdictNames(t *testing.T) {
	for v, want := range map[Verdict]string{Next: "TCX_NEXT", Pass: "TCX_PASS", Shot: "TCX_DROP", Redirect: "TCX_REDIRECT", 5: "verdict(5)"} {
		if v.String() != want {
			t.Errorf("%d: want %s, got %s", int32(v), want, v)
		}
	}
}

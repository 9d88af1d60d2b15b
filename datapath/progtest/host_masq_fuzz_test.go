// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/testrun"
)

// FuzzHostMasq feeds random frames to to_netdev and then from_netdev with BPF
// masquerading on: to_netdev passes or drops (never redirects) and keeps the length;
// a frame not from pod A or B, or to a destination inside the native-routing CIDR, or
// not TCP/UDP/ICMP echo request, leaves byte for byte as it came; a translated one
// differs only in the IPv4 source (now the node's), the IPv4 checksum and the first
// 8 bytes of L4 (source port or echo identifier, checksum). from_netdev never changes
// a frame that is not addressed to the node.
func FuzzHostMasq(f *testing.F) {
	cfg := masqConfig(32768, 60999)
	e := newLBEnv(f, "masqfz", cfg)
	for _, seed := range [][]byte{
		leaving(masqPodA, worldWeb).tcp(synOnly),
		leaving(netip.AddrPortFrom(podAIP, 40001), worldDNS).udp(),
		leaving(masqPodA, worldWeb).echo(8, 7),
		leaving(masqPodA, netip.AddrPortFrom(remotePodIP, 80)).tcp(synOnly),
		leaving(netip.AddrPortFrom(hostIP, 5555), worldWeb).tcp(synOnly),
		arriving(worldWeb, netip.AddrPortFrom(hostIP, 40000)).tcp(synAck),
		arriving(worldDNS, netip.AddrPortFrom(hostIP, 40001)).icmpError(3, 3, leaving(netip.AddrPortFrom(hostIP, 40001), worldDNS).udp()),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, ok := testrun.RunFuzz(t, e.f.path, e.d.ToNetdev, data, e.f.ctx(e.f.eth0))
		if !ok {
			return
		}
		_ = e.drain(t)
		if res.Verdict != testrun.Next && res.Verdict != testrun.Shot {
			t.Fatalf("to_netdev verdict %s: want next or drop", res.Verdict)
		}
		if res.Verdict == testrun.Next {
			if len(res.Out) != len(data) {
				t.Fatalf("to_netdev changed the length %d -> %d", len(data), len(res.Out))
			}
			checkMasqRewrite(t, data, res.Out)
		}
		back, ok := testrun.RunFuzz(t, e.f.path, e.d.FromNetdev, data, e.f.ctx(e.f.eth0))
		if !ok {
			return
		}
		_ = e.drain(t)
		if !toNode(data) && back.Verdict != testrun.Shot && !bytes.Equal(back.Out, data) && back.Verdict != testrun.Redirect {
			t.Fatalf("from_netdev changed a frame not addressed to the node:\n%s", testrun.Diff(data, back.Out))
		}
	})
}

// toNode reports whether data is IPv4 to the node's address.
func toNode(data []byte) bool {
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	return ip != nil && ip.DstIP.Equal(hostIP.AsSlice())
}

// checkMasqRewrite: out is in, or in masqueraded (see FuzzHostMasq).
func checkMasqRewrite(t *testing.T, in, out []byte) {
	t.Helper()
	if bytes.Equal(in, out) {
		return
	}
	// As the datapath parses it (parse_ipv4()): the IPv4 header's protocol, the first
	// fragment's L4 header.
	if len(in) < 14+20 {
		t.Fatalf("to_netdev changed a frame shorter than IPv4:\n%s", testrun.Diff(in, out))
	}
	proto := in[14+9]
	icmp := proto == 1
	if proto != 6 && proto != 17 && !(icmp && len(in) > 14+int(in[14]&0x0f)*4 && in[14+int(in[14]&0x0f)*4] == 8) {
		t.Fatalf("to_netdev changed a frame that is no TCP/UDP/echo request:\n%s", testrun.Diff(in, out))
	}
	src := netip.AddrPortFrom(netip.AddrFrom4([4]byte(in[14+12:14+16])), 0)
	dst := netip.AddrPortFrom(netip.AddrFrom4([4]byte(in[14+16:14+20])), 0)
	if src.Addr() != podAIP && src.Addr() != podBIP {
		t.Fatalf("to_netdev changed a frame from %s, no pod of the node:\n%s", src, testrun.Diff(in, out))
	}
	if nativeCIDR.Contains(dst.Addr()) || dst.Addr() == hostIP {
		t.Fatalf("to_netdev masqueraded a frame to %s, inside the cluster:\n%s", dst, testrun.Diff(in, out))
	}
	ihl := int(in[14]&0x0f) * 4
	l4 := 14 + ihl
	for i := range in {
		switch {
		case i >= 14+10 && i < 14+16: // IPv4 checksum and source address
		case i >= l4 && i < l4+8 && !icmp: // ports and (UDP) checksum
		case i >= l4+16 && i < l4+18 && !icmp: // TCP checksum
		case i >= l4+2 && i < l4+6 && icmp: // ICMP checksum, identifier
		default:
			if in[i] != out[i] {
				t.Fatalf("to_netdev changed byte %d, outside what masquerading writes:\n%s", i, testrun.Diff(in, out))
			}
		}
	}
	if !bytes.Equal(out[14+12:14+16], hostIP.AsSlice()) {
		t.Fatalf("translated source %v, want the node's %s", out[14+12:14+16], hostIP)
	}
}

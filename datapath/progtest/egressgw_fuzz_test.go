// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bytes"
	"net/netip"
	"testing"

	"podpath/datapath/testrun"
)

// FuzzEgressGateway feeds random frames to from_container (pod A's veth), to_netdev
// and from_netdev with BPF masquerading and the egress gateway on (the policies of
// TestEgressGatewayFixtures: pod A's traffic to 8.8.8.0/24 but 8.8.8.128/25 goes
// through node 2; node 1 is the gateway of node 2's pod to 8.8.8.0/24). from_container never
// rewrites an address or port (the source node only forwards); to_netdev never
// translates pod A's flows that node 2 is the gateway of, translates node 2's pod only
// to the egress IP and only towards the destination CIDR outside the excluded one,
// and otherwise masquerades as FuzzHostMasq says; from_netdev never changes a frame
// addressed neither to the node nor to the egress IP. The maps hold no more than the
// three policy entries afterwards.
func FuzzEgressGateway(f *testing.F) {
	cfg := masqConfig(32768, 60999)
	cfg.EgressGwEnabled = 1
	e := newLBEnv(f, "egwfz", cfg)
	if err := e.d.EgressGW.Replace(egwEntries(egwNode2)); err != nil {
		f.Fatal(err)
	}
	podA := netip.AddrPortFrom(podAIP, 40000)
	for _, seed := range [][]byte{
		frame{srcMAC: podAMAC, dstMAC: lxcAMAC, src: podA, dst: egwWorld}.tcp(synOnly),
		frame{srcMAC: podAMAC, dstMAC: lxcAMAC, src: podA, dst: egwExclWeb}.udp(),
		leaving(egwRemote, egwWorld).tcp(synOnly),
		leaving(egwRemote, egwWorld).echo(8, 9),
		leaving(podA, egwWorld).udp(),
		arriving(egwWorld, netip.AddrPortFrom(egwIP, 40000)).tcp(synAck),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, ok := testrun.RunFuzz(t, e.f.path, e.d.FromContainer, data, e.f.ctx(e.f.lxc0))
		if !ok {
			return
		}
		_ = e.drain(t)
		if res.Verdict != testrun.Shot && len(data) >= 14+20 && len(res.Out) >= 14+20 &&
			!bytes.Equal(data[14+12:14+20], res.Out[14+12:14+20]) {
			t.Fatalf("from_container rewrote an address:\n%s", testrun.Diff(data, res.Out))
		}
		out, ok := testrun.RunFuzz(t, e.f.path, e.d.ToNetdev, data, e.f.ctx(e.f.eth0))
		if !ok {
			return
		}
		_ = e.drain(t)
		if out.Verdict != testrun.Next && out.Verdict != testrun.Shot {
			t.Fatalf("to_netdev verdict %s: want next or drop", out.Verdict)
		}
		if out.Verdict == testrun.Next && !bytes.Equal(data, out.Out) {
			src := netip.AddrFrom4([4]byte(data[14+12 : 14+16]))
			dst := netip.AddrFrom4([4]byte(data[14+16 : 14+20]))
			viaGateway := egwDest.Contains(dst) && !egwExcluded.Contains(dst)
			switch {
			case src == podAIP && viaGateway:
				t.Fatalf("to_netdev translated pod A's flow to %s, which node 2 is the gateway of:\n%s", dst, testrun.Diff(data, out.Out))
			case src == remotePodIP:
				// Its policy entry has no excluded CIDR (egwEntries).
				if !egwDest.Contains(dst) || !bytes.Equal(out.Out[14+12:14+16], egwIP.AsSlice()) {
					t.Fatalf("to_netdev translated node 2's pod's flow to %s to %v, want only the egress IP %s towards %s:\n%s",
						dst, out.Out[14+12:14+16], egwIP, egwDest, testrun.Diff(data, out.Out))
				}
			default:
				checkMasqRewrite(t, data, out.Out)
			}
		}
		back, ok := testrun.RunFuzz(t, e.f.path, e.d.FromNetdev, data, e.f.ctx(e.f.eth0))
		if !ok {
			return
		}
		_ = e.drain(t)
		if !toNode(data) && !(len(data) >= 34 && bytes.Equal(data[14+16:14+20], egwIP.AsSlice())) &&
			back.Verdict != testrun.Shot && back.Verdict != testrun.Redirect && !bytes.Equal(back.Out, data) {
			t.Fatalf("from_netdev changed a frame addressed neither to the node nor to the egress IP:\n%s", testrun.Diff(data, back.Out))
		}
		if got, err := e.d.EgressGW.List(); err != nil || len(got) != 3 {
			t.Fatalf("egress gateway map now %v (%v), want the 3 policy entries", got, err)
		}
	})
}

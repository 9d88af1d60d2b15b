// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// BenchmarkMasq measures BPF masquerading next to the NodePort SNAT path, both in
// one loaded datapath (load balancer and masquerading on), tracing of forwarded
// packets off:
//   - nodeport-snat/established, nodeport-snat/reply, nodeport-snat/new-flow: the
//     NodePort SNAT path of from_netdev (the reference);
//   - masq/established: to_netdev on a pod's established TCP flow to the world (one
//     snat map hit, SNAT rewrite); masq/reply: from_netdev on the world's reply
//     (reverse NAT first, then redirect_peer into the pod); masq/new-flow: to_netdev
//     with both entries deleted before every run (port allocation, two map writes);
//   - masq/new-flow/active=N: the same with N other live flows in the snat map, a
//     tenth of them to the same remote (port allocation stays flat).
func BenchmarkMasq(b *testing.B) {
	f := setupNamedFibNS(b, lbName("mbench"))
	addRoute(b, testrun.NetlinkAt(b, f.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: f.eth0})
	cfg := lbConfig(b, lbOpts{})
	m := masqConfig(32768, 60999)
	cfg.MasqEnabled, cfg.MasqPortMin, cfg.MasqPortMax = m.MasqEnabled, m.MasqPortMin, m.MasqPortMax
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	sizes := testSizes
	sizes.CTTCP, sizes.CTAny, sizes.SNAT = 65536, 65536, 262144
	d := newDatapath(b, cfg, loader.Options{MapSizes: sizes})
	upsertEndpoints(b, d.Maps, podAEndpoint, podBEndpoint, hostEndpoint)
	e := &lbEnv{f: f, d: d, cfg: cfg}
	e.services(b)
	e.nodePorts(b)
	l := d.LB

	ctKey := func(src, dst netip.AddrPort, dir maps.CTDir) any { return ctKeyOf(src, dst, 6, dir) }
	snatted := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	resetNodePort := func() error {
		_ = l.CTTCP.Delete(ctKey(clientX, npRemote, maps.CTService))
		_ = l.SNAT.Delete(ctKey(backendR, snatted, maps.CTReply))
		return nil
	}
	type entry struct {
		Lifetime            uint32
		Flags, Pad          uint16
		BackendID, RevNatID uint32
		NatAddr             uint32
		NatPort, Pad2       uint16
		Caches              [40]byte // the budget's caches (conntrack.h): none
	}
	resetMasq := func() error {
		k := ctKey(masqPodA, worldWeb, maps.CTEgress)
		var v entry
		if err := l.SNAT.Lookup(k, &v); err == nil {
			_ = l.SNAT.Delete(ctKey(worldWeb, netip.AddrPortFrom(hostIP, wire16(v.NatPort)), maps.CTReply))
			_ = l.SNAT.Delete(k)
		}
		return nil
	}
	nat := netip.AddrPortFrom(hostIP, masqPort(cfg, masqPodA, worldWeb, 6))
	cases := []struct {
		name  string
		prog  *ebpf.Program
		pkt   []byte
		want  testrun.Verdict
		reset func() error
	}{
		{"nodeport-snat/established", d.FromNetdev, xFrame.to(npRemote).tcp(ackOnly), testrun.Redirect, nil},
		{"nodeport-snat/reply", d.FromNetdev, frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: snatted}.tcp(ackOnly), testrun.Redirect, nil},
		{"nodeport-snat/new-flow", d.FromNetdev, xFrame.to(npRemote).tcp(synOnly), testrun.Redirect, resetNodePort},
		{"masq/established", d.ToNetdev, leaving(masqPodA, worldWeb).tcp(ackOnly), testrun.Next, nil},
		{"masq/reply", d.FromNetdev, arriving(worldWeb, nat).tcp(ackOnly), testrun.Redirect, nil},
		{"masq/new-flow", d.ToNetdev, leaving(masqPodA, worldWeb).tcp(synOnly), testrun.Next, resetMasq},
	}
	// The established cases find the entries of these first packets.
	if _, err := masqRunOnce(b, f, d.FromNetdev, xFrame.to(npRemote).tcp(synOnly)); err != nil {
		b.Fatal(err)
	}
	if _, err := masqRunOnce(b, f, d.ToNetdev, leaving(masqPodA, worldWeb).tcp(synOnly)); err != nil {
		b.Fatal(err)
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { testrun.BenchPath(b, f.path, c.prog, c.pkt, c.want, c.reset) })
	}
	// Port allocation with N live flows: N/10 of them to the same remote (their
	// reply entries hold ports of the range), the rest to 9 other remote ports.
	active := 1
	for _, n := range []int{1, 50000} {
		now := nowSeconds(b) + 3600
		rng := rand.New(rand.NewPCG(1, uint64(n)))
		for ; active < n; active++ {
			remote := netip.AddrPortFrom(worldIP, 80+uint16(active%10))
			port := uint16(32768 + rng.IntN(60999-32768+1))
			pod := netip.AddrPortFrom(podBIP, uint16(1024+active%60000))
			v := entry{Lifetime: now, Flags: uint16(maps.CTMasq | maps.CTEstablished), NatAddr: wire4(pod.Addr()), NatPort: wire16(pod.Port())}
			if err := l.SNAT.Put(ctKey(remote, netip.AddrPortFrom(hostIP, port), maps.CTReply), v); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("masq/new-flow/active=%d", n), func(b *testing.B) {
			testrun.BenchPath(b, f.path, d.ToNetdev, leaving(masqPodA, worldWeb).tcp(synOnly), testrun.Next, resetMasq)
		})
	}
}

// masqRunOnce runs prog once on pkt inside f's namespace.
func masqRunOnce(b *testing.B, f *fibNS, prog *ebpf.Program, pkt []byte) (testrun.Result, error) {
	b.Helper()
	return runInNS(b, f.path, prog, pkt, f.ctx(f.eth0)), nil
}

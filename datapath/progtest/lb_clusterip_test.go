// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

func redirectPeer(obs string, target uint32) want {
	return want{obs: obs, verdict: "VERDICT_REDIRECT_PEER", target: target}
}

func dnat(ct string, backend uint32, src, dst netip.AddrPort) lbWant {
	return lbWant{action: "TRACE_LB_DNAT", ct: ct, backend: backend, origSrc: src, origDst: dst}
}

func revnat(backend uint32, src, dst netip.AddrPort) lbWant {
	return lbWant{action: "TRACE_LB_REVNAT", ct: "TRACE_CT_REPLY", backend: backend, origSrc: src, origDst: dst}
}

// ClusterIP from pods: from_container translates the client's packets, conntrack
// keeps the flow's backend through its states, and the local backend's replies are
// translated back before they reach the client.
func TestLBClusterIPFixtures(t *testing.T) {
	e := newLBEnv(t, "cip", lbConfig(t, lbOpts{}))
	e.services(t)
	l, f := e.d.LB, e.f
	toVIP := podAFrame(clientA, vipLocal)
	toB := podAFrame(clientA, backendB).routed(lxcBMAC, podBMAC)
	reply := podBFrame(backendB, clientA)
	replied := frame{srcMAC: lxcAMAC, dstMAC: podAMAC, src: vipLocal, dst: clientA, ttl: 63}
	est := func(ct string) lbWant { return dnat(ct, 1, clientA, vipLocal) }
	ctState := func(flags maps.CTFlags, lifetime int) func(t *testing.T) {
		return func(t *testing.T) {
			ctExpect(t, l, "ct_tcp", clientA, vipLocal, maps.CTService, flags, lifetime, 1)
			ctExpect(t, l, "ct_tcp", backendB, clientA, maps.CTReply, flags, lifetime, 1)
		}
	}
	peerB := redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex)
	udpFlow := podAFrame(netip.AddrPortFrom(podAIP, 5000), vipUDP)
	udpFlow0 := podAFrame(netip.AddrPortFrom(podAIP, 5001), vipUDP)
	toR := podAFrame(clientA, vipRemote)
	pass := func(reason string) want { return fromContainer("VERDICT_PASS", reason) }

	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "syn to a ClusterIP with a local backend: DNAT, redirect_peer into pod B", dev: f.lxc0,
			in: toVIP.tcp(synOnly), out: toB.tcp(synOnly), verdict: testrun.Redirect, rec: peerB,
			lb: est("TRACE_CT_NEW"), after: ctState(maps.CTSynSeen, 60)},
		{name: "the syn again: the entry stands, same backend", dev: f.lxc0,
			in: toVIP.tcp(synOnly), out: toB.tcp(synOnly), verdict: testrun.Redirect, rec: peerB,
			lb: est("TRACE_CT_ESTABLISHED"), after: ctState(maps.CTSynSeen, 60)},
		{name: "pod B's syn-ack: reverse NAT, redirect_peer into pod A", dev: f.lxc0,
			in: reply.tcp(synAck), out: replied.tcp(synAck), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_CONTAINER", podAIfidx), lb: revnat(1, backendB, clientA)},
		{name: "the client's ack: established, 6 hours", dev: f.lxc0,
			in: toVIP.tcp(ackOnly), out: toB.tcp(ackOnly), verdict: testrun.Redirect, rec: peerB,
			lb: est("TRACE_CT_ESTABLISHED"), after: ctState(maps.CTSynSeen|maps.CTEstablished, 21600)},
		{name: "pod B's data: reverse NAT", dev: f.lxc0,
			in: reply.tcp(ackOnly), out: replied.tcp(ackOnly), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_CONTAINER", podAIfidx), lb: revnat(1, backendB, clientA)},
		{name: "fin: closing, 10 seconds", dev: f.lxc0,
			in: toVIP.tcp(finAck), out: toB.tcp(finAck), verdict: testrun.Redirect, rec: peerB,
			lb: est("TRACE_CT_ESTABLISHED"), after: ctState(maps.CTSynSeen|maps.CTEstablished|maps.CTClosing, 10)},
		{name: "a new syn on the closed tuple: a new flow", dev: f.lxc0,
			in: toVIP.tcp(synOnly), out: toB.tcp(synOnly), verdict: testrun.Redirect, rec: peerB,
			lb: est("TRACE_CT_NEW"), after: ctState(maps.CTSynSeen, 60)},
		{name: "rst: closing", dev: f.lxc0,
			in: toVIP.tcp(rstOnly), out: toB.tcp(rstOnly), verdict: testrun.Redirect, rec: peerB,
			lb: est("TRACE_CT_ESTABLISHED"), after: ctState(maps.CTSynSeen|maps.CTEstablished|maps.CTClosing, 10)},
		{name: "an expired entry counts as none: a new flow", dev: f.lxc0,
			before: func(t *testing.T) {
				e, _ := ctFind(t, l, "ct_tcp", clientA, vipLocal, maps.CTService)
				ctSetLifetime(t, l, e, nowSeconds(t)-1)
			},
			in: toVIP.tcp(ackOnly), out: toB.tcp(ackOnly), verdict: testrun.Redirect, rec: peerB,
			lb: est("TRACE_CT_NEW"), after: ctState(maps.CTEstablished, 21600)},
		{name: "an expired reply entry: the reply is not translated", dev: f.lxc0,
			before: func(t *testing.T) {
				e, _ := ctFind(t, l, "ct_tcp", backendB, clientA, maps.CTReply)
				ctSetLifetime(t, l, e, nowSeconds(t))
			},
			in: reply.tcp(ackOnly), out: frame{srcMAC: lxcAMAC, dstMAC: podAMAC, src: backendB, dst: clientA, ttl: 63}.tcp(ackOnly),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_CONTAINER", podAIfidx)},
		{name: "udp: DNAT with the checksum updated", dev: f.lxc0,
			in: udpFlow.udp(), out: udpFlow.to(netip.AddrPortFrom(podBIP, 5353)).routed(lxcBMAC, podBMAC).udp(),
			verdict: testrun.Redirect, rec: peerB, lb: dnat("TRACE_CT_NEW", 3, udpFlow.src, vipUDP),
			after: func(t *testing.T) {
				ctExpect(t, l, "ct_any", udpFlow.src, vipUDP, maps.CTService, 0, 60, 3)
				ctExpect(t, l, "ct_any", netip.AddrPortFrom(podBIP, 5353), udpFlow.src, maps.CTReply, 0, 60, 3)
			}},
		{name: "udp without a checksum keeps none", dev: f.lxc0,
			in: udpFlow0.udpNoCsum(), out: udpFlow0.to(netip.AddrPortFrom(podBIP, 5353)).routed(lxcBMAC, podBMAC).udpNoCsum(),
			verdict: testrun.Redirect, rec: peerB, lb: dnat("TRACE_CT_NEW", 3, udpFlow0.src, vipUDP)},
		{name: "udp reply: reverse NAT", dev: f.lxc0,
			in:      podBFrame(netip.AddrPortFrom(podBIP, 5353), udpFlow.src).udp(),
			out:     frame{srcMAC: lxcAMAC, dstMAC: podAMAC, src: vipUDP, dst: udpFlow.src, ttl: 63}.udp(),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_CONTAINER", podAIfidx),
			lb: revnat(3, netip.AddrPortFrom(podBIP, 5353), udpFlow.src)},
		{name: "a backend on node 2: DNAT, then the fib forwards it", dev: f.lxc0,
			in: toR.tcp(synOnly), out: toR.to(backendR).routed(eth0MAC, gw2MAC).tcp(synOnly), verdict: testrun.Redirect,
			rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0), lb: dnat("TRACE_CT_NEW", 2, clientA, vipRemote)},
		{name: "a service without backends: dropped, named", dev: f.lxc0,
			in: podAFrame(clientA, vipEmpty).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
		{name: "icmp to a ClusterIP is not translated (passes as any packet would)", dev: f.lxc0,
			in: podAFrame(clientA, vipLocal).icmp(), verdict: testrun.Pass, rec: pass("PASS_OUTSIDE_NATIVE_CIDR")},
		{name: "a port that is no frontend is not translated", dev: f.lxc0,
			in: podAFrame(clientA, netip.AddrPortFrom(vipLocal.Addr(), 81)).tcp(synOnly), verdict: testrun.Pass,
			rec: pass("PASS_OUTSIDE_NATIVE_CIDR")},
		{name: "the frontend's port over the other protocol is not translated", dev: f.lxc0,
			in: podAFrame(clientA, vipLocal).udp(), verdict: testrun.Pass, rec: pass("PASS_OUTSIDE_NATIVE_CIDR")},
		{name: "a later fragment carries no ports: not translated", dev: f.lxc0,
			in: laterFragment(podAFrame(clientA, vipUDP).udp()), verdict: testrun.Pass, rec: pass("PASS_OUTSIDE_NATIVE_CIDR")},
		{name: "pod to pod traffic is untouched", dev: f.lxc0,
			in: podAFrame(clientA, backendB).tcp(synOnly), out: toB.tcp(synOnly), verdict: testrun.Redirect, rec: peerB},
	})
	for _, m := range malformed(toVIP.tcp(synOnly)) {
		t.Run("malformed: "+m.name, func(t *testing.T) {
			res, r := e.run(t, e.d.FromContainer, f.lxc0, m.pkt)
			if res.Verdict != testrun.Shot {
				t.Errorf("verdict %s", res.Verdict)
			}
			checkRecord(t, r, want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: m.reason}, uint32(f.lxc0))
		})
	}
}

// Terminating backends get no new flows but keep the ones they have; a deleted backend
// loses its flows to a new selection.
func TestLBTerminatingBackends(t *testing.T) {
	e := newLBEnv(t, "term", lbConfig(t, lbOpts{}))
	e.services(t)
	l, f := e.d.LB, e.f
	b4, b5 := netip.AddrPortFrom(podBIP, 9090), netip.AddrPortFrom(remotePodIP, 9090)
	to5 := func(src netip.AddrPort) []byte {
		return podAFrame(src, b5).routed(eth0MAC, gw2MAC).tcp(synOnly)
	}
	// Slots [4 terminating, 5 active]: every new flow goes to 5, whatever slot the
	// random start picks.
	for port := uint16(41000); port < 41032; port++ {
		src := netip.AddrPortFrom(podAIP, port)
		res, r := e.run(t, e.d.FromContainer, f.lxc0, podAFrame(src, vipTerm).tcp(synOnly))
		if res.Verdict != testrun.Redirect || r.BackendID != 5 || string(res.Out) != string(to5(src)) {
			t.Fatalf("flow from %s: verdict %s, record %s", src, res.Verdict, r.String(t))
		}
	}

	flowX := podAFrame(netip.AddrPortFrom(podAIP, 42000), vipTerm)
	flowY := podAFrame(netip.AddrPortFrom(podAIP, 42001), vipTerm)
	toX4 := flowX.to(b4).routed(lxcBMAC, podBMAC)
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "backend 4 active and alone: a flow goes to it", dev: f.lxc0,
			before: func(t *testing.T) {
				if err := l.BackendSetState(4, maps.BackendActive); err != nil {
					t.Fatal(err)
				}
				e.service(t, 5, vipTerm, maps.ProtoTCP, maps.ServiceClusterIP, 4)
			},
			in: flowX.tcp(synOnly), out: toX4.tcp(synOnly), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 4, flowX.src, vipTerm)},
		{name: "backend 4 terminating: its flow keeps it", dev: f.lxc0,
			before: func(t *testing.T) {
				if err := l.BackendSetState(4, maps.BackendTerminating); err != nil {
					t.Fatal(err)
				}
				e.service(t, 5, vipTerm, maps.ProtoTCP, maps.ServiceClusterIP, 5)
			},
			in: flowX.tcp(ackOnly), out: toX4.tcp(ackOnly), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex), lb: dnat("TRACE_CT_ESTABLISHED", 4, flowX.src, vipTerm)},
		{name: "backend 4 terminating: its replies are still translated", dev: f.lxc0,
			in:      podBFrame(b4, flowX.src).tcp(ackOnly),
			out:     frame{srcMAC: lxcAMAC, dstMAC: podAMAC, src: vipTerm, dst: flowX.src, ttl: 63}.tcp(ackOnly),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_CONTAINER", podAIfidx), lb: revnat(4, b4, flowX.src)},
		{name: "backend 4 terminating: a new flow goes to 5", dev: f.lxc0,
			in: flowY.tcp(synOnly), out: flowY.to(b5).routed(eth0MAC, gw2MAC).tcp(synOnly), verdict: testrun.Redirect,
			rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0), lb: dnat("TRACE_CT_NEW", 5, flowY.src, vipTerm)},
		{name: "backend 4 deleted: its flow selects again", dev: f.lxc0,
			before: func(t *testing.T) {
				if err := l.BackendDelete(4); err != nil {
					t.Fatal(err)
				}
			},
			in: flowX.tcp(ackOnly), out: flowX.to(b5).routed(eth0MAC, gw2MAC).tcp(ackOnly), verdict: testrun.Redirect,
			rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0), lb: dnat("TRACE_CT_NEW", 5, flowX.src, vipTerm)},
		{name: "only non-active backends: a new flow is dropped", dev: f.lxc0,
			before: func(t *testing.T) {
				if err := l.BackendSetState(5, maps.BackendMaintenance); err != nil {
					t.Fatal(err)
				}
			},
			in: podAFrame(netip.AddrPortFrom(podAIP, 42002), vipTerm).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
	})
}

// Maglev: a new flow's backend is table[lb_hash(tuple) % M], the same on every load
// with the same seed and tables; an established flow keeps its backend when the table
// changes under it.
func TestLBMaglevSelection(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	e := newLBEnv(t, "maglev", cfg)
	e.services(t)
	f := e.f
	table := e.maglevTable(t, 6, 1, 2)
	expected := func(src netip.AddrPort) uint32 {
		return table[lbHash(cfg.LbMaglevSeed, src, vipMaglev, 6)%testM]
	}
	// One flow the table sends to each backend.
	flows := map[uint32]netip.AddrPort{}
	for port := uint16(43000); len(flows) < 2; port++ {
		src := netip.AddrPortFrom(podAIP, port)
		if _, ok := flows[expected(src)]; !ok {
			flows[expected(src)] = src
		}
	}
	to1 := podAFrame(flows[1], vipMaglev)
	to2 := podAFrame(flows[2], vipMaglev)
	out1 := to1.to(backendB).routed(lxcBMAC, podBMAC)
	out2 := to2.to(backendR).routed(eth0MAC, gw2MAC)
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "a flow the table gives backend 1", dev: f.lxc0, in: to1.tcp(synOnly), out: out1.tcp(synOnly),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 1, to1.src, vipMaglev)},
		{name: "a flow the table gives backend 2", dev: f.lxc0, in: to2.tcp(synOnly), out: out2.tcp(synOnly),
			verdict: testrun.Redirect, rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0), lb: dnat("TRACE_CT_NEW", 2, to2.src, vipMaglev)},
		{name: "backend 2 leaves the table: its established flow keeps it", dev: f.lxc0,
			before: func(t *testing.T) {
				e.maglevTable(t, 6, 1)
				e.service(t, 6, vipMaglev, maps.ProtoTCP, maps.ServiceClusterIP|maps.ServiceMaglev, 1)
			},
			in: to2.tcp(ackOnly), out: out2.tcp(ackOnly), verdict: testrun.Redirect,
			rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0), lb: dnat("TRACE_CT_ESTABLISHED", 2, to2.src, vipMaglev)},
		{name: "backend 2 left the table: the same tuple after its entry expired goes to 1", dev: f.lxc0,
			before: func(t *testing.T) {
				ent, _ := ctFind(t, e.d.LB, "ct_tcp", to2.src, vipMaglev, maps.CTService)
				ctSetLifetime(t, e.d.LB, ent, nowSeconds(t)-1)
			},
			in: to2.tcp(ackOnly), out: to2.to(backendB).routed(lxcBMAC, podBMAC).tcp(ackOnly), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 1, to2.src, vipMaglev)},
	})

	// Another load with the same seed and table picks the same backends, flow by flow,
	// as the Go model of lb_hash says.
	e.maglevTable(t, 6, 1, 2)
	e.service(t, 6, vipMaglev, maps.ProtoTCP, maps.ServiceClusterIP|maps.ServiceMaglev, 1, 2)
	e2 := newLBEnvIn(t, f, cfg, func(m *maps.Maps) { upsertEndpoints(t, m, podAEndpoint, podBEndpoint, hostEndpoint) })
	e2.services(t)
	counts := map[uint32]int{}
	for port := uint16(44000); port < 44064; port++ {
		src := netip.AddrPortFrom(podAIP, port)
		pkt := podAFrame(src, vipMaglev).tcp(synOnly)
		_, r1 := e.run(t, e.d.FromContainer, f.lxc0, pkt)
		_, r2 := e2.run(t, e2.d.FromContainer, f.lxc0, pkt)
		if r1.BackendID != expected(src) || r2.BackendID != expected(src) {
			t.Errorf("flow from %s: loads chose %d and %d, the table says %d", src, r1.BackendID, r2.BackendID, expected(src))
		}
		counts[r1.BackendID]++
	}
	if counts[1] == 0 || counts[2] == 0 {
		t.Errorf("64 flows all went to one backend: %v", counts)
	}
	// Without a table (not yet set), a Maglev service falls back to random selection.
	if err := e2.d.LB.MaglevDelete(6); err != nil {
		t.Fatal(err)
	}
	res, r := e2.run(t, e2.d.FromContainer, f.lxc0, podAFrame(netip.AddrPortFrom(podAIP, 45000), vipMaglev).tcp(synOnly))
	if res.Verdict != testrun.Redirect || (r.BackendID != 1 && r.BackendID != 2) {
		t.Errorf("without a table: verdict %s, %s", res.Verdict, r.String(t))
	}
}

// Legacy host routing: the translation still happens in from_container; the stack
// forwards the translated packet.
func TestLBClusterIPLegacyHostRouting(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	cfg.HostRouting = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY)
	e := newLBEnv(t, "cip-legacy", cfg)
	e.services(t)
	f := e.f
	legacy := fromContainer("VERDICT_PASS", "PASS_LEGACY_HOST_ROUTING")
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "DNAT, then the stack", dev: f.lxc0, in: podAFrame(clientA, vipLocal).tcp(synOnly),
			out: podAFrame(clientA, backendB).tcp(synOnly), verdict: testrun.Pass, rec: legacy,
			lb: dnat("TRACE_CT_NEW", 1, clientA, vipLocal)},
		{name: "reverse NAT, then the stack", dev: f.lxc0, in: podBFrame(backendB, clientA).tcp(synAck),
			out: podBFrame(vipLocal, clientA).tcp(synAck), verdict: testrun.Pass, rec: legacy,
			lb: revnat(1, backendB, clientA)},
		{name: "no backend: still dropped", dev: f.lxc0, in: podAFrame(clientA, vipEmpty).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
	})
}

// A remote backend's reply reaches the client's node natively (from_netdev) or
// through a tunnel (Geneve decapsulated in from_netdev, VXLAN by the device then
// from_overlay): it is translated back there, before delivery to the client.
func TestLBClusterIPRemoteReplies(t *testing.T) {
	replyR := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: clientA}
	delivered := frame{srcMAC: lxcAMAC, dstMAC: podAMAC, src: vipRemote, dst: clientA, ttl: 63}
	open := func(t *testing.T, e *lbEnv, encap bool) {
		t.Helper()
		res, r := e.run(t, e.d.FromContainer, e.f.lxc0, podAFrame(clientA, vipRemote).tcp(synOnly))
		if res.Verdict != testrun.Redirect || r.Action != "TRACE_LB_DNAT" || (encap && r.Tunnel == 0) {
			t.Fatalf("opening the flow: verdict %s, %s", res.Verdict, r.String(t))
		}
	}

	t.Run("native", func(t *testing.T) {
		e := newLBEnv(t, "cip-native", lbConfig(t, lbOpts{}))
		e.services(t)
		open(t, e, false)
		e.runCases(t, e.d.FromNetdev, []lbCase{
			{name: "from-netdev: reverse NAT, redirect_peer into pod A", dev: e.f.eth0, in: replyR.tcp(synAck),
				out: delivered.tcp(synAck), verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", podAIfidx),
				lb: revnat(2, backendR, clientA)},
			{name: "from-netdev: another source port is no reply", dev: e.f.eth0,
				in:  replyR.from(netip.AddrPortFrom(remotePodIP, 8081)).tcp(synAck),
				out: delivered.from(netip.AddrPortFrom(remotePodIP, 8081)).tcp(synAck), verdict: testrun.Redirect,
				rec: redirectPeer("OBS_FROM_NETDEV", podAIfidx)},
		})
	})

	tunnelEnv := func(t *testing.T, suffix string, proto config.TunnelProtocol) *lbEnv {
		f := setupNamedFibNS(t, lbName(suffix))
		vx := addCollectMDVXLAN(t, testrun.NetlinkAt(t, f.name), "cilium_vxlan", config.PortVXLAN)
		cfg := tunnelConfig(t, proto, vx)
		cfg = withLB(t, cfg, lbOpts{MaglevTableSize: testM})
		e := newLBEnvIn(t, f, cfg, func(m *maps.Maps) { programOverlayMaps(t, m) })
		e.services(t)
		return e
	}
	t.Run("geneve", func(t *testing.T) {
		e := tunnelEnv(t, "cip-gnv", config.TunnelGeneve)
		open(t, e, true)
		e.runCases(t, e.d.FromNetdev, []lbCase{
			{name: "decapsulated, reverse NAT, redirect_peer into pod A", dev: e.f.eth0,
				in:  fromNode2().wrap(frame{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: backendR, dst: clientA}.tcp(synAck)),
				out: delivered.tcp(synAck), verdict: testrun.Redirect,
				rec: decapRecord("VERDICT_REDIRECT_PEER", "", "", podAIfidx, node2IP, remoteIdentity),
				lb:  revnat(2, backendR, clientA)},
		})
	})
	t.Run("vxlan", func(t *testing.T) {
		e := tunnelEnv(t, "cip-vx", config.TunnelVXLAN)
		open(t, e, true)
		shim := tunnelKeyShim(t, e.d.FromOverlay, remoteIdentity, node2IP)
		e.runCases(t, shim, []lbCase{
			{name: "from-overlay: reverse NAT, redirect_peer into pod A", dev: e.f.eth0,
				in:  frame{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: backendR, dst: clientA}.tcp(synAck),
				out: delivered.tcp(synAck), verdict: testrun.Redirect,
				rec: overlayRecord("VERDICT_REDIRECT_PEER", "", "", podAIfidx, node2IP, remoteIdentity),
				lb:  revnat(2, backendR, clientA)},
		})
	})
}

// Hairpin: pod B reaches its own service and gets itself as the backend. Its packet
// would arrive from its own address, a martian its stack drops, so the source
// becomes the loopback address 169.254.42.1 (Cilium's) and the reply is turned back.
func TestLBHairpin(t *testing.T) {
	e := newLBEnv(t, "hairpin", lbConfig(t, lbOpts{}))
	e.services(t)
	l, f := e.d.LB, e.f
	clientB := netip.AddrPortFrom(podBIP, 40000)
	loop := netip.AddrPortFrom(netip.MustParseAddr("169.254.42.1"), 40000)
	toVIP := podBFrame(clientB, vipLocal)
	looped := frame{srcMAC: lxcBMAC, dstMAC: podBMAC, src: loop, dst: backendB, ttl: 63}
	reply := podBFrame(backendB, loop)
	replied := frame{srcMAC: lxcBMAC, dstMAC: podBMAC, src: vipLocal, dst: clientB, ttl: 63}
	peerB := redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex)
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "pod B's syn to its own service: DNAT to itself, source the loopback address", dev: f.lxc0,
			in: toVIP.tcp(synOnly), out: looped.tcp(synOnly), verdict: testrun.Redirect, rec: peerB,
			lb: lbWant{action: "TRACE_LB_DNAT_SNAT", ct: "TRACE_CT_NEW", backend: 1, origSrc: clientB, origDst: vipLocal},
			after: func(t *testing.T) {
				s := ctExpect(t, l, "ct_tcp", clientB, vipLocal, maps.CTService, maps.CTSynSeen|maps.CTLoopback, 60, 1)
				r := ctExpect(t, l, "ct_tcp", backendB, loop, maps.CTReply, maps.CTSynSeen|maps.CTLoopback, 60, 1)
				if s.NAT != loop || r.NAT != clientB {
					t.Errorf("service entry NAT %s (want %s), reply entry NAT %s (want %s)", s.NAT, loop, r.NAT, clientB)
				}
			}},
		{name: "its syn-ack to the loopback address: back to itself from the service", dev: f.lxc0,
			in: reply.tcp(synAck), out: replied.tcp(synAck), verdict: testrun.Redirect, rec: peerB,
			lb: lbWant{action: "TRACE_LB_REV_SNAT", ct: "TRACE_CT_REPLY", backend: 1, origSrc: backendB, origDst: loop}},
		{name: "its ack: established, the same source", dev: f.lxc0,
			in: toVIP.tcp(ackOnly), out: looped.tcp(ackOnly), verdict: testrun.Redirect, rec: peerB,
			lb: lbWant{action: "TRACE_LB_DNAT_SNAT", ct: "TRACE_CT_ESTABLISHED", backend: 1, origSrc: clientB, origDst: vipLocal}},
	})
}

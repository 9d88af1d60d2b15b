// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// NodePort and external frontends of node 1 (192.168.50.1), reached by an outside
// client 172.16.0.5 whose packets come in on eth0 from a router; node 1 routes
// 172.16.0.0/24 back via 192.168.50.2 (neighbour known).
var (
	npRemote = netip.AddrPortFrom(hostIP, 30080)                       // tcp -> backend 2, on node 2: SNAT
	npLocal  = netip.AddrPortFrom(hostIP, 30081)                       // tcp -> backend 1, pod B: no SNAT
	npUDP    = netip.AddrPortFrom(hostIP, 30053)                       // udp -> backend 6, node 2
	npEmpty  = netip.AddrPortFrom(hostIP, 30099)                       // tcp, no backend
	extIP    = netip.MustParseAddrPort("203.0.113.10:80")              // external IP, tcp -> backend 2
	clientX  = netip.MustParseAddrPort("172.16.0.5:50000")             // the outside client
	clientY  = netip.MustParseAddrPort("172.16.0.6:50000")             // another one
	backendU = netip.AddrPortFrom(remotePodIP, 5353)                   // backend 6
	hostID   = hostEndpoint.Identity                                   // the node's identity: VNI of SNATed packets
	xFrame   = frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: clientX} // as it arrives on eth0
)

// nodePorts programs the NodePort and external frontends (on top of services()).
func (e *lbEnv) nodePorts(t testing.TB) {
	t.Helper()
	if err := e.d.LB.BackendUpsert(maps.Backend{ID: 6, Addr: remotePodIP, Port: 5353, Proto: maps.ProtoUDP}); err != nil {
		t.Fatal(err)
	}
	e.service(t, 10, npRemote, maps.ProtoTCP, maps.ServiceNodePort, 2)
	e.service(t, 11, npLocal, maps.ProtoTCP, maps.ServiceNodePort, 1)
	e.service(t, 12, npUDP, maps.ProtoUDP, maps.ServiceNodePort, 6)
	e.service(t, 13, npEmpty, maps.ProtoTCP, maps.ServiceNodePort)
	e.service(t, 14, extIP, maps.ProtoTCP, maps.ServiceExternal, 2)
}

// newNodePortEnv is newLBEnv with a route to the outside clients and every frontend.
func newNodePortEnv(t testing.TB, suffix string, cfg bpfconfig.Config) *lbEnv {
	t.Helper()
	e := newLBEnv(t, suffix, cfg)
	addRoute(t, testrun.NetlinkAt(t, e.f.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: e.f.eth0})
	e.services(t)
	e.nodePorts(t)
	return e
}

var gw2IP = netip.MustParseAddr("192.168.50.2")

// snatPort is the first port snat_alloc() tries for client -> backend.
func snatPort(cfg bpfconfig.Config, client, backend netip.AddrPort, proto uint8) uint16 {
	rng := uint32(cfg.LbSnatPortMax) - uint32(cfg.LbSnatPortMin) + 1
	return cfg.LbSnatPortMin + uint16(lbHash(cfg.LbMaglevSeed, client, backend, proto)%rng)
}

func dnatSNAT(ct string, backend uint32, src, dst netip.AddrPort) lbWant {
	return lbWant{action: "TRACE_LB_DNAT_SNAT", ct: ct, backend: backend, origSrc: src, origDst: dst}
}

func revSNAT(backend uint32, src, dst netip.AddrPort) lbWant {
	return lbWant{action: "TRACE_LB_REV_SNAT", ct: "TRACE_CT_REPLY", backend: backend, origSrc: src, origDst: dst}
}

func TestLBNodePortFixtures(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	e := newNodePortEnv(t, "np", cfg)
	l, f := e.d.LB, e.f
	sp := snatPort(cfg, clientX, backendR, 6)
	snatted := netip.AddrPortFrom(hostIP, sp)
	spU := snatPort(cfg, clientX, backendU, 17)
	snattedU := netip.AddrPortFrom(hostIP, spU)
	spExt := snatPort(cfg, netip.AddrPortFrom(clientX.Addr(), 50001), backendR, 6)
	// Client Y's first port is taken by a live entry of someone else: it gets the next.
	spY := snatPort(cfg, clientY, backendR, 6)
	spYNext := spY + 1
	if spY == cfg.LbSnatPortMax {
		spYNext = cfg.LbSnatPortMin
	}
	fwd := want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)}
	toNode2 := func(src, dst netip.AddrPort) frame {
		return frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: src, dst: dst, ttl: 63}
	}
	replyFromR := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: snatted}
	snatFlags := maps.CTNodePort | maps.CTSNAT

	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "nodeport, backend on node 2: DNAT and SNAT, out of eth0 again", dev: f.eth0,
			in: xFrame.to(npRemote).tcp(synOnly), out: toNode2(snatted, backendR).tcp(synOnly), verdict: testrun.Redirect,
			rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 2, clientX, npRemote),
			after: func(t *testing.T) {
				s := ctExpect(t, l, "ct_tcp", clientX, npRemote, maps.CTService, maps.CTSynSeen|snatFlags, 60, 2)
				if s.NAT != snatted {
					t.Errorf("service entry: SNAT to %s, want %s", s.NAT, snatted)
				}
				r := ctExpect(t, l, "snat", backendR, snatted, maps.CTReply, maps.CTSynSeen|snatFlags, 60, 2)
				if r.NAT != clientX || r.RevNatID != 10 {
					t.Errorf("snat entry: client %s, rev nat %d", r.NAT, r.RevNatID)
				}
			}},
		{name: "the backend's syn-ack: reverse SNAT and reverse NAT, back to the client", dev: f.eth0,
			in: replyFromR.tcp(synAck), out: toNode2(npRemote, clientX).tcp(synAck), verdict: testrun.Redirect,
			rec: fwd, lb: revSNAT(2, backendR, snatted)},
		{name: "the client's ack: the same backend and SNAT port", dev: f.eth0,
			in: xFrame.to(npRemote).tcp(ackOnly), out: toNode2(snatted, backendR).tcp(ackOnly), verdict: testrun.Redirect,
			rec: fwd, lb: dnatSNAT("TRACE_CT_ESTABLISHED", 2, clientX, npRemote),
			after: func(t *testing.T) {
				ctExpect(t, l, "ct_tcp", clientX, npRemote, maps.CTService, maps.CTSynSeen|maps.CTEstablished|snatFlags, 21600, 2)
				ctExpect(t, l, "snat", backendR, snatted, maps.CTReply, maps.CTSynSeen|maps.CTEstablished|snatFlags, 21600, 2)
			}},
		{name: "a packet to the node's IP on a port no flow holds is not translated", dev: f.eth0,
			in: replyFromR.to(netip.AddrPortFrom(hostIP, sp^1)).tcp(ackOnly), verdict: testrun.Next,
			rec: fromNetdev("VERDICT_PASS", "PASS_TO_HOST")},
		{name: "nodeport, udp: DNAT and SNAT with the checksum updated", dev: f.eth0,
			in: xFrame.to(npUDP).udp(), out: toNode2(snattedU, backendU).udp(), verdict: testrun.Redirect,
			rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 6, clientX, npUDP),
			after: func(t *testing.T) {
				ctExpect(t, l, "snat", backendU, snattedU, maps.CTReply, snatFlags, 60, 6)
			}},
		{name: "udp reply: back to the client", dev: f.eth0,
			in:  frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendU, dst: snattedU}.udp(),
			out: toNode2(npUDP, clientX).udp(), verdict: testrun.Redirect, rec: fwd, lb: revSNAT(6, backendU, snattedU)},
		{name: "external IP, backend on node 2: DNAT and SNAT", dev: f.eth0,
			in:  xFrame.from(netip.AddrPortFrom(clientX.Addr(), 50001)).to(extIP).tcp(synOnly),
			out: toNode2(netip.AddrPortFrom(hostIP, spExt), backendR).tcp(synOnly), verdict: testrun.Redirect,
			rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 2, netip.AddrPortFrom(clientX.Addr(), 50001), extIP)},
		{name: "snat port taken by a live flow: the next one", dev: f.eth0,
			before: func(t *testing.T) {
				k := ctKeyOf(backendR, netip.AddrPortFrom(hostIP, spY), 6, maps.CTReply)
				v := ctValue(nowSeconds(t)+100, clientX)
				if err := l.SNAT.Put(k, v); err != nil {
					t.Fatal(err)
				}
			},
			in: xFrame.from(clientY).to(npRemote).tcp(synOnly), out: toNode2(netip.AddrPortFrom(hostIP, spYNext), backendR).tcp(synOnly),
			verdict: testrun.Redirect, rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 2, clientY, npRemote)},
		{name: "nodeport, backend on this node: DNAT only, redirect_peer into pod B", dev: f.eth0,
			in: xFrame.to(npLocal).tcp(synOnly), out: xFrame.to(backendB).routed(lxcBMAC, podBMAC).tcp(synOnly),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 1, clientX, npLocal),
			after: func(t *testing.T) {
				ctExpect(t, l, "ct_tcp", clientX, npLocal, maps.CTService, maps.CTSynSeen|maps.CTNodePort, 60, 1)
				ctExpect(t, l, "ct_tcp", backendB, clientX, maps.CTReply, maps.CTSynSeen|maps.CTNodePort, 60, 1)
			}},
		{name: "a ClusterIP from outside (bpf-lb-external-clusterip false): dropped, named", dev: f.eth0,
			in: xFrame.to(vipLocal).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_IS_CLUSTER_IP"}},
		{name: "nodeport without backends: dropped, named", dev: f.eth0,
			in: xFrame.to(npEmpty).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
		{name: "icmp to the node is not translated", dev: f.eth0,
			in: xFrame.to(npRemote).icmp(), verdict: testrun.Next, rec: fromNetdev("VERDICT_PASS", "PASS_TO_HOST")},
	})

	// The local backend answers through from_container: reverse NAT, and since its
	// flow came in through a NIC, BPF forwards the reply (the stack would drop a
	// packet from its own address arriving on a pod's veth).
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "local backend's reply to a nodeport client: reverse NAT, fib redirect", dev: f.lxc0,
			in: podBFrame(backendB, clientX).tcp(synAck), out: toNode2(npLocal, clientX).tcp(synAck), verdict: testrun.Redirect,
			rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0), lb: revnat(1, backendB, clientX)},
	})
}

// A narrow SNAT range: the one port goes to the first flow; another flow is dropped
// with its reason until the first one's entry expires.
func TestLBSNATPortExhaustion(t *testing.T) {
	cfg := lbConfig(t, lbOpts{SNATPortMin: 61000, SNATPortMax: 61000})
	e := newNodePortEnv(t, "np-ports", cfg)
	f := e.f
	only := netip.AddrPortFrom(hostIP, 61000)
	fwd := want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)}
	out := func(src netip.AddrPort) []byte {
		return frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: src, dst: backendR, ttl: 63}.tcp(synOnly)
	}
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "the first flow takes the port", dev: f.eth0, in: xFrame.to(npRemote).tcp(synOnly), out: out(only),
			verdict: testrun.Redirect, rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 2, clientX, npRemote)},
		{name: "the first flow again keeps it", dev: f.eth0, in: xFrame.to(npRemote).tcp(synOnly), out: out(only),
			verdict: testrun.Redirect, rec: fwd, lb: dnatSNAT("TRACE_CT_ESTABLISHED", 2, clientX, npRemote)},
		{name: "a second flow finds no port", dev: f.eth0, in: xFrame.from(clientY).to(npRemote).tcp(synOnly),
			verdict: testrun.Shot, rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_SNAT_NO_PORT"}},
		{name: "the first flow's entry expired: the second flow takes the port over", dev: f.eth0,
			before: func(t *testing.T) {
				ent, _ := ctFind(t, e.d.LB, "snat", backendR, only, maps.CTReply)
				ctSetLifetime(t, e.d.LB, ent, nowSeconds(t)-1)
			},
			in: xFrame.from(clientY).to(npRemote).tcp(synOnly), out: out(only),
			verdict: testrun.Redirect, rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 2, clientY, npRemote),
			after: func(t *testing.T) {
				r, _ := ctFind(t, e.d.LB, "snat", backendR, only, maps.CTReply)
				if r.NAT != clientY {
					t.Errorf("the port now belongs to %s, want %s", r.NAT, clientY)
				}
			}},
	})
}

// Legacy host routing: NodePort traffic is still forwarded in BPF (the stack would
// take the SNATed packet, from the node's own address, for a martian).
func TestLBNodePortLegacyHostRouting(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	cfg.HostRouting = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY)
	e := newNodePortEnv(t, "np-legacy", cfg)
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "DNAT and SNAT, fib redirect", dev: e.f.eth0, in: xFrame.to(npRemote).tcp(synOnly),
			out:     frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: sp, dst: backendR, ttl: 63}.tcp(synOnly),
			verdict: testrun.Redirect, rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(e.f.eth0)},
			lb: dnatSNAT("TRACE_CT_NEW", 2, clientX, npRemote)},
		{name: "other traffic still goes to the stack", dev: e.f.eth0, in: xFrame.to(backendB).tcp(synOnly),
			verdict: testrun.Next, rec: fromNetdev("VERDICT_PASS", "PASS_LEGACY_HOST_ROUTING")},
	})
}

// Tunnel mode (Geneve): the SNATed packet is encapsulated towards the backend's node,
// with the node's own identity in the VNI; the backend's reply, encapsulated back to
// this node's IP, is decapsulated and translated back.
func TestLBNodePortGeneve(t *testing.T) {
	f := setupNamedFibNS(t, lbName("np-gnv"))
	addRoute(t, testrun.NetlinkAt(t, f.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: f.eth0})
	cfg := tunnelConfig(t, config.TunnelGeneve, 0)
	cfg = withLB(t, cfg, lbOpts{MaglevTableSize: testM})
	e := newLBEnvIn(t, f, cfg, func(m *maps.Maps) { programOverlayMaps(t, m) })
	e.services(t)
	e.nodePorts(t)
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))

	res, r := e.run(t, e.d.FromNetdev, f.eth0, xFrame.to(npRemote).tcp(synOnly))
	if res.Verdict != testrun.Redirect || len(res.Out) < 50 {
		t.Fatalf("verdict %s, %d bytes (%s)", res.Verdict, len(res.Out), r.String(t))
	}
	checkRecord(t, r, want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0),
		tunnel: "TRACE_ENCAP_GENEVE", identity: hostID, endpoint: node2IP}, uint32(f.eth0))
	checkLB(t, r, dnatSNAT("TRACE_CT_NEW", 2, clientX, npRemote))
	o := encapOuter(eth0MAC, gw2MAC, node2IP, binary.BigEndian.Uint16(res.Out[34:36]))
	o.vni = hostID
	inner := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: sp, dst: backendR, ttl: 63}.tcp(synOnly)
	if want := o.wrap(inner); string(want) != string(res.Out[:len(want)]) {
		t.Errorf("encapsulated packet differs:\n%s", testrun.Diff(want, res.Out[:len(want)]))
	}

	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "the reply in Geneve: decapsulated, reverse SNAT, back to the client", dev: f.eth0,
			in:      fromNode2().wrap(frame{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: backendR, dst: sp}.tcp(synAck)),
			out:     frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: npRemote, dst: clientX, ttl: 63}.tcp(synAck),
			verdict: testrun.Redirect, rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)},
			lb: revSNAT(2, backendR, sp)},
		{name: "the reply natively: reverse SNAT, back to the client", dev: f.eth0,
			in:      frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: sp}.tcp(ackOnly),
			out:     frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: npRemote, dst: clientX, ttl: 63}.tcp(ackOnly),
			verdict: testrun.Redirect, rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)},
			lb: revSNAT(2, backendR, sp)},
	})
}

func ctKeyOf(src, dst netip.AddrPort, proto uint8, dir maps.CTDir) any {
	return struct {
		Saddr, Daddr uint32
		Sport, Dport uint16
		Proto, Dir   uint8
		Pad          uint16
	}{wire4(src.Addr()), wire4(dst.Addr()), wire16(src.Port()), wire16(dst.Port()), proto, uint8(dir), 0}
}

// ctValue is a live entry (lifetime) whose NAT address is nat, as another flow's
// SNAT reply entry would be.
func ctValue(lifetime uint32, nat netip.AddrPort) any {
	return struct {
		Lifetime            uint32
		Flags, Pad          uint16
		BackendID, RevNatID uint32
		NatAddr             uint32
		NatPort, Pad2       uint16
		Caches              [40]byte // the budget's caches (conntrack.h): none
	}{Lifetime: lifetime, Flags: uint16(maps.CTNodePort | maps.CTSNAT), BackendID: 2, RevNatID: 10,
		NatAddr: wire4(nat.Addr()), NatPort: wire16(nat.Port() + 1)}
}

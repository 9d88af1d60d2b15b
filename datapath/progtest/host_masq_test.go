// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// BPF masquerading (bpf/lib/masq.h) on node 1 (192.168.50.1, eth0): pod A's packets to
// the world leave eth0 (to_netdev) with the node's address and a port of the range;
// the world's replies (from_netdev) get pod A's tuple back and are delivered into it.

var (
	worldWeb = netip.AddrPortFrom(worldIP, 80)
	worldDNS = netip.AddrPortFrom(worldIP, 53)
	masqPodA = netip.AddrPortFrom(podAIP, 40000)
)

// masqConfig is the fixture node with BPF masquerading over ports lo..hi, as
// bpfconfig.Build writes it.
func masqConfig(lo, hi uint16) bpfconfig.Config {
	cfg := fixtureConfig()
	cfg.MasqEnabled, cfg.MasqPortMin, cfg.MasqPortMax = 1, lo, hi
	cfg.CtTimeoutTcp, cfg.CtTimeoutTcpSyn = bpfconfig.DefaultCTTimeoutTCP, bpfconfig.DefaultCTTimeoutTCPSyn
	cfg.CtTimeoutTcpClosing, cfg.CtTimeoutAny = bpfconfig.DefaultCTTimeoutTCPClosing, bpfconfig.DefaultCTTimeoutAny
	return cfg
}

// masqPort is the first port masq_snat() tries for the pod's flow.
func masqPort(cfg bpfconfig.Config, pod, remote netip.AddrPort, proto uint8) uint16 {
	rng := uint32(cfg.MasqPortMax) - uint32(cfg.MasqPortMin) + 1
	return cfg.MasqPortMin + uint16(lbHash(cfg.LbMaglevSeed, pod, remote, proto)%rng)
}

// leaving is a packet on eth0's egress as the stack routed it: node MACs, TTL 63.
func leaving(src, dst netip.AddrPort) frame {
	return frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: src, dst: dst, ttl: 63}
}

// arriving is a packet from the world reaching eth0.
func arriving(src, dst netip.AddrPort) frame {
	return frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: src, dst: dst}
}

// echo is an ICMP echo request (typ 8) or reply (0) with identifier id; ports of f
// are ignored.
func (f frame) echo(typ uint8, id uint16) []byte {
	return testrun.MustBuild(f.eth(), f.ip(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1}, gopacket.Payload(make([]byte, 56)))
}

// icmpError is an ICMP error (typ/code) from f's source to f's destination quoting
// the IPv4 packet of quoted (a frame without its Ethernet header).
func (f frame) icmpError(typ, code uint8, quoted []byte) []byte {
	return testrun.MustBuild(f.eth(), f.ip(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code)}, gopacket.Payload(quoted[14:]))
}

func masqOut(ct string, orig, dst netip.AddrPort) lbWant {
	return lbWant{action: "TRACE_LB_MASQ", ct: ct, origSrc: orig, origDst: dst}
}

func masqBack(src, dst netip.AddrPort) lbWant {
	return lbWant{action: "TRACE_LB_REV_MASQ", ct: "TRACE_CT_REPLY", origSrc: src, origDst: dst}
}

var (
	toNetdevPass = want{obs: "OBS_TO_NETDEV", verdict: "VERDICT_PASS"}
	intoPodA     = redirectPeer("OBS_FROM_NETDEV", podAEndpoint.Ifindex)
)

func TestHostMasqFixtures(t *testing.T) {
	cfg := masqConfig(32768, 60999)
	e := newLBEnv(t, "masq", cfg)
	l, f := e.d.LB, e.f
	p := masqPort(cfg, masqPodA, worldWeb, 6)
	nat := netip.AddrPortFrom(hostIP, p)
	podU := netip.AddrPortFrom(podAIP, 40001)
	natU := netip.AddrPortFrom(hostIP, masqPort(cfg, podU, worldDNS, 17))
	// ICMP echo: the identifier is the "port" (key: pod A:7 -> world:0).
	idNat := masqPort(cfg, netip.AddrPortFrom(podAIP, 7), netip.AddrPortFrom(worldIP, 0), 1)
	// Another flow's first port is held by a live entry of someone else: the next.
	podC := netip.AddrPortFrom(podAIP, 40002)
	pc := masqPort(cfg, podC, worldWeb, 6)
	pcNext := pc + 1
	if pc == cfg.MasqPortMax {
		pcNext = cfg.MasqPortMin
	}
	masqFlags := maps.CTMasq | maps.CTSynSeen
	toPodA := func(src, dst netip.AddrPort) frame { return arriving(src, dst).routed(lxcAMAC, podAMAC) }

	e.runCases(t, e.d.ToNetdev, []lbCase{
		{name: "pod to the world, tcp syn: the node's address and a port of the range", dev: f.eth0,
			in: leaving(masqPodA, worldWeb).tcp(synOnly), out: leaving(nat, worldWeb).tcp(synOnly), verdict: testrun.Next,
			rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", masqPodA, worldWeb),
			after: func(t *testing.T) {
				fw := ctExpect(t, l, "snat", masqPodA, worldWeb, maps.CTEgress, masqFlags, 60, 0)
				if fw.NAT != nat {
					t.Errorf("forward entry: NAT %s, want %s", fw.NAT, nat)
				}
				r := ctExpect(t, l, "snat", worldWeb, nat, maps.CTReply, masqFlags, 60, 0)
				if r.NAT != masqPodA {
					t.Errorf("reply entry: NAT %s, want pod A %s", r.NAT, masqPodA)
				}
			}},
		{name: "the same flow's ack keeps its port, established lifetime", dev: f.eth0,
			in: leaving(masqPodA, worldWeb).tcp(ackOnly), out: leaving(nat, worldWeb).tcp(ackOnly), verdict: testrun.Next,
			rec: toNetdevPass, lb: masqOut("TRACE_CT_ESTABLISHED", masqPodA, worldWeb),
			after: func(t *testing.T) {
				ctExpect(t, l, "snat", masqPodA, worldWeb, maps.CTEgress, masqFlags|maps.CTEstablished, 21600, 0)
				ctExpect(t, l, "snat", worldWeb, nat, maps.CTReply, masqFlags|maps.CTEstablished, 21600, 0)
			}},
		{name: "udp, checksum updated", dev: f.eth0,
			in: leaving(podU, worldDNS).udp(), out: leaving(natU, worldDNS).udp(), verdict: testrun.Next,
			rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", podU, worldDNS)},
		{name: "udp without checksum stays without", dev: f.eth0,
			in: leaving(podU, worldDNS).udpNoCsum(), out: func() []byte {
				b := leaving(natU, worldDNS).udp()
				b[14+20+6], b[14+20+7] = 0, 0
				return b
			}(), verdict: testrun.Next, rec: toNetdevPass, lb: masqOut("TRACE_CT_ESTABLISHED", podU, worldDNS)},
		{name: "icmp echo: the identifier translated", dev: f.eth0,
			in: leaving(masqPodA, worldWeb).echo(8, 7), out: leaving(nat, worldWeb).echo(8, idNat), verdict: testrun.Next,
			rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", netip.AddrPortFrom(podAIP, 7), netip.AddrPortFrom(worldIP, 0))},
		{name: "port held by another live flow: the next one", dev: f.eth0,
			before: func(t *testing.T) {
				k := ctKeyOf(worldWeb, netip.AddrPortFrom(hostIP, pc), 6, maps.CTReply)
				if err := l.SNAT.Put(k, ctValue(nowSeconds(t)+100, podB(1))); err != nil {
					t.Fatal(err)
				}
			},
			in: leaving(podC, worldWeb).tcp(synOnly), out: leaving(netip.AddrPortFrom(hostIP, pcNext), worldWeb).tcp(synOnly),
			verdict: testrun.Next, rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", podC, worldWeb)},
		{name: "pod to a pod of node 2 (inside the native-routing CIDR): untouched", dev: f.eth0,
			in: leaving(masqPodA, netip.AddrPortFrom(remotePodIP, 80)).tcp(synOnly), verdict: testrun.Next, rec: toNetdevPass},
		{name: "pod to the node itself: untouched", dev: f.eth0,
			in: leaving(masqPodA, netip.AddrPortFrom(hostIP, 80)).tcp(synOnly), verdict: testrun.Next, rec: toNetdevPass},
		{name: "the node's own traffic to the world: untouched", dev: f.eth0,
			in: leaving(netip.AddrPortFrom(hostIP, 5555), worldWeb).tcp(synOnly), verdict: testrun.Next, rec: toNetdevPass},
		{name: "icmp echo reply from a pod: untouched", dev: f.eth0,
			in: leaving(masqPodA, worldWeb).echo(0, 9), verdict: testrun.Next, rec: toNetdevPass},
	})

	podQuote := leaving(podU, worldDNS).udp()
	natQuote := leaving(natU, worldDNS).udp()
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "the world's syn-ack: back to pod A's tuple, into pod A", dev: f.eth0,
			in: arriving(worldWeb, nat).tcp(synAck), out: toPodA(worldWeb, masqPodA).tcp(synAck), verdict: testrun.Redirect,
			rec: intoPodA, lb: masqBack(worldWeb, nat)},
		{name: "udp reply", dev: f.eth0,
			in: arriving(worldDNS, natU).udp(), out: toPodA(worldDNS, podU).udp(), verdict: testrun.Redirect,
			rec: intoPodA, lb: masqBack(worldDNS, natU)},
		{name: "icmp echo reply: identifier back", dev: f.eth0,
			in: arriving(worldWeb, nat).echo(0, idNat), out: toPodA(worldWeb, masqPodA).echo(0, 7), verdict: testrun.Redirect,
			rec: intoPodA, lb: lbWant{action: "TRACE_LB_REV_MASQ", ct: "TRACE_CT_REPLY", origSrc: netip.AddrPortFrom(worldIP, 0),
				origDst: netip.AddrPortFrom(hostIP, idNat)}},
		{name: "icmp port unreachable about the udp flow: outer and quoted tuple back to pod A", dev: f.eth0,
			in:  arriving(worldDNS, natU).icmpError(3, 3, natQuote),
			out: toPodA(worldDNS, podU).icmpError(3, 3, podQuote), verdict: testrun.Redirect,
			rec: intoPodA, lb: lbWant{action: "TRACE_LB_REV_MASQ", ct: "TRACE_CT_REPLY", origSrc: netip.AddrPortFrom(worldIP, 0),
				origDst: netip.AddrPortFrom(hostIP, 0)}},
		{name: "icmp frag-needed about the echo: identifier in the quote back", dev: f.eth0,
			in:  arriving(worldWeb, nat).icmpError(3, 4, leaving(nat, worldWeb).echo(8, idNat)),
			out: toPodA(worldWeb, masqPodA).icmpError(3, 4, leaving(masqPodA, worldWeb).echo(8, 7)), verdict: testrun.Redirect,
			rec: intoPodA, lb: lbWant{action: "TRACE_LB_REV_MASQ", ct: "TRACE_CT_REPLY", origSrc: netip.AddrPortFrom(worldIP, 0),
				origDst: netip.AddrPortFrom(hostIP, 0)}},
		{name: "to the node on a port no flow holds: untouched, to the stack", dev: f.eth0,
			in: arriving(worldWeb, netip.AddrPortFrom(hostIP, p^1)).tcp(ackOnly), verdict: testrun.Next,
			rec: fromNetdev("VERDICT_PASS", "PASS_TO_HOST")},
		{name: "from another remote to the flow's port: untouched", dev: f.eth0,
			in: arriving(netip.AddrPortFrom(worldIP, 81), nat).tcp(ackOnly), verdict: testrun.Next,
			rec: fromNetdev("VERDICT_PASS", "PASS_TO_HOST")},
	})
	s, err := e.d.Masq.StatsRead()
	if err != nil {
		t.Fatal(err)
	}
	if s.NewFlows != 4 || s.Replies != 3 || s.ICMPErrors != 2 || s.NoPort != 0 {
		t.Errorf("counters %+v: want 4 new flows, 3 replies, 2 icmp errors, no drop", s)
	}
}

// podB is pod B with a port: another flow's owner.
func podB(port uint16) netip.AddrPort { return netip.AddrPortFrom(podBIP, port) }

// A range of one port: the first flow gets it, a second flow to the same remote is
// dropped with DROP_MASQ_NO_PORT and counted; a flow to another remote still gets it
// (the reply tuple differs).
func TestHostMasqPortExhaustion(t *testing.T) {
	cfg := masqConfig(40000, 40000)
	e := newLBEnv(t, "masqx", cfg)
	f := e.f
	other := netip.AddrPortFrom(netip.MustParseAddr("9.9.9.9"), 80)
	e.runCases(t, e.d.ToNetdev, []lbCase{
		{name: "first flow: the one port", dev: f.eth0,
			in: leaving(masqPodA, worldWeb).tcp(synOnly), out: leaving(netip.AddrPortFrom(hostIP, 40000), worldWeb).tcp(synOnly),
			verdict: testrun.Next, rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", masqPodA, worldWeb)},
		{name: "second flow to the same remote: dropped, named", dev: f.eth0,
			in: leaving(podB(1234), worldWeb).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_TO_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_MASQ_NO_PORT"}},
		{name: "a flow to another remote: the same port", dev: f.eth0,
			in: leaving(podB(1234), other).tcp(synOnly), out: leaving(netip.AddrPortFrom(hostIP, 40000), other).tcp(synOnly),
			verdict: testrun.Next, rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", podB(1234), other)},
	})
	s, err := e.d.Masq.StatsRead()
	if err != nil {
		t.Fatal(err)
	}
	if s.NoPort != 1 || s.NewFlows != 2 {
		t.Errorf("counters %+v: want 1 no-port drop, 2 new flows", s)
	}
}

// ip-masq-agent: destinations in the non-masquerade CIDRs keep the pod's address;
// tunnel mode: other nodes and pods behind them are the cluster.
func TestHostMasqExceptions(t *testing.T) {
	cfg := masqConfig(32768, 60999)
	cfg.MasqIpMasqAgent = 1
	e := newLBEnv(t, "masqa", cfg)
	f := e.f
	if err := e.d.Masq.NonMasqReplace([]netip.Prefix{netip.MustParsePrefix("8.8.0.0/16")}); err != nil {
		t.Fatal(err)
	}
	other := netip.AddrPortFrom(netip.MustParseAddr("9.9.9.9"), 80)
	e.runCases(t, e.d.ToNetdev, []lbCase{
		{name: "ip-masq-agent CIDR: untouched", dev: f.eth0,
			in: leaving(masqPodA, worldWeb).tcp(synOnly), verdict: testrun.Next, rec: toNetdevPass},
		{name: "outside it: masqueraded", dev: f.eth0,
			in:      leaving(masqPodA, other).tcp(synOnly),
			out:     leaving(netip.AddrPortFrom(hostIP, masqPort(cfg, masqPodA, other, 6)), other).tcp(synOnly),
			verdict: testrun.Next, rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", masqPodA, other)},
	})

	tcfg := masqConfig(32768, 60999)
	tcfg.RoutingMode = uint32(bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL)
	tcfg.NativeRoutingCidr, tcfg.NativeRoutingCidrLen = [4]uint8{}, 0
	te := newLBEnv(t, "masqt", tcfg)
	node2 := netip.MustParseAddr("192.168.50.2")
	if err := te.d.Maps.NodeUpsert(maps.Node{IP: node2, ID: 2}); err != nil {
		t.Fatal(err)
	}
	if err := te.d.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.MustParsePrefix("10.244.2.0/24"), Identity: 2000, TunnelEndpoint: node2}); err != nil {
		t.Fatal(err)
	}
	outside := netip.AddrPortFrom(netip.MustParseAddr("10.250.0.1"), 80) // a 10/8 address no node owns
	te.runCases(t, te.d.ToNetdev, []lbCase{
		{name: "tunnel: to another node: untouched", dev: te.f.eth0,
			in: leaving(masqPodA, netip.AddrPortFrom(node2, 80)).tcp(synOnly), verdict: testrun.Next, rec: toNetdevPass},
		{name: "tunnel: to a pod behind another node: untouched", dev: te.f.eth0,
			in: leaving(masqPodA, netip.AddrPortFrom(remotePodIP, 80)).tcp(synOnly), verdict: testrun.Next, rec: toNetdevPass},
		{name: "tunnel: anything else leaves the cluster: masqueraded", dev: te.f.eth0,
			in:      leaving(masqPodA, outside).tcp(synOnly),
			out:     leaving(netip.AddrPortFrom(hostIP, masqPort(tcfg, masqPodA, outside, 6)), outside).tcp(synOnly),
			verdict: testrun.Next, rec: toNetdevPass, lb: masqOut("TRACE_CT_NEW", masqPodA, outside)},
	})
}

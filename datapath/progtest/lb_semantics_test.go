// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/bpfobj"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// Service semantics (issue 12): reject without backends, Local traffic policies,
// session affinity, source ranges, terminating fallback.

var (
	vipEmptyUDP = netip.MustParseAddrPort("10.96.0.13:53") // udp, no backend
	vipLocalPol = netip.MustParseAddrPort("10.96.0.15:80") // tcp, SVC_F_LOCAL without a backend here
	vipAffine   = netip.MustParseAddrPort("10.96.0.16:80") // tcp, affinity over backends 1 and 2
	vipFallback = netip.MustParseAddrPort("10.96.0.17:80") // tcp, only backend 4 (terminating), fallback
	vipNoFall   = netip.MustParseAddrPort("10.96.0.18:80") // tcp, only backend 4, no fallback flag
	vipAffMag   = netip.MustParseAddrPort("10.96.0.19:80") // tcp, affinity and Maglev over 1 and 2
	npRanged    = netip.AddrPortFrom(hostIP, 30100)        // tcp NodePort -> backend 1, source ranges
	npAffine    = netip.AddrPortFrom(hostIP, 30101)        // tcp NodePort, affinity over backends 1 and 2
	npLocalPol  = netip.AddrPortFrom(hostIP, 30102)        // tcp NodePort, SVC_F_LOCAL without a backend here
)

// semantics programs the frontends of these fixtures (on top of services()).
func (e *lbEnv) semantics(t testing.TB) {
	t.Helper()
	e.service(t, 20, vipEmptyUDP, maps.ProtoUDP, maps.ServiceClusterIP)
	e.service(t, 21, vipLocalPol, maps.ProtoTCP, maps.ServiceClusterIP|maps.ServiceLocal)
	e.affineService(t, 22, vipAffine, maps.ServiceClusterIP|maps.ServiceAffinity, 1, 2)
	e.service(t, 23, vipFallback, maps.ProtoTCP, maps.ServiceClusterIP|maps.ServiceFallback, 4)
	e.service(t, 24, vipNoFall, maps.ProtoTCP, maps.ServiceClusterIP, 4)
	e.maglevTable(t, 25, 1, 2)
	e.affineService(t, 25, vipAffMag, maps.ServiceClusterIP|maps.ServiceAffinity|maps.ServiceMaglev, 1, 2)
	e.service(t, 26, npRanged, maps.ProtoTCP, maps.ServiceNodePort|maps.ServiceSourceRange, 1)
	e.affineService(t, 27, npAffine, maps.ServiceNodePort|maps.ServiceAffinity, 1, 2)
	e.service(t, 28, npLocalPol, maps.ProtoTCP, maps.ServiceNodePort|maps.ServiceLocal)
	if err := e.d.LB.SourceRangesSet(26, []netip.Prefix{netip.MustParsePrefix("172.16.0.4/31")}); err != nil {
		t.Fatal(err)
	}
}

// affineService is service() with a 100-second ClientIP affinity.
func (e *lbEnv) affineService(t testing.TB, id uint32, fe netip.AddrPort, flags maps.ServiceFlags, backends ...uint32) {
	t.Helper()
	if err := e.d.LB.RevNatUpsert(id, fe); err != nil {
		t.Fatal(err)
	}
	if err := e.d.LB.ServiceUpsert(maps.Service{
		ServiceKey: maps.ServiceKey{Addr: fe.Addr(), Port: fe.Port(), Proto: maps.ProtoTCP},
		ID:         id, Flags: flags, RevNatID: id, Backends: backends, AffinityTimeout: 100,
	}); err != nil {
		t.Fatal(err)
	}
}

// rst is the RST lb_reject() answers a TCP segment of f with (RFC 793): from f's
// destination back to its source, MACs swapped; seq and ack as given.
func (f frame) rst(seq, ack uint32, withACK bool) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: f.dst.Addr().AsSlice(), DstIP: f.src.Addr().AsSlice()}
	b := testrun.MustBuild(&layers.Ethernet{SrcMAC: f.dstMAC, DstMAC: f.srcMAC, EthernetType: layers.EthernetTypeIPv4}, ip,
		&layers.TCP{SrcPort: layers.TCPPort(f.dst.Port()), DstPort: layers.TCPPort(f.src.Port()), RST: true, ACK: withACK, Seq: seq, Ack: ack})
	return b[:14+40] // no Ethernet padding: BPF writes 54 bytes
}

// portUnreachable is the ICMP port unreachable lb_reject() answers the datagram in with.
func (f frame) portUnreachable(in []byte) []byte {
	ip := &layers.IPv4{Version: 4, IHL: 5, TOS: 0xc0, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: f.dst.Addr().AsSlice(), DstIP: f.src.Addr().AsSlice()}
	return testrun.MustBuild(&layers.Ethernet{SrcMAC: f.dstMAC, DstMAC: f.srcMAC, EthernetType: layers.EthernetTypeIPv4}, ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 3)}, gopacket.Payload(in[14:14+28]))
}

func rejected(obs string, dev int) want {
	return want{obs: obs, verdict: "VERDICT_REDIRECT", target: uint32(dev)}
}

func rejectLB(f frame) lbWant {
	return lbWant{action: "TRACE_LB_REJECT", ct: "TRACE_CT_NONE", origSrc: f.src, origDst: f.dst}
}

// TestLBNoBackend: service-no-backend-response. reject answers a new flow to a
// service without backends in BPF, out of the device it came in on; drop drops it
// with DROP_NO_SERVICE_BACKEND; a Local frontend without a backend here drops with
// DROP_SVC_NO_LOCAL_BACKEND either way.
func TestLBNoBackend(t *testing.T) {
	e := newNodePortEnv(t, "rej", lbConfig(t, lbOpts{Reject: true}))
	e.semantics(t)
	f := e.f
	syn := podAFrame(clientA, vipEmpty)
	udp := podAFrame(clientA, vipEmptyUDP)
	ext := xFrame.to(npEmpty)
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "a pod's syn to a ClusterIP without backends: RST|ACK from the ClusterIP, back into the pod", dev: f.lxc0,
			in: syn.tcp(synOnly), out: syn.rst(0, 1+8+1, true), verdict: testrun.Redirect,
			rec: rejected("OBS_FROM_CONTAINER", f.lxc0), lb: rejectLB(syn)},
		{name: "an ack without a flow: RST with the segment's ack as seq", dev: f.lxc0,
			in: syn.tcp(ackOnly), out: syn.rst(7, 0, false), verdict: testrun.Redirect,
			rec: rejected("OBS_FROM_CONTAINER", f.lxc0), lb: rejectLB(syn)},
		{name: "a fin: acked with one more", dev: f.lxc0,
			in: syn.tcp(tcpFlags{fin: true}), out: syn.rst(0, 1+8+1, true), verdict: testrun.Redirect,
			rec: rejected("OBS_FROM_CONTAINER", f.lxc0), lb: rejectLB(syn)},
		{name: "an rst is never answered: dropped, named", dev: f.lxc0,
			in: syn.tcp(rstOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
		{name: "udp: ICMP port unreachable quoting the datagram", dev: f.lxc0,
			in: udp.udp(), out: udp.portUnreachable(udp.udp()), verdict: testrun.Redirect,
			rec: rejected("OBS_FROM_CONTAINER", f.lxc0), lb: rejectLB(udp)},
		{name: "a Local frontend without a backend on this node: dropped, not rejected", dev: f.lxc0,
			in: podAFrame(clientA, vipLocalPol).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_SVC_NO_LOCAL_BACKEND"}},
	})
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "an outside client's syn to a NodePort without backends: RST out of eth0", dev: f.eth0,
			in: ext.tcp(synOnly), out: ext.rst(0, 1+8+1, true), verdict: testrun.Redirect,
			rec: rejected("OBS_FROM_NETDEV", f.eth0), lb: rejectLB(ext)},
	})

	d := newNodePortEnv(t, "rejd", lbConfig(t, lbOpts{}))
	d.semantics(t)
	d.runCases(t, d.d.FromContainer, []lbCase{
		{name: "service-no-backend-response=drop: udp dropped, named", dev: d.f.lxc0,
			in: udp.udp(), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
	})
	d.runCases(t, d.d.FromNetdev, []lbCase{
		{name: "service-no-backend-response=drop: NodePort syn dropped, named", dev: d.f.eth0,
			in: ext.tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
	})
}

// TestLBSessionAffinity: a client's new flows keep its backend while they come within
// the timeout, for random and Maglev selection; past it the choice is new.
func TestLBSessionAffinity(t *testing.T) {
	e := newLBEnv(t, "aff", lbConfig(t, lbOpts{}))
	e.services(t)
	e.semantics(t)
	l, f := e.d.LB, e.f
	first := uint32(0)
	for port := uint16(41000); port < 41032; port++ {
		in := podAFrame(netip.AddrPortFrom(podAIP, port), vipAffine).tcp(synOnly)
		_, r := e.run(t, e.d.FromContainer, f.lxc0, in)
		if first == 0 {
			first = r.BackendID
			if r.CT != "TRACE_CT_NEW" {
				t.Errorf("first flow: ct %s, want TRACE_CT_NEW", r.CT)
			}
			continue
		}
		if r.BackendID != first || r.CT != "TRACE_CT_AFFINITY" {
			t.Fatalf("flow from port %d: backend %d (%s), want %d by affinity", port, r.BackendID, r.CT, first)
		}
	}
	list, err := l.AffinityList()
	if err != nil || len(list) != 1 || list[0].BackendID != first || list[0].Client != podAIP || list[0].ServiceID != 22 {
		t.Fatalf("affinity map: %+v (%v), want one entry service 22 client %s backend %d", list, err, podAIP, first)
	}
	// Past the timeout: a new choice (TRACE_CT_NEW); over 32 flows both backends show up.
	seen := map[uint32]bool{}
	for port := uint16(42000); port < 42032; port++ {
		if err := l.Affinity.Put(bpfobj.LxcLbAffinityKey{ServiceId: 22, Client: wire4(podAIP)},
			bpfobj.LxcLbAffinity{BackendId: first, LastUsed: nowSeconds(t) - 101}); err != nil {
			t.Fatal(err)
		}
		_, r := e.run(t, e.d.FromContainer, f.lxc0, podAFrame(netip.AddrPortFrom(podAIP, port), vipAffine).tcp(synOnly))
		if r.CT != "TRACE_CT_NEW" {
			t.Fatalf("expired affinity: ct %s, want TRACE_CT_NEW", r.CT)
		}
		seen[r.BackendID] = true
	}
	if !seen[1] || !seen[2] {
		t.Errorf("expired affinity: backends chosen %v, want both 1 and 2 over 32 flows", seen)
	}
	// Maglev: the client's entry wins over the table.
	for _, b := range []uint32{1, 2} {
		if err := l.Affinity.Put(bpfobj.LxcLbAffinityKey{ServiceId: 25, Client: wire4(podAIP)},
			bpfobj.LxcLbAffinity{BackendId: b, LastUsed: nowSeconds(t)}); err != nil {
			t.Fatal(err)
		}
		for port := uint16(43000); port < 43008; port++ {
			_, r := e.run(t, e.d.FromContainer, f.lxc0, podAFrame(netip.AddrPortFrom(podAIP, port+uint16(b)*100), vipAffMag).tcp(synOnly))
			if r.BackendID != b || r.CT != "TRACE_CT_AFFINITY" {
				t.Fatalf("maglev with affinity to %d: backend %d (%s)", b, r.BackendID, r.CT)
			}
		}
	}
}

// TestLBSourceRanges: loadBalancerSourceRanges on a NodePort frontend, enforced only
// with enable-svc-source-range-check.
func TestLBSourceRanges(t *testing.T) {
	e := newNodePortEnv(t, "src", lbConfig(t, lbOpts{SourceRangeCheck: true}))
	e.semantics(t)
	f := e.f
	allowed, denied := xFrame.to(npRanged), xFrame.from(netip.MustParseAddrPort("172.16.0.9:50000")).to(npRanged)
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "a client inside the ranges: DNAT to pod B, no SNAT", dev: f.eth0,
			in: allowed.tcp(synOnly), out: allowed.to(backendB).routed(lxcBMAC, podBMAC).tcp(synOnly), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 1, clientX, npRanged)},
		{name: "a client outside them: dropped, named", dev: f.eth0,
			in: denied.tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_SVC_SOURCE_RANGE"}},
	})
	off := newNodePortEnv(t, "srcoff", lbConfig(t, lbOpts{}))
	off.semantics(t)
	off.runCases(t, off.d.FromNetdev, []lbCase{
		{name: "check off: the same client is served", dev: off.f.eth0,
			in: denied.tcp(synOnly), out: denied.to(backendB).routed(lxcBMAC, podBMAC).tcp(synOnly), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 1, denied.src, npRanged)},
	})
}

// TestLBTerminatingFallback: with only terminating backends, the fallback flag lets
// new flows take them (KEP-1669); without it they find none.
func TestLBTerminatingFallback(t *testing.T) {
	e := newLBEnv(t, "fall", lbConfig(t, lbOpts{}))
	e.services(t)
	e.semantics(t)
	f := e.f
	b4 := netip.AddrPortFrom(podBIP, 9090)
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "only a terminating backend, fallback: it gets the new flow", dev: f.lxc0,
			in: podAFrame(clientA, vipFallback).tcp(synOnly), out: podAFrame(clientA, b4).routed(lxcBMAC, podBMAC).tcp(synOnly),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 4, clientA, vipFallback)},
		{name: "only a terminating backend, no fallback: none for new flows", dev: f.lxc0,
			in: podAFrame(clientA, vipNoFall).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_NO_SERVICE_BACKEND"}},
	})
}

// BenchmarkLBAffinity: the cost of sessionAffinity ClientIP, same run, same backend
// (pod B, redirect_peer): an established flow (conntrack keeps the backend: affinity
// is not looked at) and a new flow (conntrack entry deleted before each run; with
// affinity the client's live entry gives the backend) to a frontend with and without it.
func BenchmarkLBAffinity(b *testing.B) {
	cfg := lbConfig(b, lbOpts{})
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	e := newLBEnv(b, "bench-aff", cfg)
	e.services(b)
	vipAffOne := netip.MustParseAddrPort("10.96.0.20:80")
	e.affineService(b, 29, vipAffOne, maps.ServiceClusterIP|maps.ServiceAffinity, 1)
	l := e.d.LB
	for _, bc := range []struct {
		name string
		vip  netip.AddrPort
		new  bool
	}{
		{"established/affinity-off", vipLocal, false},
		{"established/affinity-on", vipAffOne, false},
		{"new-flow/affinity-off", vipLocal, true},
		{"new-flow/affinity-on", vipAffOne, true},
	} {
		var reset func() error
		if bc.new {
			vip := bc.vip
			reset = func() error { return l.CTTCP.Delete(ctKeyOf(clientA, vip, 6, maps.CTService)) }
		}
		flags := ackOnly
		if bc.new {
			flags = synOnly
		}
		b.Run(bc.name, func(b *testing.B) {
			benchRedirect(b, e.f.path, e.d.FromContainer, podAFrame(clientA, bc.vip).tcp(flags), reset)
		})
	}
}

// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// Egress gateway (bpf/lib/egressgw.h) on node 1 (192.168.50.1), native routing. A
// policy sends pod A's traffic to 8.8.8.0/24, except 8.8.8.128/25, through node 2
// (192.168.50.2, neighbour gw2MAC); a second policy makes node 1 itself the gateway of
// node 2's pod (10.244.2.30) to the world, SNATed to egwIP.

var (
	egwDest     = netip.MustParsePrefix("8.8.8.0/24")
	egwExcluded = netip.MustParsePrefix("8.8.8.128/25")
	egwNode2    = netip.MustParseAddr("192.168.50.2")
	egwIP       = netip.MustParseAddr("192.168.50.100")
	egwWorld    = netip.AddrPortFrom(netip.MustParseAddr("8.8.8.8"), 80)
	egwExclWeb  = netip.AddrPortFrom(netip.MustParseAddr("8.8.8.200"), 80)
	egwRemote   = netip.AddrPortFrom(remotePodIP, 40000)
)

func egwEntries(gatewayOfA netip.Addr) []maps.EgressGWEntry {
	return []maps.EgressGWEntry{
		{Pod: podAIP, Dest: egwDest, Gateway: gatewayOfA, EgressIP: egwIP},
		{Pod: podAIP, Dest: egwExcluded, Gateway: netip.AddrFrom4([4]byte{0, 0, 0, 1})},
		{Pod: remotePodIP, Dest: egwDest, Gateway: hostIP, EgressIP: egwIP},
	}
}

func TestEgressGatewayFixtures(t *testing.T) {
	cfg := masqConfig(32768, 60999)
	cfg.EgressGwEnabled = 1
	e := newLBEnv(t, "egw", cfg)
	f := e.f
	if err := e.d.EgressGW.Replace(egwEntries(egwNode2)); err != nil {
		t.Fatal(err)
	}
	podA := netip.AddrPortFrom(podAIP, 40000)
	fromA := func(dst netip.AddrPort) frame { return frame{srcMAC: podAMAC, dstMAC: lxcAMAC, src: podA, dst: dst} }
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "selected pod to the destination CIDR: natively to the gateway node's MAC, addresses kept", dev: f.lxc0,
			in: fromA(egwWorld).tcp(synOnly), out: frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: podA, dst: egwWorld, ttl: 63}.tcp(synOnly),
			verdict: testrun.Redirect, rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)}},
		{name: "selected pod to an excluded CIDR: its usual way (the stack, masqueraded on this node)", dev: f.lxc0,
			in: fromA(egwExclWeb).tcp(synOnly), verdict: testrun.Pass,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_PASS", pass: "PASS_OUTSIDE_NATIVE_CIDR"}},
	})
	e.runCases(t, e.d.ToNetdev, []lbCase{
		{name: "on the pod's node, a flow another node is the gateway of: not masqueraded here", dev: f.eth0,
			in: leaving(podA, egwWorld).tcp(synOnly), verdict: testrun.Next, rec: toNetdevPass},
	})

	// Node 1 as the gateway of node 2's pod: SNAT to the egress IP, the reply back.
	p := masqPort(cfg, egwRemote, egwWorld, 6)
	nat := netip.AddrPortFrom(egwIP, p)
	e.runCases(t, e.d.ToNetdev, []lbCase{
		{name: "at the gateway: a remote selected pod's syn leaves from the egress IP and a port of the range", dev: f.eth0,
			in: leaving(egwRemote, egwWorld).tcp(synOnly), out: leaving(nat, egwWorld).tcp(synOnly), verdict: testrun.Next,
			rec: toNetdevPass, lb: lbWant{action: "TRACE_LB_EGW_SNAT", ct: "TRACE_CT_NEW", origSrc: egwRemote, origDst: egwWorld}},
	})
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "at the gateway: the world's syn-ack gets the pod's tuple back, to the stack (routed to the pod's node)", dev: f.eth0,
			in: arriving(egwWorld, nat).tcp(synAck), out: arriving(egwWorld, egwRemote).tcp(synAck), verdict: testrun.Next,
			rec: fromNetdev("VERDICT_PASS", "PASS_NOT_ENDPOINT"), lb: masqBack(egwWorld, nat)},
	})

	// No node matches the policy: dropped at from-container with the named reason.
	if err := e.d.EgressGW.Replace(egwEntries(netip.IPv4Unspecified())); err != nil {
		t.Fatal(err)
	}
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "no gateway node: DROP_NO_EGRESS_GATEWAY", dev: f.lxc0,
			in: fromA(egwWorld).udp(), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_NO_EGRESS_GATEWAY"}},
	})
	got, err := e.d.EgressGW.List()
	if err != nil || len(got) != 3 {
		t.Fatalf("map holds %v (%v), want the 3 entries", got, err)
	}
}

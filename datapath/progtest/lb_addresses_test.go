// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// The addresses a service answers on from outside (issue 12): a NodePort frontend on
// a second device address of the node (the agent writes one per address), and a
// ClusterIP reached from outside (bpf-lb-external-clusterip).
var (
	secondAddr = netip.MustParseAddr("192.168.60.1")   // another device's address of node 1
	npSecond   = netip.AddrPortFrom(secondAddr, 30080) // tcp NodePort on it -> backend 2, node 2: SNAT
)

// TestLBNodePortSecondAddress: a NodePort frontend on a device address other than the
// node IP is balanced like the node IP's: DNAT and SNAT to the node IP for a remote
// backend, and the reply goes back to the client from the address it dialled.
func TestLBNodePortSecondAddress(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	e := newNodePortEnv(t, "np2", cfg)
	e.service(t, 40, npSecond, maps.ProtoTCP, maps.ServiceNodePort, 2)
	f := e.f
	sp := snatPort(cfg, clientX, backendR, 6)
	snatted := netip.AddrPortFrom(hostIP, sp)
	fwd := want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)}
	toNode2 := func(src, dst netip.AddrPort) frame {
		return frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: src, dst: dst, ttl: 63}
	}
	replyFromR := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: snatted}
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "nodeport on the second address, backend on node 2: DNAT, SNAT to the node IP", dev: f.eth0,
			in: xFrame.to(npSecond).tcp(synOnly), out: toNode2(snatted, backendR).tcp(synOnly), verdict: testrun.Redirect,
			rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 2, clientX, npSecond)},
		{name: "the backend's syn-ack: back to the client from the second address", dev: f.eth0,
			in: replyFromR.tcp(synAck), out: toNode2(npSecond, clientX).tcp(synAck), verdict: testrun.Redirect,
			rec: fwd, lb: revSNAT(2, backendR, snatted)},
		// The fixture knows the address as no endpoint: on to the stack, untranslated.
		{name: "a port of the second address without a frontend: not translated", dev: f.eth0,
			in: xFrame.to(netip.AddrPortFrom(secondAddr, 30081)).tcp(synOnly), verdict: testrun.Next,
			rec: fromNetdev("VERDICT_PASS", "PASS_NOT_ENDPOINT")},
	})
}

// TestLBExternalClusterIP: a ClusterIP frontend reached from outside (a client routed
// it to the node) is dropped with DROP_IS_CLUSTER_IP by default, and balanced like a
// NodePort (DNAT to the local pod B here) with bpf-lb-external-clusterip.
func TestLBExternalClusterIP(t *testing.T) {
	off := newNodePortEnv(t, "ecoff", lbConfig(t, lbOpts{}))
	off.runCases(t, off.d.FromNetdev, []lbCase{
		{name: "external-clusterip false: dropped, named", dev: off.f.eth0,
			in: xFrame.to(vipLocal).tcp(synOnly), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_IS_CLUSTER_IP"}},
	})
	cfg := lbConfig(t, lbOpts{})
	cfg.LbExternalClusterip = 1
	on := newNodePortEnv(t, "econ", cfg)
	in := xFrame.to(vipLocal)
	on.runCases(t, on.d.FromNetdev, []lbCase{
		{name: "external-clusterip true: DNAT to pod B", dev: on.f.eth0,
			in: in.tcp(synOnly), out: in.to(backendB).routed(lxcBMAC, podBMAC).tcp(synOnly), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 1, clientX, vipLocal)},
	})
}

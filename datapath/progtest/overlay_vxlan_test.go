// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/testrun"
)

func TestVXLANEncapFixtures(t *testing.T) {
	e := newOverlayEnv(t, "vx-encap", overlayOpts{proto: config.TunnelVXLAN})
	f := e.f
	toRemote := fromPodA(remotePodIP)
	tooBig := toRemote
	tooBig.payload = fixtureMTU - 28 + 1
	encap := func(endpoint netip.Addr) want {
		return encapRecord("VERDICT_REDIRECT", e.vxlan, "TRACE_ENCAP_VXLAN", endpoint)
	}
	// The vxlan device builds the outer headers; what leaves the program is the pod's
	// frame with TTL - 1, its Ethernet header untouched, redirected to the device.
	same := func(p pktSpec) pktSpec { return p.routed(p.srcMAC, p.dstMAC) }
	fixtures := []testrun.Fixture{
		e.fixture(f.lxc0, testrun.Fixture{Name: "icmp to a remote pod", Input: toRemote.icmpEcho(),
			Verdict: testrun.Redirect, Output: same(toRemote).icmpEcho()}, encap(node2IP)),
		e.fixture(f.lxc0, testrun.Fixture{Name: "tcp to a remote pod", Input: toRemote.tcpSYN(),
			Verdict: testrun.Redirect, Output: same(toRemote).tcpSYN()}, encap(node2IP)),
		e.fixture(f.lxc0, testrun.Fixture{Name: "a node without neighbour entry is the device's business",
			Input: fromPodA(noNeighPodIP).icmpEcho(), Verdict: testrun.Redirect,
			Output: same(fromPodA(noNeighPodIP)).icmpEcho()}, encap(node3IP)),
		e.fixture(f.lxc0, testrun.Fixture{Name: "tunnel endpoint not in the nodes map", Verdict: testrun.Shot,
			Input: fromPodA(strangerPodIP).icmpEcho()},
			want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_UNKNOWN_TUNNEL_ENDPOINT",
				tunnel: "TRACE_ENCAP_VXLAN", identity: podAIdentity, endpoint: strangerIP}),
		e.fixture(f.lxc0, testrun.Fixture{Name: "DF and over the tunnel mtu", Verdict: testrun.Pass, Input: tooBig.icmpEcho()},
			want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_PASS", pass: "PASS_FRAG_NEEDED_TUNNEL",
				tunnel: "TRACE_ENCAP_VXLAN", identity: podAIdentity, endpoint: node2IP}),
		e.fixture(f.lxc0, testrun.Fixture{Name: "world goes to the stack", Verdict: testrun.Pass,
			Input: fromPodA(worldIP).icmpEcho()}, fromContainer("VERDICT_PASS", "PASS_NO_TUNNEL_ENDPOINT")),
		e.fixture(f.lxc0, testrun.Fixture{Name: "same node is never encapsulated", Verdict: testrun.Redirect,
			Input: fromPodA(podBIP).tcpSYN(), Output: fromPodA(podBIP).routed(lxcBMAC, podBMAC).tcpSYN()},
			redirectedFromContainer("VERDICT_REDIRECT_PEER", int(lxcBIfindex))),
	}
	testrun.RunFixtures(t, e.d.FromContainer, fixtures)
}

func TestFromNetdevVXLANGoesToTheOverlayDevice(t *testing.T) {
	e := newOverlayEnv(t, "vx-netdev", overlayOpts{proto: config.TunnelVXLAN})
	o := fromNode2()
	o.dport = config.PortVXLAN
	testrun.RunFixtures(t, e.d.FromNetdev, []testrun.Fixture{
		e.fixture(e.f.eth0, testrun.Fixture{Name: "vxlan for this node continues to the stack", Verdict: testrun.Next,
			Input: o.wrap(remotePodToB().icmpEcho())}, fromNetdev("VERDICT_PASS", "PASS_TO_OVERLAY")),
		e.fixture(e.f.eth0, testrun.Fixture{Name: "geneve is not decapsulated in vxlan mode", Verdict: testrun.Next,
			Input: fromNode2().wrap(remotePodToB().icmpEcho())}, fromNetdev("VERDICT_PASS", "PASS_TO_HOST")),
	})
}

func overlayRecord(verdict, drop, pass string, target uint32, endpoint netip.Addr, identity uint32) want {
	return want{obs: "OBS_FROM_OVERLAY", verdict: verdict, drop: drop, pass: pass, target: target,
		tunnel: "TRACE_DECAP_VXLAN", identity: identity, endpoint: endpoint}
}

// from_overlay sees the inner frame as the vxlan device hands it over: the pod's
// Ethernet header, its IPv4 packet, the VNI and the outer source in the metadata.
func TestFromOverlayFixtures(t *testing.T) {
	e := newOverlayEnv(t, "vx-overlay", overlayOpts{proto: config.TunnelVXLAN})
	inner := remotePodToB()
	shim := tunnelKeyShim(t, e.d.FromOverlay, remoteIdentity, node2IP)
	ctx := e.f.ctx(e.vxlan)
	fx := func(name string, in []byte, v testrun.Verdict, out []byte, w want) testrun.Fixture {
		return e.fixture(e.vxlan, testrun.Fixture{Name: name, Input: in, Verdict: v, Output: out, Context: ctx}, w)
	}
	testrun.RunFixtures(t, shim, []testrun.Fixture{
		fx("icmp for pod B is delivered", inner.icmpEcho(), testrun.Redirect, inner.routed(lxcBMAC, podBMAC).icmpEcho(),
			overlayRecord("VERDICT_REDIRECT_PEER", "", "", lxcBIfindex, node2IP, remoteIdentity)),
		fx("tcp for pod B is delivered", inner.tcpSYN(), testrun.Redirect, inner.routed(lxcBMAC, podBMAC).tcpSYN(),
			overlayRecord("VERDICT_REDIRECT_PEER", "", "", lxcBIfindex, node2IP, remoteIdentity)),
		fx("inner destination not on this node", pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: localNoEPIP}.icmpEcho(),
			testrun.Shot, nil, overlayRecord("VERDICT_DROP", "DROP_TUNNEL_WRONG_NODE", "", 0, node2IP, remoteIdentity)),
		fx("the node itself goes to the stack", pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: hostIP}.icmpEcho(),
			testrun.Pass, nil, overlayRecord("VERDICT_PASS", "", "PASS_TO_HOST", 0, node2IP, remoteIdentity)),
		fx("ttl 1 goes to the stack", setTTL(inner.icmpEcho(), 1), testrun.Pass, nil,
			overlayRecord("VERDICT_PASS", "", "PASS_TTL_EXPIRED", 0, node2IP, remoteIdentity)),
		fx("arp goes to the stack", arpRequest(), testrun.Pass, nil,
			overlayRecord("VERDICT_PASS", "", "PASS_NOT_IPV4", 0, node2IP, remoteIdentity)),
		fx("malformed inner ipv4", corrupt(inner.tcpSYN(), func(b []byte) []byte { b[14] = 0x44; return b }), testrun.Shot, nil,
			overlayRecord("VERDICT_DROP", "DROP_BAD_IHL", "", 0, node2IP, remoteIdentity)),
	})
	testrun.RunFixtures(t, tunnelKeyShim(t, e.d.FromOverlay, 0, node2IP), []testrun.Fixture{
		fx("VNI 0", inner.icmpEcho(), testrun.Shot, nil, overlayRecord("VERDICT_DROP", "DROP_BAD_VNI", "", 0, node2IP, 0)),
	})
	testrun.RunFixtures(t, tunnelKeyShim(t, e.d.FromOverlay, remoteIdentity, strangerIP), []testrun.Fixture{
		fx("outer source is no node", inner.icmpEcho(), testrun.Shot, nil,
			overlayRecord("VERDICT_DROP", "DROP_UNKNOWN_TUNNEL_PEER", "", 0, strangerIP, remoteIdentity)),
	})
	testrun.RunFixtures(t, e.d.FromOverlay, []testrun.Fixture{
		fx("no tunnel metadata", inner.icmpEcho(), testrun.Shot, nil,
			want{obs: "OBS_FROM_OVERLAY", verdict: "VERDICT_DROP", drop: "DROP_TUNNEL_KEY", tunnel: "TRACE_DECAP_VXLAN"}),
	})
}

func TestFromOverlayLegacyHostRouting(t *testing.T) {
	e := newOverlayEnv(t, "vx-legacy", overlayOpts{proto: config.TunnelVXLAN,
		mutate: func(c *bpfconfig.Config) { c.HostRouting = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY) }})
	shim := tunnelKeyShim(t, e.d.FromOverlay, remoteIdentity, node2IP)
	testrun.RunFixtures(t, shim, []testrun.Fixture{
		e.fixture(e.vxlan, testrun.Fixture{Name: "delivered through the stack", Input: remotePodToB().icmpEcho(),
			Verdict: testrun.Pass, Context: e.f.ctx(e.vxlan)},
			overlayRecord("VERDICT_PASS", "", "PASS_LEGACY_HOST_ROUTING", 0, node2IP, remoteIdentity)),
	})
}

// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"net/netip"
	"testing"

	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// perPeerMTU is node 2's tunnel MTU in these fixtures: the agent learnt that the
// underlay path to it is 1400 bytes (a smaller leg behind a router), less 50.
const perPeerMTU = 1350

// A per-node MTU in the nodes map lowers the tunnel MTU towards that node only: a DF
// packet one byte over it goes to the stack (PASS_FRAG_NEEDED_TUNNEL: the stack
// answers frag-needed with the per-peer route's MTU) instead of being encapsulated
// into a path that cannot carry it; without DF it goes to the stack to be fragmented;
// a packet of exactly that size is encapsulated. A node whose MTU is 0, or larger than
// the global tunnel MTU, gets the global one (fixtureMTU).
func TestPerPeerTunnelMTU(t *testing.T) {
	e := newOverlayEnv(t, "vx-pmtu", overlayOpts{proto: config.TunnelVXLAN})
	setNode := func(n maps.Node) {
		t.Helper()
		if err := e.d.Maps.NodeUpsert(n); err != nil {
			t.Fatal(err)
		}
	}
	// sized is p as an ICMP echo whose IPv4 packet is ipLen bytes long.
	sized := func(p pktSpec, ipLen int, df bool) []byte {
		p.payload = ipLen - 28 // IPv4 20 + ICMP 8
		p.noDF = !df
		return p.icmpEcho()
	}
	encapsulated := func(name string, p pktSpec, ipLen int, endpoint netip.Addr) testrun.Fixture {
		out := p.routed(p.srcMAC, p.dstMAC)
		out.payload = ipLen - 28
		return e.fixture(e.f.lxc0, testrun.Fixture{Name: name, Input: sized(p, ipLen, true),
			Verdict: testrun.Redirect, Output: out.icmpEcho()},
			encapRecord("VERDICT_REDIRECT", e.vxlan, "TRACE_ENCAP_VXLAN", endpoint))
	}
	passed := func(name string, p pktSpec, ipLen int, df bool, reason string, endpoint netip.Addr) testrun.Fixture {
		return e.fixture(e.f.lxc0, testrun.Fixture{Name: name, Input: sized(p, ipLen, df), Verdict: testrun.Pass},
			want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_PASS", pass: reason, tunnel: "TRACE_ENCAP_VXLAN",
				identity: podAIdentity, endpoint: endpoint})
	}
	toNode2, toNode3 := fromPodA(remotePodIP), fromPodA(noNeighPodIP)

	setNode(maps.Node{IP: node2IP, ID: 2, MTU: perPeerMTU})
	setNode(maps.Node{IP: node3IP, ID: 3, MTU: 0})
	testrun.RunFixtures(t, e.d.FromContainer, []testrun.Fixture{
		passed(fmt.Sprintf("node 2 (mtu %d): DF and one byte over: the stack answers frag-needed", perPeerMTU),
			toNode2, perPeerMTU+1, true, "PASS_FRAG_NEEDED_TUNNEL", node2IP),
		passed(fmt.Sprintf("node 2 (mtu %d): no DF and one byte over: the stack fragments", perPeerMTU),
			toNode2, perPeerMTU+1, false, "PASS_FRAGMENT_TUNNEL", node2IP),
		encapsulated(fmt.Sprintf("node 2 (mtu %d): exactly its mtu is encapsulated", perPeerMTU), toNode2, perPeerMTU, node2IP),
		encapsulated(fmt.Sprintf("node 3 (mtu 0): the global %d is encapsulated", fixtureMTU), toNode3, fixtureMTU, node3IP),
		passed(fmt.Sprintf("node 3 (mtu 0): DF and one byte over the global %d", fixtureMTU),
			toNode3, fixtureMTU+1, true, "PASS_FRAG_NEEDED_TUNNEL", node3IP),
	})

	// A per-node MTU only ever lowers the global one; 0 again restores it for node 2.
	setNode(maps.Node{IP: node2IP, ID: 2, MTU: 0})
	setNode(maps.Node{IP: node3IP, ID: 3, MTU: 9000})
	testrun.RunFixtures(t, e.d.FromContainer, []testrun.Fixture{
		encapsulated(fmt.Sprintf("node 2 (mtu 0 again): the global %d is encapsulated", fixtureMTU), toNode2, fixtureMTU, node2IP),
		passed("node 3 (mtu 9000, over the global): DF and one byte over the global is refused",
			toNode3, fixtureMTU+1, true, "PASS_FRAG_NEEDED_TUNNEL", node3IP),
	})
}

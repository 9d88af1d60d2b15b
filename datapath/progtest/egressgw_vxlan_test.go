// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// Egress gateway in a VXLAN tunnel on node 1: pod A's traffic to 8.8.8.0/24 is
// encapsulated to the gateway node 3 whatever its destination; node 1 as the gateway
// of node 2's pod SNATs it to the egress IP, and the reply, translated back, goes to
// node 2 through the tunnel (from_netdev_egw_reply, with the world's identity).
func TestEgressGatewayVXLANFixtures(t *testing.T) {
	var cfg bpfconfig.Config
	e := newOverlayEnv(t, "egw-vx", overlayOpts{proto: config.TunnelVXLAN, mutate: func(c *bpfconfig.Config) {
		m := masqConfig(32768, 60999)
		c.MasqEnabled, c.MasqPortMin, c.MasqPortMax = 1, m.MasqPortMin, m.MasqPortMax
		c.CtTimeoutTcp, c.CtTimeoutTcpSyn, c.CtTimeoutTcpClosing, c.CtTimeoutAny = m.CtTimeoutTcp, m.CtTimeoutTcpSyn, m.CtTimeoutTcpClosing, m.CtTimeoutAny
		c.EgressGwEnabled = 1
		cfg = *c
	}})
	if err := e.d.EgressGW.Replace([]maps.EgressGWEntry{
		{Pod: podAIP, Dest: egwDest, Gateway: node3IP, EgressIP: netip.MustParseAddr("192.168.50.103")},
		{Pod: remotePodIP, Dest: egwDest, Gateway: hostIP, EgressIP: egwIP},
	}); err != nil {
		t.Fatal(err)
	}
	f := e.f
	same := func(p pktSpec) pktSpec { return p.routed(p.srcMAC, p.dstMAC) }
	toWorld := fromPodA(worldIP)
	testrun.RunFixtures(t, e.d.FromContainer, []testrun.Fixture{
		e.fixture(f.lxc0, testrun.Fixture{Name: "selected pod to the world: encapsulated to the gateway node 3", Input: toWorld.icmpEcho(),
			Verdict: testrun.Redirect, Output: same(toWorld).icmpEcho()}, encapRecord("VERDICT_REDIRECT", e.vxlan, "TRACE_ENCAP_VXLAN", node3IP)),
		e.fixture(f.lxc0, testrun.Fixture{Name: "outside the destination CIDR: the stack, as before", Input: fromPodA(netip.MustParseAddr("9.9.9.9")).icmpEcho(),
			Verdict: testrun.Pass}, fromContainer("VERDICT_PASS", "PASS_NO_TUNNEL_ENDPOINT")),
	})

	pod, world := netip.AddrPortFrom(remotePodIP, 40000), netip.AddrPortFrom(worldIP, 80)
	nat := netip.AddrPortFrom(egwIP, masqPort(cfg, pod, world, 6))
	testrun.RunFixtures(t, e.d.ToNetdev, []testrun.Fixture{
		e.fixture(f.eth0, testrun.Fixture{Name: "at the gateway: node 2's pod leaves from the egress IP", Input: leaving(pod, world).tcp(synOnly),
			Verdict: testrun.Next, Output: leaving(nat, world).tcp(synOnly)}, want{obs: "OBS_TO_NETDEV", verdict: "VERDICT_PASS"}),
	})
	back := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: world, dst: pod, ttl: 63}
	testrun.RunFixtures(t, e.d.FromNetdev, []testrun.Fixture{
		e.fixture(f.eth0, testrun.Fixture{Name: "at the gateway: the reply, translated back, goes to node 2 through the tunnel",
			Input: arriving(world, nat).tcp(synAck), Verdict: testrun.Redirect, Output: back.tcp(synAck)},
			want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(e.vxlan), tunnel: "TRACE_ENCAP_VXLAN",
				identity: 2, endpoint: node2IP}),
	})
}

// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/bpfobj"
	"podpath/datapath/testrun"
)

func fromNetdev(verdict, pass string) want {
	return want{obs: "OBS_FROM_NETDEV", verdict: verdict, pass: pass}
}

func TestFromNetdevFixtures(t *testing.T) {
	e := newFixtureEnv(t, "host", fixtureConfig())
	f := e.f
	pass := func(reason string) want { return fromNetdev("VERDICT_PASS", reason) }
	toB := fromUnderlay(podBIP)

	fixtures := []testrun.Fixture{
		e.fixture(f.eth0, testrun.Fixture{Name: "arp continues to the stack", Input: arpRequest(), Verdict: testrun.Next},
			pass("PASS_NOT_IPV4")),
		e.fixture(f.eth0, testrun.Fixture{Name: "ipv6 continues to the stack", Input: ipv6Packet(), Verdict: testrun.Next},
			pass("PASS_NOT_IPV4")),
		e.fixture(f.eth0, testrun.Fixture{
			Name: "icmp for a local pod is redirected into it", Input: toB.icmpEcho(), Verdict: testrun.Redirect,
			Output: toB.routed(lxcBMAC, podBMAC).icmpEcho(),
		}, want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT_PEER", target: lxcBIfindex}),
		e.fixture(f.eth0, testrun.Fixture{
			Name: "tcp for a local pod is redirected into it", Input: toB.tcpSYN(), Verdict: testrun.Redirect,
			Output: toB.routed(lxcBMAC, podBMAC).tcpSYN(),
		}, want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT_PEER", target: lxcBIfindex}),
		e.fixture(f.eth0, testrun.Fixture{
			Name: "ttl 1 for a local pod goes to the stack", Input: setTTL(toB.icmpEcho(), 1), Verdict: testrun.Next,
		}, pass("PASS_TTL_EXPIRED")),
		e.fixture(f.eth0, testrun.Fixture{
			Name: "the node's own address goes to the stack", Input: fromUnderlay(hostIP).icmpEcho(), Verdict: testrun.Next,
		}, pass("PASS_TO_HOST")),
		e.fixture(f.eth0, testrun.Fixture{
			Name: "a pod of another node is not ours", Input: fromUnderlay(remotePodIP).icmpEcho(), Verdict: testrun.Next,
		}, pass("PASS_NOT_ENDPOINT")),
		e.fixture(f.eth0, testrun.Fixture{
			Name: "the world is not ours", Input: fromUnderlay(worldIP).tcpSYN(), Verdict: testrun.Next,
		}, pass("PASS_NOT_ENDPOINT")),
	}
	// Sources this node owns never arrive from the wire (issue 17's spoofed sources).
	spoofed := func(src netip.Addr) pktSpec { p := toB; p.src = src; return p }
	for _, sp := range []struct {
		name string
		src  netip.Addr
	}{{"a pod of this node", podBIP}, {"this node", hostIP}} {
		fixtures = append(fixtures, e.fixture(f.eth0, testrun.Fixture{
			Name: "from the wire with the source of " + sp.name + " is dropped", Input: spoofed(sp.src).icmpEcho(), Verdict: testrun.Shot,
		}, want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_SPOOFED_SOURCE"}))
	}
	for _, m := range malformed(toB.tcpSYN()) {
		fixtures = append(fixtures, e.fixture(f.eth0, testrun.Fixture{Name: m.name, Input: m.pkt, Verdict: testrun.Shot},
			want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: m.reason}))
	}
	testrun.RunFixtures(t, e.d.FromNetdev, fixtures)
}

func TestFromNetdevLegacyHostRouting(t *testing.T) {
	cfg := fixtureConfig()
	cfg.HostRouting = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY)
	e := newFixtureEnv(t, "host-legacy", cfg)
	testrun.RunFixtures(t, e.d.FromNetdev, []testrun.Fixture{
		e.fixture(e.f.eth0, testrun.Fixture{Name: "a local pod is reached through the stack",
			Input: fromUnderlay(podBIP).icmpEcho(), Verdict: testrun.Next}, fromNetdev("VERDICT_PASS", "PASS_LEGACY_HOST_ROUTING")),
		e.fixture(e.f.eth0, testrun.Fixture{Name: "malformed is still dropped", Verdict: testrun.Shot,
			Input: corrupt(fromUnderlay(podBIP).tcpSYN(), func(b []byte) []byte { b[14] = 0x65; return b })},
			want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_DROP", drop: "DROP_BAD_IP_VERSION"}),
	})
}

func TestToNetdevTracesAndPasses(t *testing.T) {
	e := newFixtureEnv(t, "host-to", fixtureConfig())
	observed := want{obs: "OBS_TO_NETDEV", verdict: "VERDICT_PASS"}
	out := pktSpec{srcMAC: eth0MAC, dstMAC: gw2MAC, src: podAIP, dst: remotePodIP}
	testrun.RunFixtures(t, e.d.ToNetdev, []testrun.Fixture{
		e.fixture(e.f.eth0, testrun.Fixture{Name: "tcp", Input: out.tcpSYN(), Verdict: testrun.Next}, observed),
		e.fixture(e.f.eth0, testrun.Fixture{Name: "arp", Input: arpRequest(), Verdict: testrun.Next}, observed),
		e.fixture(e.f.eth0, testrun.Fixture{Name: "malformed is observed, not judged", Verdict: testrun.Next,
			Input: corrupt(out.tcpSYN(), func(b []byte) []byte { b[16], b[17] = 0x05, 0xdc; return b })}, observed),
	})
}

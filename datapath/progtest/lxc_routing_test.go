// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
)

// fixtureEnv is node 1 prepared for from_container fixtures: the namespace its FIB
// lives in, the loaded datapath and its trace reader.
type fixtureEnv struct {
	f  *fibNS
	d  *loader.Datapath
	rd *trace.Reader
}

func newFixtureEnv(t *testing.T, suffix string, cfg bpfconfig.Config) *fixtureEnv {
	t.Helper()
	f := setupFibNS(t, suffix)
	d, rd := loadDatapath(t, cfg)
	return &fixtureEnv{f: f, d: d, rd: rd}
}

// fixture fills in what every fixture of this env shares: run in node 1's namespace
// as if the packet arrived on dev, and expect exactly one record w (ifindex = dev).
func (e *fixtureEnv) fixture(dev int, fx testrun.Fixture, w want) testrun.Fixture {
	fx.Netns = e.f.path
	if fx.Context == nil {
		fx.Context = e.f.ctx(dev)
	}
	if w.ifindex == 0 {
		w.ifindex = fx.Context.Ifindex
	}
	check := fx.Check
	fx.Check = func(t *testing.T, res testrun.Result) {
		expectRecord(t, e.rd, w)
		if check != nil {
			check(t, res)
		}
	}
	if fx.Verdict == testrun.Shot {
		fx.IgnoreOutput = true
	}
	return fx
}

func fromContainer(verdict, pass string) want {
	return want{obs: "OBS_FROM_CONTAINER", verdict: verdict, pass: pass}
}

func redirectedFromContainer(verdict string, target int) want {
	return want{obs: "OBS_FROM_CONTAINER", verdict: verdict, target: uint32(target)}
}

// setTTL returns pkt with the IPv4 TTL set and the header checksum recomputed.
func setTTL(pkt []byte, ttl uint8) []byte {
	return corrupt(pkt, func(b []byte) []byte {
		b[22] = ttl
		sum := ipChecksum(b[14:34])
		b[24], b[25] = byte(sum>>8), byte(sum)
		return b
	})
}

func TestFromContainerFixtures(t *testing.T) {
	e := newFixtureEnv(t, "lxc", fixtureConfig())
	f := e.f
	pass := func(reason string) want { return fromContainer("VERDICT_PASS", reason) }

	toB := fromPodA(podBIP)
	toRemote := fromPodA(remotePodIP)
	toNoNeigh := fromPodA(noNeighPodIP)
	bigToRemote := toRemote
	bigToRemote.payload = 1600

	fixtures := []testrun.Fixture{
		e.fixture(f.lxc0, testrun.Fixture{Name: "arp goes to the stack", Input: arpRequest(), Verdict: testrun.Pass},
			pass("PASS_NOT_IPV4")),
		e.fixture(f.lxc0, testrun.Fixture{Name: "ipv6 goes to the stack", Input: ipv6Packet(), Verdict: testrun.Pass},
			pass("PASS_NOT_IPV4")),

		// Local delivery: rewritten as a router would, redirected into pod B.
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "icmp to a local pod is redirected into it", Input: toB.icmpEcho(), Verdict: testrun.Redirect,
			Output: toB.routed(lxcBMAC, podBMAC).icmpEcho(),
		}, redirectedFromContainer("VERDICT_REDIRECT_PEER", int(lxcBIfindex))),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "tcp to a local pod is redirected into it", Input: toB.tcpSYN(), Verdict: testrun.Redirect,
			Output: toB.routed(lxcBMAC, podBMAC).tcpSYN(),
		}, redirectedFromContainer("VERDICT_REDIRECT_PEER", int(lxcBIfindex))),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "udp to a local pod is redirected into it", Input: toB.udp(), Verdict: testrun.Redirect,
			Output: toB.routed(lxcBMAC, podBMAC).udp(),
		}, redirectedFromContainer("VERDICT_REDIRECT_PEER", int(lxcBIfindex))),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "later fragment to a local pod is redirected too", Verdict: testrun.Redirect,
			Input:  laterFragment(toB.udp()),
			Output: laterFragment(toB.routed(lxcBMAC, podBMAC).udp()),
		}, redirectedFromContainer("VERDICT_REDIRECT_PEER", int(lxcBIfindex))),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "ttl 1 to a local pod goes to the stack for icmp time exceeded", Verdict: testrun.Pass,
			Input: setTTL(toB.icmpEcho(), 1),
		}, pass("PASS_TTL_EXPIRED")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "ttl 0 to a local pod goes to the stack", Verdict: testrun.Pass,
			Input: setTTL(toB.icmpEcho(), 0),
		}, pass("PASS_TTL_EXPIRED")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "the node's own address (host endpoint) goes to the stack", Verdict: testrun.Pass,
			Input: fromPodA(hostIP).icmpEcho(),
		}, pass("PASS_TO_HOST")),

		// Cross-node, native routing: the FIB of node 1 decides.
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "remote pod with a known neighbour: MACs from the fib, redirect to eth0", Verdict: testrun.Redirect,
			Input: toRemote.icmpEcho(), Output: toRemote.routed(eth0MAC, gw2MAC).icmpEcho(),
		}, redirectedFromContainer("VERDICT_REDIRECT", f.eth0)),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "remote pod over tcp with a known neighbour", Verdict: testrun.Redirect,
			Input: toRemote.tcpSYN(), Output: toRemote.routed(eth0MAC, gw2MAC).tcpSYN(),
		}, redirectedFromContainer("VERDICT_REDIRECT", f.eth0)),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "remote pod without a neighbour: ttl decremented, redirect_neigh to eth0", Verdict: testrun.Redirect,
			Input: toNoNeigh.icmpEcho(), Output: toNoNeigh.routed(podAMAC, lxcAMAC).icmpEcho(),
		}, redirectedFromContainer("VERDICT_REDIRECT_NEIGH", f.eth0)),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "ttl 1 to a remote pod goes to the stack", Verdict: testrun.Pass,
			Input: setTTL(toRemote.icmpEcho(), 1),
		}, pass("PASS_TTL_EXPIRED")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "ttl 1 to a remote pod without neighbour goes to the stack", Verdict: testrun.Pass,
			Input: setTTL(toNoNeigh.icmpEcho(), 1),
		}, pass("PASS_TTL_EXPIRED")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "larger than eth0's mtu goes to the stack for frag-needed", Verdict: testrun.Pass,
			Input: bigToRemote.icmpEcho(),
		}, pass("PASS_FIB_FRAG_NEEDED")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "unreachable route", Verdict: testrun.Pass, Input: fromPodA(unreachableIP).icmpEcho(),
		}, pass("PASS_FIB_UNREACHABLE")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "blackhole route", Verdict: testrun.Pass, Input: fromPodA(blackholeIP).icmpEcho(),
		}, pass("PASS_FIB_BLACKHOLE")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "prohibit route", Verdict: testrun.Pass, Input: fromPodA(prohibitIP).icmpEcho(),
		}, pass("PASS_FIB_PROHIBIT")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "no route at all", Verdict: testrun.Pass, Input: fromPodA(noRouteIP).icmpEcho(),
		}, pass("PASS_FIB_NOT_FWDED")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "a local address that is no endpoint (the gateway) is not forwarded", Verdict: testrun.Pass,
			Input: fromPodA(gatewayIP).icmpEcho(),
		}, pass("PASS_FIB_NOT_FWDED")),
		e.fixture(f.lxc1, testrun.Fixture{
			Name: "forwarding disabled on the ingress device", Verdict: testrun.Pass, Input: toRemote.icmpEcho(),
		}, pass("PASS_FIB_FWD_DISABLED")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "an ingress device the fib does not know", Verdict: testrun.Pass, Input: toRemote.icmpEcho(),
			Context: &testrun.SkbContext{Ifindex: uint32(f.lxc0), IngressIfindex: 1 << 30},
		}, pass("PASS_FIB_ERROR")),
		e.fixture(f.lxc0, testrun.Fixture{
			Name: "outside the native-routing cidr goes to the stack", Verdict: testrun.Pass,
			Input: fromPodA(worldIP).icmpEcho(),
		}, pass("PASS_OUTSIDE_NATIVE_CIDR")),
	}
	if f.lwtRoute {
		fixtures = append(fixtures, e.fixture(f.lxc0, testrun.Fixture{
			Name: "route with lwt encapsulation", Verdict: testrun.Pass, Input: fromPodA(lwtIP).icmpEcho(),
		}, pass("PASS_FIB_UNSUPP_LWT")))
	}
	for _, m := range malformed(toB.tcpSYN()) {
		fixtures = append(fixtures, e.fixture(f.lxc0, testrun.Fixture{Name: m.name, Input: m.pkt, Verdict: testrun.Shot},
			want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: m.reason}))
	}
	testrun.RunFixtures(t, e.d.FromContainer, fixtures)
}

// laterFragment turns pkt into a non-first fragment (offset 80 bytes) with its
// header checksum fixed: there is no L4 header to read.
func laterFragment(pkt []byte) []byte {
	return corrupt(pkt, func(b []byte) []byte {
		b[20], b[21] = 0, 10
		sum := ipChecksum(b[14:34])
		b[24], b[25] = byte(sum>>8), byte(sum)
		return b
	})
}

// The record carries the packet as received: addresses, ports, TTL before the
// decrement, and the frame's length.
func TestFromContainerRecordSummary(t *testing.T) {
	e := newFixtureEnv(t, "lxc-sum", fixtureConfig())
	in := fromPodA(podBIP).tcpSYN()
	testrun.RunFixtures(t, e.d.FromContainer, []testrun.Fixture{e.fixture(e.f.lxc0, testrun.Fixture{
		Name: "summary", Input: in, Verdict: testrun.Redirect, IgnoreOutput: true,
	}, redirectedFromContainer("VERDICT_REDIRECT_PEER", int(lxcBIfindex)))})
	// expectRecord drained the record: run again and read it here.
	runIn(t, e.f.path, e.d, in, e.f.ctx(e.f.lxc0))
	r := expectRecord(t, e.rd, want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_REDIRECT_PEER", ifindex: uint32(e.f.lxc0), target: lxcBIfindex})
	wantSum := trace.Summary{Src: podAIP, Dst: podBIP, SrcPort: 40000, DstPort: 80, EthProto: 0x0800,
		IPProto: 6, TTL: 64, IPID: 0x1234, HasIPv4: true, HasTransport: true}
	if r.Pkt != wantSum || r.PktLen != uint32(len(in)) {
		t.Errorf("record: want %+v len %d, got %+v len %d", wantSum, len(in), r.Pkt, r.PktLen)
	}
}

func runIn(t *testing.T, nsPath string, d *loader.Datapath, pkt []byte, ctx *testrun.SkbContext) testrun.Result {
	t.Helper()
	var res testrun.Result
	if err := nsutil.Do(nsPath, func() (err error) {
		res, err = testrun.RunContext(d.FromContainer, pkt, ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return res
}

func TestFromContainerLegacyHostRouting(t *testing.T) {
	cfg := fixtureConfig()
	cfg.HostRouting = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY)
	e := newFixtureEnv(t, "lxc-legacy", cfg)
	legacy := fromContainer("VERDICT_PASS", "PASS_LEGACY_HOST_ROUTING")
	fixtures := []testrun.Fixture{
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "local pod", Input: fromPodA(podBIP).icmpEcho(), Verdict: testrun.Pass}, legacy),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "remote pod", Input: fromPodA(remotePodIP).icmpEcho(), Verdict: testrun.Pass}, legacy),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "world", Input: fromPodA(worldIP).icmpEcho(), Verdict: testrun.Pass}, legacy),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "ttl 1", Input: setTTL(fromPodA(podBIP).icmpEcho(), 1), Verdict: testrun.Pass}, legacy),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "arp", Input: arpRequest(), Verdict: testrun.Pass}, fromContainer("VERDICT_PASS", "PASS_NOT_IPV4")),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "malformed is still dropped", Verdict: testrun.Shot,
			Input: corrupt(fromPodA(podBIP).tcpSYN(), func(b []byte) []byte { b[14] = 0x44; return b })},
			want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_BAD_IHL"}),
	}
	testrun.RunFixtures(t, e.d.FromContainer, fixtures)
}

// Tunnel mode without a tunnel protocol (TunnelNone, what the agent sets until it
// configures one) hands cross-node traffic to the stack.
func TestFromContainerTunnelModeWithoutProtocol(t *testing.T) {
	cfg := fixtureConfig()
	cfg.RoutingMode = uint32(bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL)
	e := newFixtureEnv(t, "lxc-tunnel", cfg)
	toB := fromPodA(podBIP)
	testrun.RunFixtures(t, e.d.FromContainer, []testrun.Fixture{
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "remote pod goes to the stack",
			Input: fromPodA(remotePodIP).icmpEcho(), Verdict: testrun.Pass}, fromContainer("VERDICT_PASS", "PASS_TUNNEL_MODE")),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "world goes to the stack",
			Input: fromPodA(worldIP).icmpEcho(), Verdict: testrun.Pass}, fromContainer("VERDICT_PASS", "PASS_TUNNEL_MODE")),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "a local pod is still redirected into",
			Input: toB.icmpEcho(), Output: toB.routed(lxcBMAC, podBMAC).icmpEcho(), Verdict: testrun.Redirect},
			redirectedFromContainer("VERDICT_REDIRECT_PEER", int(lxcBIfindex))),
	})
}

func TestFromContainerNativeRoutingCIDR(t *testing.T) {
	for _, tc := range []struct {
		cidr    string
		dst     netip.Addr
		verdict testrun.Verdict
		want    want
	}{
		{"10.244.2.0/24", remotePodIP, testrun.Redirect, want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_REDIRECT"}},
		{"10.244.2.0/24", noNeighPodIP, testrun.Pass, fromContainer("VERDICT_PASS", "PASS_OUTSIDE_NATIVE_CIDR")},
		{"10.244.2.77/24", remotePodIP, testrun.Redirect, want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_REDIRECT"}},
		{"10.244.2.30/32", remotePodIP, testrun.Redirect, want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_REDIRECT"}},
		{"10.244.2.31/32", remotePodIP, testrun.Pass, fromContainer("VERDICT_PASS", "PASS_OUTSIDE_NATIVE_CIDR")},
		// /0 (the zero value) covers every destination: the FIB has no route to the world here.
		{"0.0.0.0/0", worldIP, testrun.Pass, fromContainer("VERDICT_PASS", "PASS_FIB_NOT_FWDED")},
	} {
		t.Run(tc.cidr+" to "+tc.dst.String(), func(t *testing.T) {
			cfg := fixtureConfig()
			cfg.NativeRoutingCidr, cfg.NativeRoutingCidrLen = netip.MustParsePrefix(tc.cidr).Addr().As4(), uint8(netip.MustParsePrefix(tc.cidr).Bits())
			e := newFixtureEnv(t, "lxc-cidr", cfg)
			w := tc.want
			if tc.verdict == testrun.Redirect {
				w.target = uint32(e.f.eth0)
			}
			testrun.RunFixtures(t, e.d.FromContainer, []testrun.Fixture{
				e.fixture(e.f.lxc0, testrun.Fixture{Name: "run", Input: fromPodA(tc.dst).icmpEcho(), Verdict: tc.verdict, IgnoreOutput: true}, w),
			})
		})
	}
}

func TestToContainerTracesAndPasses(t *testing.T) {
	e := newFixtureEnv(t, "lxc-to", fixtureConfig())
	observed := want{obs: "OBS_TO_CONTAINER", verdict: "VERDICT_PASS"}
	toA := pktSpec{srcMAC: lxcAMAC, dstMAC: podAMAC, src: podBIP, dst: podAIP}
	testrun.RunFixtures(t, e.d.ToContainer, []testrun.Fixture{
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "icmp", Input: toA.icmpEcho(), Verdict: testrun.Next}, observed),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "arp", Input: arpRequest(), Verdict: testrun.Next}, observed),
		e.fixture(e.f.lxc0, testrun.Fixture{Name: "malformed is observed, not judged", Verdict: testrun.Next,
			Input: corrupt(toA.tcpSYN(), func(b []byte) []byte { b[14] = 0x44; return b })}, observed),
	})
}

// Monitor aggregation: medium keeps drops, redirects and exceptional passes; max
// keeps drops only; none keeps everything.
func TestDatapathMonitorAggregation(t *testing.T) {
	f := setupFibNS(t, "lxc-agg")
	inputs := []struct {
		name       string
		pkt        []byte
		exceptions bool // a redirect, a drop or an exceptional pass
		drop       bool
	}{
		{"arp", arpRequest(), false, false},
		{"gateway (not forwarded)", fromPodA(gatewayIP).icmpEcho(), false, false},
		{"world", fromPodA(worldIP).icmpEcho(), false, false},
		{"redirect peer", fromPodA(podBIP).icmpEcho(), true, false},
		{"redirect", fromPodA(remotePodIP).icmpEcho(), true, false},
		{"ttl expired", setTTL(fromPodA(podBIP).icmpEcho(), 1), true, false},
		{"unreachable", fromPodA(unreachableIP).icmpEcho(), true, false},
		{"drop", corrupt(fromPodA(podBIP).tcpSYN(), func(b []byte) []byte { b[14] = 0x44; return b }), true, true},
	}
	for _, level := range []uint32{uint32(bpfobj.LxcMonitorAggregationAGGREGATION_NONE), uint32(bpfobj.LxcMonitorAggregationAGGREGATION_LOW), uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MEDIUM), uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)} {
		cfg := fixtureConfig()
		cfg.MonitorAggregation = level
		d, rd := loadDatapath(t, cfg)
		for _, in := range inputs {
			runIn(t, f.path, d, in.pkt, f.ctx(f.lxc0))
			recs, err := rd.Drain()
			if err != nil {
				t.Fatal(err)
			}
			wantN := 1
			switch {
			case level == uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX) && !in.drop:
				wantN = 0
			case level == uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MEDIUM) && !in.exceptions:
				wantN = 0
			}
			if len(recs) != wantN {
				t.Errorf("aggregation %d, %s: want %d records, got %d", level, in.name, wantN, len(recs))
			}
		}
	}
}

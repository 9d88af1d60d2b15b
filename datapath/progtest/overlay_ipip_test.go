// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/testrun"
)

// IPIP (tunnel-protocol ipip, Calico's IPIP mode; issue 14) and tunnel-mode
// cross-subnet, on the overlay fixtures' node 1 (overlay_helpers_test.go).

// ipipMTU is the fixtures' IPIP tunnel MTU: a 1500-byte underlay less 20.
const ipipMTU = 1480

// ipipOuter describes the outer Ethernet and IPv4 headers of an IPIP packet.
type ipipOuter struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	tos            uint8
	id             uint16
	frag           uint16 // flags and fragment offset (0x4000: DF)
	ttl            uint8
	proto          uint8 // 4 unless a test says otherwise
}

// ipipEncapOuter is what node 1 writes for pod A's packet towards dst.
func ipipEncapOuter(srcMAC, dstMAC net.HardwareAddr, dst netip.Addr) ipipOuter {
	return ipipOuter{srcMAC: srcMAC, dstMAC: dstMAC, src: hostIP, dst: dst, id: 0x1234, frag: 0x4000, ttl: 64, proto: 4}
}

// ipipFromNode2 is an IPIP packet node 2 sends to node 1.
func ipipFromNode2() ipipOuter {
	return ipipOuter{srcMAC: remoteMAC, dstMAC: eth0MAC, src: node2IP, dst: hostIP, id: 0x4321, frag: 0x4000, ttl: 64, proto: 4}
}

// wrap puts the outer headers in front of inner's IPv4 packet (inner is an Ethernet
// frame: its Ethernet header is dropped, as IPIP carries none).
func (o ipipOuter) wrap(inner []byte) []byte {
	payload := inner[14:]
	b := append([]byte{}, o.dstMAC...)
	b = append(b, o.srcMAC...)
	b = append(b, 0x08, 0x00)
	ip := make([]byte, 20)
	ip[0], ip[1] = 0x45, o.tos
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(payload)))
	binary.BigEndian.PutUint16(ip[4:], o.id)
	binary.BigEndian.PutUint16(ip[6:], o.frag)
	ip[8], ip[9] = o.ttl, o.proto
	copy(ip[12:16], o.src.AsSlice())
	copy(ip[16:20], o.dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	b = append(b, ip...)
	return append(b, payload...)
}

func newIPIPEnv(t testing.TB, suffix string, mutate func(*bpfconfig.Config)) *overlayEnv {
	return newOverlayEnv(t, suffix, overlayOpts{proto: config.TunnelIPIP, mutate: func(c *bpfconfig.Config) {
		c.TunnelMtu = ipipMTU
		if mutate != nil {
			mutate(c)
		}
	}})
}

func ipipEncapRecord(verdict string, target int, endpoint netip.Addr) want {
	return encapRecord(verdict, target, "TRACE_ENCAP_IPIP", endpoint)
}

func TestIPIPEncapFixtures(t *testing.T) {
	e := newIPIPEnv(t, "ipip-encap", nil)
	f := e.f
	toRemote := fromPodA(remotePodIP)
	ce := toRemote
	ce.tos = 0xbb // DSCP 46, ECN CE
	fits, tooBig := toRemote, toRemote
	fits.payload = ipipMTU - 28 // IPv4 20 + ICMP 8: exactly the tunnel MTU
	tooBig.payload = fits.payload + 1
	tooBigNoDF := tooBig
	tooBigNoDF.noDF = true
	viaNode2 := ipipEncapOuter(eth0MAC, gw2MAC, node2IP)
	ceOuter := viaNode2
	ceOuter.tos = 0x02
	tunPass := func(reason string, endpoint netip.Addr) want {
		return want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_PASS", pass: reason, tunnel: "TRACE_ENCAP_IPIP",
			identity: podAIdentity, endpoint: endpoint}
	}

	var fixtures []testrun.Fixture
	for _, c := range []struct {
		name    string
		in      pktSpec
		build   func(pktSpec) []byte
		outer   ipipOuter
		verdict string
		ep      netip.Addr
	}{
		{"icmp to a remote pod: outer IPv4 protocol 4", toRemote, pktSpec.icmpEcho, viaNode2, "VERDICT_REDIRECT", node2IP},
		{"tcp to a remote pod", toRemote, pktSpec.tcpSYN, viaNode2, "VERDICT_REDIRECT", node2IP},
		{"udp to a remote pod", toRemote, pktSpec.udp, viaNode2, "VERDICT_REDIRECT", node2IP},
		{"exactly the ipip tunnel mtu (1480)", fits, pktSpec.icmpEcho, viaNode2, "VERDICT_REDIRECT", node2IP},
		{"inner CE becomes outer ECT(0), DSCP not copied", ce, pktSpec.icmpEcho, ceOuter, "VERDICT_REDIRECT", node2IP},
		{"endpoint without neighbour: redirect_neigh, the pod's MACs stay outside", fromPodA(noNeighPodIP), pktSpec.icmpEcho,
			ipipEncapOuter(podAMAC, lxcAMAC, node3IP), "VERDICT_REDIRECT_NEIGH", node3IP},
	} {
		routed := c.in
		routed.ttl = 63
		fixtures = append(fixtures, e.fixture(f.lxc0, testrun.Fixture{
			Name: c.name, Input: c.build(c.in), Verdict: testrun.Redirect, Output: c.outer.wrap(c.build(routed)),
		}, ipipEncapRecord(c.verdict, f.eth0, c.ep)))
	}
	fixtures = append(fixtures,
		e.fixture(f.lxc0, testrun.Fixture{Name: "tunnel endpoint not in the nodes map", Verdict: testrun.Shot,
			Input: fromPodA(strangerPodIP).icmpEcho()},
			want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_UNKNOWN_TUNNEL_ENDPOINT",
				tunnel: "TRACE_ENCAP_IPIP", identity: podAIdentity, endpoint: strangerIP}),
		e.fixture(f.lxc0, testrun.Fixture{Name: "DF and one byte over the ipip mtu: the stack answers frag-needed",
			Verdict: testrun.Pass, Input: tooBig.icmpEcho()}, tunPass("PASS_FRAG_NEEDED_TUNNEL", node2IP)),
		e.fixture(f.lxc0, testrun.Fixture{Name: "no DF and over the ipip mtu: the stack fragments",
			Verdict: testrun.Pass, Input: tooBigNoDF.icmpEcho()}, tunPass("PASS_FRAGMENT_TUNNEL", node2IP)),
		e.fixture(f.lxc0, testrun.Fixture{Name: "ttl 1 goes to the stack for time exceeded", Verdict: testrun.Pass,
			Input: setTTL(toRemote.icmpEcho(), 1)}, tunPass("PASS_TTL_EXPIRED", node2IP)),
		e.fixture(f.lxc0, testrun.Fixture{Name: "underlay route to the endpoint unreachable: unchanged to the stack",
			Verdict: testrun.Pass, Input: fromPodA(farPodIP).icmpEcho()}, tunPass("PASS_FIB_UNREACHABLE", farNodeIP)),
	)
	testrun.RunFixtures(t, e.d.FromContainer, fixtures)
}

// A GSO packet fits the IPIP tunnel when each segment does (1480 - headers).
func TestIPIPTunnelMTUOfGSOPackets(t *testing.T) {
	e := newIPIPEnv(t, "ipip-gso", nil)
	big := fromPodA(remotePodIP)
	big.payload = 2800
	for _, c := range []struct {
		name    string
		pkt     []byte
		gsoSize uint32
	}{
		{"tcp segments one byte over 1480", big.tcpSYN(), ipipMTU - 40 + 1},
		{"udp segments one byte over 1480", big.udp(), ipipMTU - 28 + 1},
	} {
		res := runInNS(t, e.f.path, e.d.FromContainer, c.pkt, gsoContext(t, e.f.lxc0, c.gsoSize, 3))
		recs, err := e.rd.Drain()
		if err != nil || len(recs) != 1 {
			t.Fatalf("%s: want 1 record, got %d (%v)", c.name, len(recs), err)
		}
		n := names(t)
		got := n.Verdict(recs[0].Verdict) + " " + n.PassReason(recs[0].PassReason)
		if want := "VERDICT_PASS PASS_FRAG_NEEDED_TUNNEL"; got != want || res.Verdict != testrun.Pass {
			t.Errorf("%s: want %s, got %s (%s)", c.name, want, got, res.Verdict)
		}
	}
}

func ipipDecapRecord(verdict, drop, pass string, target uint32, endpoint netip.Addr, identity uint32) want {
	return want{obs: "OBS_FROM_NETDEV", verdict: verdict, drop: drop, pass: pass, target: target,
		tunnel: "TRACE_DECAP_IPIP", identity: identity, endpoint: endpoint}
}

func TestIPIPDecapFixtures(t *testing.T) {
	e := newIPIPEnv(t, "ipip-decap", nil)
	f := e.f
	inner := remotePodToB()
	delivered := inner.routed(lxcBMAC, podBMAC)
	good := ipipFromNode2()
	// IPIP carries no identity: the records say 0.
	const remoteCIDRIdentity = 0
	dropped := func(reason string) want {
		return ipipDecapRecord("VERDICT_DROP", reason, "", 0, node2IP, remoteCIDRIdentity)
	}
	mod := func(m func(*ipipOuter)) ipipOuter {
		o := ipipFromNode2()
		m(&o)
		return o
	}
	ceOuter := mod(func(o *ipipOuter) { o.tos = 0x03 })
	ectInner := inner
	ectInner.tos = 0x02
	ceDelivered := delivered
	ceDelivered.tos = 0x03
	// The outer header followed by fewer than 20 bytes, and by an IPv6-looking header.
	truncated := good.wrap(inner.icmpEcho()[:14+12])
	notV4 := corrupt(good.wrap(inner.icmpEcho()), func(b []byte) []byte { b[34] = 0x65; return b })
	badIHL := corrupt(good.wrap(inner.icmpEcho()), func(b []byte) []byte { b[34] = 0x43; return b })
	stranger := mod(func(o *ipipOuter) { o.src = strangerIP })

	fixtures := []testrun.Fixture{
		e.fixture(f.eth0, testrun.Fixture{Name: "icmp for pod B: decapsulated and delivered",
			Input: good.wrap(inner.icmpEcho()), Verdict: testrun.Redirect, Output: delivered.icmpEcho()},
			ipipDecapRecord("VERDICT_REDIRECT_PEER", "", "", lxcBIfindex, node2IP, remoteCIDRIdentity)),
		e.fixture(f.eth0, testrun.Fixture{Name: "tcp for pod B", Input: good.wrap(inner.tcpSYN()),
			Verdict: testrun.Redirect, Output: delivered.tcpSYN()},
			ipipDecapRecord("VERDICT_REDIRECT_PEER", "", "", lxcBIfindex, node2IP, remoteCIDRIdentity)),
		e.fixture(f.eth0, testrun.Fixture{Name: "udp for pod B", Input: good.wrap(inner.udp()),
			Verdict: testrun.Redirect, Output: delivered.udp()},
			ipipDecapRecord("VERDICT_REDIRECT_PEER", "", "", lxcBIfindex, node2IP, remoteCIDRIdentity)),
		e.fixture(f.eth0, testrun.Fixture{Name: "outer CE marks an ECN-capable inner packet",
			Input: ceOuter.wrap(ectInner.icmpEcho()), Verdict: testrun.Redirect, Output: ceDelivered.icmpEcho()},
			ipipDecapRecord("VERDICT_REDIRECT_PEER", "", "", lxcBIfindex, node2IP, remoteCIDRIdentity)),
		e.fixture(f.eth0, testrun.Fixture{Name: "outer CE on a not-ECT inner packet", Verdict: testrun.Shot,
			Input: ceOuter.wrap(inner.icmpEcho())}, dropped("DROP_TUNNEL_ECN")),
		e.fixture(f.eth0, testrun.Fixture{Name: "outer source no node of the cluster", Verdict: testrun.Shot,
			Input: stranger.wrap(inner.icmpEcho())},
			ipipDecapRecord("VERDICT_DROP", "DROP_IPIP_UNKNOWN_PEER", "", 0, strangerIP, remoteCIDRIdentity)),
		e.fixture(f.eth0, testrun.Fixture{Name: "payload shorter than an IPv4 header", Verdict: testrun.Shot,
			Input: truncated}, ipipDecapRecord("VERDICT_DROP", "DROP_IPIP_TRUNCATED_INNER", "", 0, node2IP, 0)),
		e.fixture(f.eth0, testrun.Fixture{Name: "payload is not IPv4", Verdict: testrun.Shot,
			Input: notV4}, ipipDecapRecord("VERDICT_DROP", "DROP_IPIP_INNER_NOT_IPV4", "", 0, node2IP, 0)),
		e.fixture(f.eth0, testrun.Fixture{Name: "inner IHL 3", Verdict: testrun.Shot, Input: badIHL},
			dropped("DROP_BAD_IHL")),
		e.fixture(f.eth0, testrun.Fixture{Name: "an outer fragment", Verdict: testrun.Shot,
			Input: mod(func(o *ipipOuter) { o.frag = 0x2000 }).wrap(inner.icmpEcho())},
			ipipDecapRecord("VERDICT_DROP", "DROP_TUNNEL_FRAGMENT", "", 0, node2IP, 0)),
		e.fixture(f.eth0, testrun.Fixture{Name: "inner destination not on this node", Verdict: testrun.Shot,
			Input: good.wrap(pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: localNoEPIP}.icmpEcho())},
			dropped("DROP_TUNNEL_WRONG_NODE")),
		e.fixture(f.eth0, testrun.Fixture{Name: "ipip for another address is not decapsulated", Verdict: testrun.Next,
			Input: mod(func(o *ipipOuter) { o.dst = node3IP }).wrap(inner.icmpEcho())},
			fromNetdev("VERDICT_PASS", "PASS_NOT_ENDPOINT")),
	}
	testrun.RunFixtures(t, e.d.FromNetdev, fixtures)
}

// TestCrossSubnet: with tunnel-mode cross-subnet, a peer inside node 1's own subnet
// (node_subnet_len of 192.168.50.1) is reached natively through the FIB, one outside
// it through the tunnel; always tunnels both. Run for every protocol.
func TestCrossSubnet(t *testing.T) {
	toRemote := fromPodA(remotePodIP) // node 2, 192.168.50.2
	native := toRemote.routed(eth0MAC, gw2MAC).icmpEcho()
	for _, proto := range []config.TunnelProtocol{config.TunnelIPIP, config.TunnelGeneve, config.TunnelVXLAN} {
		for _, c := range []struct {
			name    string
			mode    bpfconfig.TunnelMode
			bits    uint8
			native  bool
			verdict testrun.Verdict
		}{
			{"cross-subnet, node 2 inside 192.168.50.0/30: native", bpfconfig.TunnelModeCrossSubnet, 30, true, testrun.Redirect},
			{"cross-subnet, node 2 outside 192.168.50.0/31: tunnelled", bpfconfig.TunnelModeCrossSubnet, 31, false, testrun.Redirect},
			{"always, node 2 inside the /24: tunnelled", bpfconfig.TunnelModeAlways, 24, false, testrun.Redirect},
		} {
			t.Run(string(proto)+"/"+c.name, func(t *testing.T) {
				e := newOverlayEnv(t, "xs-"+string(proto)[:2], overlayOpts{proto: proto, mutate: func(cfg *bpfconfig.Config) {
					cfg.TunnelMode, cfg.NodeSubnetLen = uint8(c.mode), c.bits
				}})
				res := runInNS(t, e.f.path, e.d.FromContainer, toRemote.icmpEcho(), e.f.ctx(e.f.lxc0))
				recs, err := e.rd.Drain()
				if err != nil || len(recs) != 1 {
					t.Fatalf("want 1 record, got %d (%v)", len(recs), err)
				}
				n := names(t)
				tun := n.Tunnel(recs[0].Tunnel)
				if res.Verdict != c.verdict {
					t.Fatalf("verdict %s, want %s", res.Verdict, c.verdict)
				}
				switch {
				case c.native && (string(res.Out) != string(native) || recs[0].Tunnel != 0):
					t.Errorf("want the packet routed natively (%d bytes, no tunnel), got %d bytes, tunnel %s", len(native), len(res.Out), tun)
				case !c.native && (string(res.Out) == string(native) || recs[0].Tunnel == 0):
					t.Errorf("want the packet handed to the tunnel (not the native frame, a tunnel record), got %d bytes, tunnel %s", len(res.Out), tun)
				}
			})
		}
	}
}

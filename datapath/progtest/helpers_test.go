// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// nsName is the name of a test namespace: pptest-dp-<pid>-<suffix>.
func nsName(suffix string) string { return fmt.Sprintf("pptest-dp-%d-%s", os.Getpid(), suffix) }

// ovName is the name of an overlay test's namespace: pptest-ov-<pid>-<suffix>.
func ovName(suffix string) string { return fmt.Sprintf("pptest-ov-%d-%s", os.Getpid(), suffix) }

// newNS creates the namespace nsName(suffix), deleted when the test ends.
func newNS(tb testing.TB, suffix string) string {
	tb.Helper()
	return testrun.NewNetns(tb, nsName(suffix))
}

// sysctls writes /proc/sys keys (net/ipv4/ip_forward) inside the namespace.
func sysctls(tb testing.TB, ns string, kv ...string) {
	tb.Helper()
	err := nsutil.Do(nsutil.Path(ns), func() error {
		for i := 0; i+1 < len(kv); i += 2 {
			if err := os.WriteFile(filepath.Join("/proc/sys", kv[i]), []byte(kv[i+1]), 0o644); err != nil {
				return fmt.Errorf("sysctl %s=%s: %w", kv[i], kv[i+1], err)
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// routerSysctls are what the topology sets on a node: forwarding on, rp_filter off.
func routerSysctls(tb testing.TB, ns string) {
	sysctls(tb, ns, "net/ipv4/ip_forward", "1",
		"net/ipv4/conf/all/rp_filter", "0", "net/ipv4/conf/default/rp_filter", "0")
}

// vethInNS creates a veth pair with both ends in the handle's namespace, both up.
func vethInNS(tb testing.TB, h *netlink.Handle, name, peer string, mac net.HardwareAddr) netlink.Link {
	tb.Helper()
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr, la.Flags = name, mac, net.FlagUp
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peer}); err != nil {
		tb.Fatalf("add veth %s/%s: %v", name, peer, err)
	}
	for _, n := range []string{name, peer} {
		l, err := h.LinkByName(n)
		if err != nil {
			tb.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			tb.Fatal(err)
		}
	}
	l, err := h.LinkByName(name)
	if err != nil {
		tb.Fatal(err)
	}
	return l
}

func addAddr(tb testing.TB, h *netlink.Handle, l netlink.Link, cidr string) {
	tb.Helper()
	a, err := netlink.ParseAddr(cidr)
	if err != nil {
		tb.Fatal(err)
	}
	if err := h.AddrAdd(l, a); err != nil {
		tb.Fatalf("add %s to %s: %v", cidr, l.Attrs().Name, err)
	}
}

func addRoute(tb testing.TB, h *netlink.Handle, r *netlink.Route) {
	tb.Helper()
	if err := h.RouteAdd(r); err != nil {
		tb.Fatalf("add route %s: %v", r, err)
	}
}

func netipPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func ipnet(cidr string) *net.IPNet {
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		panic(err)
	}
	return n
}

func mustMAC(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

// Small maps keep the many loads of a test run cheap.
var testSizes = loader.MapSizes{Endpoints: 64, IPCache: 64, Nodes: 16, TraceEvents: 1 << 16,
	LBServices: 64, LBBackendSlots: 256, LBBackends: 64, LBRevNat: 64, LBMaglev: 16, CTTCP: 256, CTAny: 256, SNAT: 256}

// The cluster the fixtures describe: node 1 owns 10.244.1.0/24 (gateway .1), pods A
// and B live on it; node 2 owns 10.244.2.0/24; the native-routing CIDR is
// 10.244.0.0/16; the underlay is 192.168.50.0/24.
var (
	podAIP, podBIP = netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.20")
	remotePodIP    = netip.MustParseAddr("10.244.2.30")  // node 2, neighbour known
	noNeighPodIP   = netip.MustParseAddr("10.244.3.30")  // via a gateway without neighbour entry
	unreachableIP  = netip.MustParseAddr("10.244.5.5")   // unreachable route
	blackholeIP    = netip.MustParseAddr("10.244.6.6")   // blackhole route
	prohibitIP     = netip.MustParseAddr("10.244.7.7")   // prohibit route
	noRouteIP      = netip.MustParseAddr("10.244.9.9")   // in the CIDR, no route at all
	lwtIP          = netip.MustParseAddr("10.244.8.8")   // route with lwt encap
	gatewayIP      = netip.MustParseAddr("10.244.1.1")   // node 1's pod gateway, on lo, not an endpoint
	hostIP         = netip.MustParseAddr("192.168.50.1") // node 1's underlay address, a host endpoint
	worldIP        = netip.MustParseAddr("8.8.8.8")      // outside the native-routing CIDR
	podAMAC        = mustMAC("02:00:00:00:01:0a")
	podBMAC        = mustMAC("02:00:00:00:01:14")
	lxcAMAC        = mustMAC("02:00:00:00:aa:0a")
	lxcBMAC        = mustMAC("02:00:00:00:aa:14")
	eth0MAC        = mustMAC("02:00:00:00:50:01")
	gw2MAC         = mustMAC("02:00:00:00:50:02")
	remoteMAC      = mustMAC("02:00:00:00:99:99") // some router's MAC on the underlay
	lxcBIfindex    = uint32(4242)                 // pod B's host veth as the map says
	nativeCIDR     = netip.MustParsePrefix("10.244.0.0/16")
	fixtureNodeID  = uint32(42)
	podBEndpoint   = maps.Endpoint{IP: podBIP, Ifindex: lxcBIfindex, MAC: podBMAC, HostMAC: lxcBMAC, Identity: 1001}
	hostEndpoint   = maps.Endpoint{IP: hostIP, Flags: maps.EndpointHost, Identity: 1}
)

// fibNS is the namespace the fixtures run in: what node 1 looks like to
// bpf_fib_lookup.
type fibNS struct {
	name     string
	path     string
	lxc0     int // pod A's host veth: the ingress device of from_container
	lxc1     int // a host veth with forwarding disabled
	eth0     int // the underlay NIC
	lwtRoute bool
}

// setupFibNS builds node 1 in a namespace:
//
//	lo:   10.244.1.1/32 (pod gateway)
//	lxc0, lxc1 (forwarding=0): host veths (peers lxc0p, lxc1p in the same namespace)
//	eth0: 192.168.50.1/24, MTU 1500 (peer eth0p without address)
//	10.244.2.0/24 via 192.168.50.2 (permanent neighbour 02:00:00:00:50:02)
//	10.244.3.0/24 via 192.168.50.3 (no neighbour)
//	unreachable 10.244.5.0/24, blackhole 10.244.6.0/24, prohibit 10.244.7.0/24
//	10.244.8.0/24 encap bpf (lwt) dev eth0, when the kernel has LWT BPF
func setupFibNS(tb testing.TB, suffix string) *fibNS {
	tb.Helper()
	return setupNamedFibNS(tb, nsName(suffix))
}

// setupNamedFibNS is setupFibNS in the namespace name.
func setupNamedFibNS(tb testing.TB, name string) *fibNS {
	tb.Helper()
	testutil.RequireRoot(tb)
	name = testrun.NewNetns(tb, name)
	h := testrun.NetlinkAt(tb, name)
	routerSysctls(tb, name)
	f := &fibNS{name: name, path: nsutil.Path(name)}
	f.lxc0 = vethInNS(tb, h, "lxc0", "lxc0p", lxcAMAC).Attrs().Index
	f.lxc1 = vethInNS(tb, h, "lxc1", "lxc1p", nil).Attrs().Index
	eth0 := vethInNS(tb, h, "eth0", "eth0p", eth0MAC)
	f.eth0 = eth0.Attrs().Index
	sysctls(tb, name, "net/ipv4/conf/lxc1/forwarding", "0")
	lo, err := h.LinkByName("lo")
	if err != nil {
		tb.Fatal(err)
	}
	addAddr(tb, h, lo, "10.244.1.1/32")
	addAddr(tb, h, eth0, "192.168.50.1/24")
	addRoute(tb, h, &netlink.Route{Dst: ipnet("10.244.2.0/24"), Gw: net.ParseIP("192.168.50.2"), LinkIndex: f.eth0})
	addRoute(tb, h, &netlink.Route{Dst: ipnet("10.244.3.0/24"), Gw: net.ParseIP("192.168.50.3"), LinkIndex: f.eth0})
	addRoute(tb, h, &netlink.Route{Dst: ipnet("10.244.5.0/24"), Type: unix.RTN_UNREACHABLE})
	addRoute(tb, h, &netlink.Route{Dst: ipnet("10.244.6.0/24"), Type: unix.RTN_BLACKHOLE})
	addRoute(tb, h, &netlink.Route{Dst: ipnet("10.244.7.0/24"), Type: unix.RTN_PROHIBIT})
	if err := h.NeighAdd(&netlink.Neigh{
		LinkIndex: f.eth0, IP: net.ParseIP("192.168.50.2"), HardwareAddr: gw2MAC,
		State: netlink.NUD_PERMANENT, Family: unix.AF_INET,
	}); err != nil {
		tb.Fatalf("add neighbour: %v", err)
	}
	f.lwtRoute = addLWTRoute(tb, h, f.eth0)
	return f
}

// ctx is the test-run context of a packet arriving on dev.
func (f *fibNS) ctx(dev int) *testrun.SkbContext {
	return &testrun.SkbContext{Ifindex: uint32(dev), IngressIfindex: uint32(dev)}
}

// fixtureSettings are the cilium-config settings of fixtureConfig.
func fixtureSettings() *config.Config {
	c := config.Default()
	c.RoutingMode, c.NativeRoutingCIDR = config.RoutingNative, nativeCIDR
	return c
}

// fixtureConfig is node 1 with BPF host routing, native routing, every packet traced.
func fixtureConfig() bpfconfig.Config {
	cfg, err := bpfconfig.Build(fixtureSettings(), bpfconfig.Node{ID: fixtureNodeID, IP: hostIP})
	if err != nil {
		panic(err)
	}
	return cfg
}

// newDatapath loads bpf_lxc, bpf_host and bpf_overlay with cfg and opts (map sizes
// testSizes unless given), closed when the test ends: the one constructor of every
// datapath the tests load.
func newDatapath(tb testing.TB, cfg bpfconfig.Config, opts loader.Options) *loader.Datapath {
	tb.Helper()
	testutil.RequireRoot(tb)
	if opts.MapSizes == (loader.MapSizes{}) {
		opts.MapSizes = testSizes
	}
	d, err := loader.LoadDatapath(cfg, &opts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

// upsertEndpoints programs eps into the endpoints map.
func upsertEndpoints(tb testing.TB, m *maps.Maps, eps ...maps.Endpoint) {
	tb.Helper()
	for _, ep := range eps {
		if err := m.EndpointUpsert(ep); err != nil {
			tb.Fatal(err)
		}
	}
}

// traceReader reads d's trace ring buffer, closed when the test ends.
func traceReader(tb testing.TB, d *loader.Datapath) *trace.Reader {
	tb.Helper()
	rd, err := trace.NewReader(d.TraceEvents)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { rd.Close() })
	return rd
}

// loadDatapath loads the objects unpinned, with the fixture endpoints programmed.
func loadDatapath(tb testing.TB, cfg bpfconfig.Config) (*loader.Datapath, *trace.Reader) {
	tb.Helper()
	d := newDatapath(tb, cfg, loader.Options{})
	upsertEndpoints(tb, d.Maps, podBEndpoint, hostEndpoint)
	return d, traceReader(tb, d)
}

// Packets. frame builds Ethernet + IPv4 + l4 with lengths and checksums computed.
type pktSpec struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	ttl            uint8
	payload        int   // bytes after the L4 header
	noDF           bool  // clear DF (set by default)
	tos            uint8 // IPv4 TOS (DSCP and ECN)
}

func (p pktSpec) ip(proto layers.IPProtocol) *layers.IPv4 {
	ttl := p.ttl
	if ttl == 0 {
		ttl = 64
	}
	flags := layers.IPv4DontFragment
	if p.noDF {
		flags = 0
	}
	return &layers.IPv4{Version: 4, IHL: 5, TOS: p.tos, TTL: ttl, Id: 0x1234, Flags: flags,
		Protocol: proto, SrcIP: p.src.AsSlice(), DstIP: p.dst.AsSlice()}
}

func (p pktSpec) eth() *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: p.srcMAC, DstMAC: p.dstMAC, EthernetType: layers.EthernetTypeIPv4}
}

func (p pktSpec) icmpEcho() []byte {
	return testrun.MustBuild(p.eth(), p.ip(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1},
		gopacket.Payload(make([]byte, max(p.payload, 56))))
}

func (p pktSpec) tcpSYN() []byte {
	return testrun.MustBuild(p.eth(), p.ip(layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 64240, Seq: 1},
		gopacket.Payload(make([]byte, p.payload)))
}

func (p pktSpec) udp() []byte {
	return testrun.MustBuild(p.eth(), p.ip(layers.IPProtocolUDP),
		&layers.UDP{SrcPort: 5353, DstPort: 53}, gopacket.Payload(make([]byte, max(p.payload, 8))))
}

// routed is p as a router forwards it: new MACs, TTL - 1.
func (p pktSpec) routed(src, dst net.HardwareAddr) pktSpec {
	p.srcMAC, p.dstMAC = src, dst
	if p.ttl == 0 {
		p.ttl = 64
	}
	p.ttl--
	return p
}

// fromPodA is a packet pod A sends to its gateway MAC for dst.
func fromPodA(dst netip.Addr) pktSpec {
	return pktSpec{srcMAC: podAMAC, dstMAC: lxcAMAC, src: podAIP, dst: dst}
}

// fromUnderlay is a packet node 1's NIC receives from a router, for dst.
func fromUnderlay(dst netip.Addr) pktSpec {
	return pktSpec{srcMAC: remoteMAC, dstMAC: eth0MAC, src: remotePodIP, dst: dst}
}

func arpRequest() []byte {
	return testrun.MustBuild(&layers.Ethernet{SrcMAC: podAMAC, DstMAC: layers.EthernetBroadcast, EthernetType: layers.EthernetTypeARP},
		&layers.ARP{AddrType: 1, Protocol: 0x0800, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1,
			SourceHwAddress: podAMAC, SourceProtAddress: podAIP.AsSlice(), DstHwAddress: make([]byte, 6), DstProtAddress: gatewayIP.AsSlice()})
}

func ipv6Packet() []byte {
	ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
		SrcIP: net.ParseIP("fd00::a"), DstIP: net.ParseIP("fd00::b")}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	_ = udp.SetNetworkLayerForChecksum(ip6)
	return testrun.MustBuild(&layers.Ethernet{SrcMAC: podAMAC, DstMAC: lxcAMAC, EthernetType: layers.EthernetTypeIPv6},
		ip6, udp, gopacket.Payload(make([]byte, 8)))
}

// malformed are IPv4 frames every program must drop, with the reason it must give.
func malformed(good []byte) []struct {
	name, reason string
	pkt          []byte
} {
	tcp := fromPodA(podBIP).tcpSYN()
	udp := fromPodA(podBIP).udp()
	icmp := fromPodA(podBIP).icmpEcho()
	return []struct {
		name, reason string
		pkt          []byte
	}{
		{"ihl below 5", "DROP_BAD_IHL", corrupt(good, func(b []byte) []byte { b[14] = 0x44; return b })},
		{"ihl beyond the frame", "DROP_TRUNCATED_IPV4", corrupt(good, func(b []byte) []byte { b[14] = 0x4f; return b[:14+40] })},
		{"version 6 in an IPv4 ethertype", "DROP_BAD_IP_VERSION", corrupt(good, func(b []byte) []byte { b[14] = 0x65; return b })},
		{"total length beyond the frame", "DROP_BAD_TOTAL_LEN", corrupt(good, func(b []byte) []byte { b[16], b[17] = 0x05, 0xdc; return b })},
		{"total length shorter than the header", "DROP_BAD_TOTAL_LEN", corrupt(good, func(b []byte) []byte { b[16], b[17] = 0, 19; return b })},
		{"tcp header cut short", "DROP_TRUNCATED_L4", corrupt(tcp, func(b []byte) []byte { b[16], b[17] = 0, 30; return b[:14+30] })},
		{"udp header cut short", "DROP_TRUNCATED_L4", corrupt(udp, func(b []byte) []byte { b[16], b[17] = 0, 24; return b[:14+24] })},
		{"icmp header cut short", "DROP_TRUNCATED_L4", corrupt(icmp, func(b []byte) []byte { b[16], b[17] = 0, 23; return b[:14+23] })},
		// The frame holds a whole TCP header, but past the IPv4 total length (where
		// Ethernet padding would be): it is no header.
		{"tcp header past the total length", "DROP_TRUNCATED_L4", corrupt(tcp, func(b []byte) []byte {
			b[16], b[17] = 0, 29
			sum := ipChecksum(b[14:34])
			b[24], b[25] = byte(sum>>8), byte(sum)
			return b
		})},
	}
}

// want is what one trace record must say. Tunnel records also say which tunnel
// (TRACE_ENCAP_GENEVE, ...), the source identity and the remote node.
type want struct {
	obs, verdict, drop, pass string
	ifindex, target          uint32
	tunnel                   string
	identity                 uint32
	endpoint                 netip.Addr
}

// oneRecord drains the ring buffer, which must hold exactly one record; otherwise the
// test fails after logging the records it held.
func oneRecord(t *testing.T, rd *trace.Reader) trace.Record {
	t.Helper()
	recs, err := rd.Drain()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 {
		n := names(t)
		for _, r := range recs {
			t.Log(n.Format(r))
		}
		t.Fatalf("want 1 trace record, got %d", len(recs))
	}
	return recs[0]
}

// expectRecord drains the ring buffer and checks it holds exactly one record as w says.
func expectRecord(t *testing.T, rd *trace.Reader, w want) trace.Record {
	t.Helper()
	n := names(t)
	r := oneRecord(t, rd)
	if w.drop == "" {
		w.drop = "DROP_NONE"
	}
	if w.pass == "" {
		w.pass = "PASS_NONE"
	}
	got := want{
		obs: n.ObsPoint(r.ObsPoint), verdict: n.Verdict(r.Verdict), drop: n.DropReason(r.DropReason),
		pass: n.PassReason(r.PassReason), ifindex: r.Ifindex, target: r.TargetIfindex,
		identity: r.SrcIdentity, endpoint: r.TunnelEndpoint,
	}
	if r.Tunnel != 0 {
		got.tunnel = n.Tunnel(r.Tunnel)
	}
	if got != w {
		t.Errorf("trace record:\nwant %+v\ngot  %+v\n(%s)", w, got, n.Format(r))
	}
	if r.NodeID != fixtureNodeID {
		t.Errorf("trace node id: want %d, got %d", fixtureNodeID, r.NodeID)
	}
	return r
}

// lwtProgram is an LWT xmit program that passes everything: enough for a route with
// `encap bpf`, which bpf_fib_lookup reports as UNSUPP_LWT.
func addLWTRoute(tb testing.TB, h *netlink.Handle, eth0 int) bool {
	tb.Helper()
	prog, err := lwtPassProgram()
	if err != nil {
		tb.Logf("no LWT BPF program (%v): the UNSUPP_LWT fixture is skipped", err)
		return false
	}
	tb.Cleanup(func() { prog.Close() })
	encap := &netlink.BpfEncap{}
	if err := encap.SetProg(nl.LWT_BPF_XMIT, prog.FD(), "pptest_lwt"); err != nil {
		tb.Fatal(err)
	}
	r := &netlink.Route{Dst: ipnet("10.244.8.0/24"), LinkIndex: eth0, Encap: encap}
	if err := h.RouteAdd(r); err != nil {
		tb.Logf("kernel refused an encap bpf route (%v): the UNSUPP_LWT fixture is skipped", err)
		return false
	}
	return true
}

func lwtPassProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "pptest_lwt", Type: ebpf.LWTXmit, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()},
	})
}

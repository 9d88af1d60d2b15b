// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// testNode is a node namespace plumbed as the topology package does it, with the
// datapath loaded (maps pinned in its own bpffs folder) and an nftables counter in
// its inet forward chain.
type testNode struct {
	name string
	h    *netlink.Handle
	gw   netip.Addr
	d    *loader.Datapath
	rd   *trace.Reader   // nil when rb reads the ring buffer
	rb   *ringbuf.Reader // raw records (LB tests), nil otherwise
	// podNS names the namespace of a pod from its suffix (nil: nsName).
	podNS func(suffix string) string
}

type testPod struct {
	ns  string
	ip  netip.Addr
	mac net.HardwareAddr
	lxc netlink.Link // host-side veth, in the node
}

func newTestNode(t *testing.T, suffix string, gw netip.Addr, cfg bpfconfig.Config, bpffs string) *testNode {
	t.Helper()
	return newTestNodeIn(t, newNS(t, suffix), suffix, gw, cfg, bpffs, false)
}

// newTestNodeIn builds the node in the namespace name (created by the caller) with
// its datapath loaded, maps pinned under bpffs/suffix; rawTrace reads the ring buffer
// with a raw reader (testNode.rb) instead of a trace.Reader.
func newTestNodeIn(t *testing.T, name, suffix string, gw netip.Addr, cfg bpfconfig.Config, bpffs string, rawTrace bool) *testNode {
	t.Helper()
	n := plumbNode(t, name, gw)
	n.load(t, cfg, filepath.Join(bpffs, suffix), loader.MapSizes{}, rawTrace)
	return n
}

// plumbNode makes the namespace name (created by the caller) a node as the topology
// package does: forwarding on, rp_filter off, arp_ignore 0, the pod gateway gw on lo,
// and an nftables counter in its inet forward chain. Its datapath is loaded by load:
// the devices its config names (cilium_vxlan) come first.
func plumbNode(t *testing.T, name string, gw netip.Addr) *testNode {
	t.Helper()
	n := &testNode{name: name, h: testrun.NetlinkAt(t, name), gw: gw}
	routerSysctls(t, name)
	sysctls(t, name, "net/ipv4/conf/all/arp_ignore", "0", "net/ipv4/conf/default/arp_ignore", "0")
	lo, err := n.h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, n.h, lo, gw.String()+"/32")
	n.nft(t, "-f", "-", `table inet pptest {
	chain forward {
		type filter hook forward priority filter; policy accept;
		counter
	}
}`)
	return n
}

// load loads cfg into the node, its maps pinned in the new folder pin (sizes: testSizes
// unless given), and opens its trace reader: raw (testNode.rb) with rawTrace, a
// trace.Reader (testNode.rd) otherwise.
func (n *testNode) load(t *testing.T, cfg bpfconfig.Config, pin string, sizes loader.MapSizes, rawTrace bool) {
	t.Helper()
	if err := os.Mkdir(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	n.d = newDatapath(t, cfg, loader.Options{PinPath: pin, MapSizes: sizes})
	if !rawTrace {
		n.rd = traceReader(t, n.d)
		return
	}
	var err error
	n.rb, err = ringbuf.NewReader(n.d.TraceEvents)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.rb.Close() })
}

// nft runs nft inside the node; the last argument is its standard input when the
// first is "-f".
func (n *testNode) nft(t *testing.T, args ...string) string {
	t.Helper()
	var out []byte
	err := nsutil.Do(nsutil.Path(n.name), func() error {
		cmd := exec.Command("nft", args...)
		if len(args) == 3 && args[0] == "-f" {
			cmd = exec.Command("nft", "-f", "-")
			cmd.Stdin = strings.NewReader(args[2])
		}
		var err error
		out, err = cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("nft %v: %w\n%s", args, err, out)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

var counterRE = regexp.MustCompile(`counter packets (\d+)`)

// forwarded is the packet count of the node's inet forward chain.
func (n *testNode) forwarded(t *testing.T) uint64 {
	t.Helper()
	out := n.nft(t, "list", "chain", "inet", "pptest", "forward")
	m := counterRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter in:\n%s", out)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

// addPod creates a pod as topology/pods.go does: eth0 born in the pod namespace with
// ip/32 and a default route via the gateway onlink; the host veth in the node with a
// /32 route to the pod. The pod is then programmed into the endpoints map.
func (n *testNode) addPod(t *testing.T, suffix, lxcName string, ip netip.Addr, mac, lxcMAC net.HardwareAddr) testPod {
	t.Helper()
	name := nsName(suffix)
	if n.podNS != nil {
		name = n.podNS(suffix)
	}
	p := testPod{ns: testrun.NewNetns(t, name), ip: ip, mac: mac}
	ph := testrun.NetlinkAt(t, p.ns)
	fd, err := netns.GetFromPath(nsutil.Path(p.ns))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr, la.Flags = lxcName, lxcMAC, net.FlagUp
	if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(fd), PeerHardwareAddr: mac}); err != nil {
		t.Fatalf("add veth %s: %v", lxcName, err)
	}
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, ph, eth0, ip.String()+"/32")
	if err := ph.LinkSetUp(eth0); err != nil {
		t.Fatal(err)
	}
	addRoute(t, ph, &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: n.gw.AsSlice(), Flags: int(netlink.FLAG_ONLINK)})
	if p.lxc, err = n.h.LinkByName(lxcName); err != nil {
		t.Fatal(err)
	}
	if err := n.h.LinkSetUp(p.lxc); err != nil {
		t.Fatal(err)
	}
	addRoute(t, n.h, &netlink.Route{LinkIndex: p.lxc.Attrs().Index, Dst: ipnet(ip.String() + "/32"), Scope: netlink.SCOPE_LINK})
	if err := n.d.Maps.EndpointUpsert(maps.Endpoint{
		IP: ip, Ifindex: uint32(p.lxc.Attrs().Index), MAC: mac, HostMAC: lxcMAC, Identity: 1000,
	}); err != nil {
		t.Fatal(err)
	}
	return p
}

// attach attaches prog with tcx inside the node, detached when the test ends.
func (n *testNode) attach(t *testing.T, prog *ebpf.Program, ifindex int, dir loader.Direction) {
	t.Helper()
	err := nsutil.Do(nsutil.Path(n.name), func() error {
		l, err := loader.AttachTCX(prog, ifindex, dir)
		if err != nil {
			return err
		}
		t.Cleanup(func() { l.Close() })
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// echoes are the ICMP echo records of one observation point, requests from src to
// dst (type 8) or replies (type 0).
func echoes(t *testing.T, recs []trace.Record, obs string, icmpType uint8, src, dst netip.Addr) []trace.Record {
	t.Helper()
	n := names(t)
	var out []trace.Record
	for _, r := range recs {
		if n.ObsPoint(r.ObsPoint) == obs && r.Pkt.HasIPv4 && r.Pkt.IPProto == 1 && r.Pkt.ICMPType == icmpType &&
			r.Pkt.Src == src && r.Pkt.Dst == dst {
			out = append(out, r)
		}
	}
	return out
}

// expectVerdicts checks there are count records, each with one of verdicts and the
// target ifindex.
func expectVerdicts(t *testing.T, what string, recs []trace.Record, count int, target int, verdicts ...string) {
	t.Helper()
	n := names(t)
	if len(recs) != count {
		t.Errorf("%s: want %d records, got %d", what, count, len(recs))
	}
	for _, r := range recs {
		v := n.Verdict(r.Verdict)
		ok := false
		for _, w := range verdicts {
			ok = ok || v == w
		}
		if !ok || int(r.TargetIfindex) != target {
			t.Errorf("%s: want %v to if %d, got %s", what, verdicts, target, n.Format(r))
		}
	}
}

// logOnFailure prints the records when the test has failed, to see the path taken.
func logOnFailure(t *testing.T, recs []trace.Record) {
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range recs {
				t.Log(names(t).Format(r))
			}
		}
	})
}

func drain(t *testing.T, n *testNode) []trace.Record {
	t.Helper()
	recs, err := n.rd.Drain()
	if err != nil {
		t.Fatal(err)
	}
	return recs
}

var (
	node1GW = netip.MustParseAddr("10.244.1.1")
	node2GW = netip.MustParseAddr("10.244.2.1")
	podA    = netip.MustParseAddr("10.244.1.10")
	podB1   = netip.MustParseAddr("10.244.1.20") // pod B on node 1
	podB2   = netip.MustParseAddr("10.244.2.20") // pod B on node 2
)

func attachConfig(node uint32, host uint32) bpfconfig.Config {
	cfg := fixtureConfig()
	cfg.NodeId = node
	cfg.HostRouting = host
	return cfg
}

// sameNode builds one node with pods A and B, from_container on both host veths'
// tcx ingress and to_container on their egress.
func sameNode(t *testing.T, host uint32) (*testNode, testPod, testPod) {
	testutil.RequireRoot(t)
	n := newTestNode(t, "node1", node1GW, attachConfig(1, host), testrun.MountBPFFS(t))
	a := n.addPod(t, "pod-a", "lxc-pod-a", podA, podAMAC, lxcAMAC)
	b := n.addPod(t, "pod-b", "lxc-pod-b", podB1, podBMAC, lxcBMAC)
	for _, p := range []testPod{a, b} {
		n.attach(t, n.d.FromContainer, p.lxc.Attrs().Index, loader.Ingress)
		n.attach(t, n.d.ToContainer, p.lxc.Attrs().Index, loader.Egress)
	}
	return n, a, b
}

func TestSameNodePodToPodBPFHostRouting(t *testing.T) {
	n, a, b := sameNode(t, uint32(bpfobj.LxcHostRoutingHOST_ROUTING_BPF))
	testrun.Ping(t, a.ns, b.ip.String(), 3)
	recs := drain(t, n)
	logOnFailure(t, recs)

	expectVerdicts(t, "echo requests at from-container", echoes(t, recs, "OBS_FROM_CONTAINER", 8, a.ip, b.ip),
		3, b.lxc.Attrs().Index, "VERDICT_REDIRECT_PEER")
	expectVerdicts(t, "echo replies at from-container", echoes(t, recs, "OBS_FROM_CONTAINER", 0, b.ip, a.ip),
		3, a.lxc.Attrs().Index, "VERDICT_REDIRECT_PEER")
	// bpf_redirect_peer lands in the pod: the host veth's egress never sees the echoes.
	if got := echoes(t, recs, "OBS_TO_CONTAINER", 8, a.ip, b.ip); len(got) != 0 {
		t.Errorf("echo requests should bypass lxc egress, %d seen there", len(got))
	}
	if got := n.forwarded(t); got != 0 {
		t.Errorf("netfilter forward chain counted %d packets, want 0 with BPF host routing", got)
	}
}

func TestSameNodePodToPodLegacyHostRouting(t *testing.T) {
	n, a, b := sameNode(t, uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY))
	testrun.Ping(t, a.ns, b.ip.String(), 3)
	recs := drain(t, n)
	logOnFailure(t, recs)

	reqs := echoes(t, recs, "OBS_FROM_CONTAINER", 8, a.ip, b.ip)
	expectVerdicts(t, "echo requests at from-container", reqs, 3, 0, "VERDICT_PASS")
	for _, r := range reqs {
		if got := names(t).PassReason(r.PassReason); got != "PASS_LEGACY_HOST_ROUTING" {
			t.Errorf("pass reason %s, want PASS_LEGACY_HOST_ROUTING", got)
		}
	}
	delivered := echoes(t, recs, "OBS_TO_CONTAINER", 8, a.ip, b.ip)
	expectVerdicts(t, "echo requests delivered by the stack to lxc egress", delivered, 3, 0, "VERDICT_PASS")
	for _, r := range delivered {
		if int(r.Ifindex) != b.lxc.Attrs().Index || r.Pkt.TTL != 63 {
			t.Errorf("want the stack's forward on pod B's veth with ttl 63: %s", names(t).Format(r))
		}
	}
	if got := n.forwarded(t); got < 6 {
		t.Errorf("netfilter forward chain counted %d packets, want >= 6 (3 requests, 3 replies) with legacy host routing", got)
	}
}

func TestCrossNodeNativeRouting(t *testing.T) {
	testutil.RequireRoot(t)
	bpffs := testrun.MountBPFFS(t)
	n1 := newTestNode(t, "node1", node1GW, attachConfig(1, uint32(bpfobj.LxcHostRoutingHOST_ROUTING_BPF)), bpffs)
	n2 := newTestNode(t, "node2", node2GW, attachConfig(2, uint32(bpfobj.LxcHostRoutingHOST_ROUTING_BPF)), bpffs)

	// Underlay: eth1 in node 1 <-> eth1 in node 2, 192.168.77.0/24.
	fd2, err := netns.GetFromPath(nsutil.Path(n2.name))
	if err != nil {
		t.Fatal(err)
	}
	defer fd2.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr = "eth1", mustMAC("02:00:00:00:77:01")
	if err := n1.h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth1", PeerNamespace: netlink.NsFd(fd2),
		PeerHardwareAddr: mustMAC("02:00:00:00:77:02")}); err != nil {
		t.Fatal(err)
	}
	nics := map[*testNode]netlink.Link{}
	for i, n := range []*testNode{n1, n2} {
		l, err := n.h.LinkByName("eth1")
		if err != nil {
			t.Fatal(err)
		}
		addAddr(t, n.h, l, fmt.Sprintf("192.168.77.%d/24", i+1))
		if err := n.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		nics[n] = l
		// ip route add <other PodCIDR> via <other node>
		other := fmt.Sprintf("10.244.%d.0/24", 2-i)
		addRoute(t, n.h, &netlink.Route{Dst: ipnet(other), Gw: net.ParseIP(fmt.Sprintf("192.168.77.%d", 2-i)), LinkIndex: l.Attrs().Index})
		if err := n.d.Maps.NodeUpsert(maps.Node{IP: netip.MustParseAddr(fmt.Sprintf("192.168.77.%d", 2-i)), ID: uint32(2 - i)}); err != nil {
			t.Fatal(err)
		}
	}
	a := n1.addPod(t, "pod-a", "lxc-pod-a", podA, podAMAC, lxcAMAC)
	b := n2.addPod(t, "pod-b", "lxc-pod-b", podB2, podBMAC, lxcBMAC)
	for n, p := range map[*testNode]testPod{n1: a, n2: b} {
		n.attach(t, n.d.FromContainer, p.lxc.Attrs().Index, loader.Ingress)
		n.attach(t, n.d.ToContainer, p.lxc.Attrs().Index, loader.Egress)
		n.attach(t, n.d.FromNetdev, nics[n].Attrs().Index, loader.Ingress)
		n.attach(t, n.d.ToNetdev, nics[n].Attrs().Index, loader.Egress)
	}

	testrun.Ping(t, a.ns, b.ip.String(), 3)
	r1, r2 := drain(t, n1), drain(t, n2)
	logOnFailure(t, append(r1, r2...))

	out1 := echoes(t, r1, "OBS_FROM_CONTAINER", 8, a.ip, b.ip)
	expectVerdicts(t, "node 1 from-container echo requests", out1, 3, nics[n1].Attrs().Index, "VERDICT_REDIRECT_NEIGH", "VERDICT_REDIRECT")
	in2 := echoes(t, r2, "OBS_FROM_NETDEV", 8, a.ip, b.ip)
	expectVerdicts(t, "node 2 from-netdev echo requests", in2, 3, b.lxc.Attrs().Index, "VERDICT_REDIRECT_PEER")
	out2 := echoes(t, r2, "OBS_FROM_CONTAINER", 0, b.ip, a.ip)
	expectVerdicts(t, "node 2 from-container echo replies", out2, 3, nics[n2].Attrs().Index, "VERDICT_REDIRECT_NEIGH", "VERDICT_REDIRECT")
	in1 := echoes(t, r1, "OBS_FROM_NETDEV", 0, b.ip, a.ip)
	expectVerdicts(t, "node 1 from-netdev echo replies", in1, 3, a.lxc.Attrs().Index, "VERDICT_REDIRECT_PEER")
	// The redirected packets leave through the NIC's egress, where to-netdev sees them.
	expectVerdicts(t, "node 1 to-netdev echo requests", echoes(t, r1, "OBS_TO_NETDEV", 8, a.ip, b.ip), 3, 0, "VERDICT_PASS")

	// The underlay neighbour was unknown: the first request went through
	// bpf_redirect_neigh, and reached pod B through bpf_redirect_peer after that.
	if len(out1) > 0 && len(in2) > 0 {
		n := names(t)
		if n.Verdict(out1[0].Verdict) != "VERDICT_REDIRECT_NEIGH" {
			t.Errorf("first echo request: want VERDICT_REDIRECT_NEIGH on node 1, got %s", n.Format(out1[0]))
		}
		if out1[0].KtimeNs >= in2[0].KtimeNs {
			t.Errorf("node 1's redirect_neigh (%d) should precede node 2's redirect_peer (%d)", out1[0].KtimeNs, in2[0].KtimeNs)
		}
		if out1[0].NodeID != 1 || in2[0].NodeID != 2 {
			t.Errorf("records carry node ids %d and %d, want 1 and 2", out1[0].NodeID, in2[0].NodeID)
		}
		if in2[0].Pkt.TTL != 63 {
			t.Errorf("node 2 should see the TTL node 1 decremented: %s", n.Format(in2[0]))
		}
	}
	for i, n := range []*testNode{n1, n2} {
		if got := n.forwarded(t); got != 0 {
			t.Errorf("node %d: netfilter forward chain counted %d packets, want 0", i+1, got)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

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

// lbCluster is two nodes with the load balancer on, native routing, an underlay veth
// (eth1, 192.168.77.0/24, node IPs .1 and .2) with from_netdev/to_netdev on it.
type lbCluster struct {
	n1, n2     *testNode
	nic1, nic2 netlink.Link
}

var (
	lbNode1IP = netip.MustParseAddr("192.168.77.1")
	lbNode2IP = netip.MustParseAddr("192.168.77.2")
)

// newLBNode is node id of a load-balancer test: BPF host routing, node IP ip, the load
// balancer on with M = testM, its namespaces named by lbName(suffix), its maps pinned
// under bpffs.
func newLBNode(t *testing.T, bpffs string, id uint32, suffix string, gw, ip netip.Addr) *testNode {
	t.Helper()
	cfg := attachConfig(id, uint32(bpfobj.LxcHostRoutingHOST_ROUTING_BPF))
	cfg.NodeIp = ip.As4()
	cfg = withLB(t, cfg, lbOpts{MaglevTableSize: testM})
	n := newTestNodeIn(t, testrun.NewNetns(t, lbName(suffix)), suffix, gw, cfg, bpffs, true)
	n.podNS = lbName
	return n
}

func newLBCluster(t *testing.T) *lbCluster {
	t.Helper()
	testutil.RequireRoot(t)
	bpffs := testrun.MountBPFFS(t)
	c := &lbCluster{n1: newLBNode(t, bpffs, 1, "node1", node1GW, lbNode1IP), n2: newLBNode(t, bpffs, 2, "node2", node2GW, lbNode2IP)}
	fd2, err := netns.GetFromPath(nsutil.Path(c.n2.name))
	if err != nil {
		t.Fatal(err)
	}
	defer fd2.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr = "eth1", mustMAC("02:00:00:00:77:01")
	if err := c.n1.h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth1", PeerNamespace: netlink.NsFd(fd2),
		PeerHardwareAddr: mustMAC("02:00:00:00:77:02")}); err != nil {
		t.Fatal(err)
	}
	for i, n := range []*testNode{c.n1, c.n2} {
		l, err := n.h.LinkByName("eth1")
		if err != nil {
			t.Fatal(err)
		}
		addAddr(t, n.h, l, fmt.Sprintf("192.168.77.%d/24", i+1))
		if err := n.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		addRoute(t, n.h, &netlink.Route{Dst: ipnet(fmt.Sprintf("10.244.%d.0/24", 2-i)),
			Gw: net.ParseIP(fmt.Sprintf("192.168.77.%d", 2-i)), LinkIndex: l.Attrs().Index})
		for j, ip := range []netip.Addr{lbNode1IP, lbNode2IP} {
			if err := n.d.Maps.NodeUpsert(maps.Node{IP: ip, ID: uint32(j + 1)}); err != nil {
				t.Fatal(err)
			}
		}
		n.attach(t, n.d.FromNetdev, l.Attrs().Index, loader.Ingress)
		n.attach(t, n.d.ToNetdev, l.Attrs().Index, loader.Egress)
		if i == 0 {
			c.nic1 = l
		} else {
			c.nic2 = l
		}
	}
	return c
}

// pod adds a pod to n with from_container/to_container on its host veth.
func (c *lbCluster) pod(t *testing.T, n *testNode, suffix string, ip netip.Addr, mac, lxcMAC net.HardwareAddr) testPod {
	t.Helper()
	p := n.addPod(t, suffix, "lxc-"+suffix, ip, mac, lxcMAC)
	n.attach(t, n.d.FromContainer, p.lxc.Attrs().Index, loader.Ingress)
	n.attach(t, n.d.ToContainer, p.lxc.Attrs().Index, loader.Egress)
	return p
}

// program writes backends and services on every node given.
func program(t *testing.T, backends []maps.Backend, services []maps.Service, nodes ...*testNode) {
	t.Helper()
	for _, n := range nodes {
		for _, b := range backends {
			if err := n.d.LB.BackendUpsert(b); err != nil {
				t.Fatal(err)
			}
		}
		for _, s := range services {
			if err := n.d.LB.RevNatUpsert(s.RevNatID, netip.AddrPortFrom(s.Addr, s.Port)); err != nil {
				t.Fatal(err)
			}
			if err := n.d.LB.ServiceUpsert(s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// drainLB returns the node's records, LB part decoded.
func drainLB(t *testing.T, n *testNode) []lbRecord {
	t.Helper()
	return (&lbEnv{rb: n.rb}).drain(t)
}

// serveTCP answers every connection to :port in namespace ns with "name remote-addr".
func serveTCP(t *testing.T, ns string, port int, name string) {
	t.Helper()
	ln, err := nsutil.ServeTCP(nsutil.Path(ns), fmt.Sprintf(":%d", port), func(c net.Conn) {
		fmt.Fprintf(c, "%s %s\n", name, c.RemoteAddr())
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
}

// serveUDP answers every datagram to :port in ns with "name remote-addr".
func serveUDP(t *testing.T, ns string, port int, name string) {
	t.Helper()
	pc, err := nsutil.ServeUDP(nsutil.Path(ns), fmt.Sprintf(":%d", port), func(_ []byte, from net.Addr) []byte {
		return []byte(fmt.Sprintf("%s %s\n", name, from))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
}

// ask connects from ns to addr over network (tcp4, or udp4 with a connected socket,
// which takes replies from addr only) and returns the answer: the server's name and
// the client address it saw, and the local address used.
func ask(ns, network string, addr netip.AddrPort) (server string, seen, local netip.AddrPort, err error) {
	var c net.Conn
	err = nsutil.Do(nsutil.Path(ns), func() (err error) {
		c, err = (&net.Dialer{Timeout: 3 * time.Second}).Dial(network, addr.String())
		return err
	})
	if err != nil {
		return "", seen, local, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if network == "udp4" {
		if _, err := c.Write([]byte("hello")); err != nil {
			return "", seen, local, err
		}
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", seen, local, fmt.Errorf("read answer: %w", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", seen, local, fmt.Errorf("answer %q", line)
	}
	seen, err = netip.ParseAddrPort(f[1])
	local = netip.MustParseAddrPort(c.LocalAddr().String())
	return f[0], seen, local, err
}

func countLB(recs []lbRecord, obs, action string) int {
	n := 0
	for _, r := range recs {
		if r.Action == action && (obs == "" || obsName(r) == obs) {
			n++
		}
	}
	return n
}

func obsName(r lbRecord) string {
	n, err := trace.DefaultNames()
	if err != nil {
		return ""
	}
	return n.ObsPoint(r.ObsPoint)
}

// A client pod on node 1 reaches a ClusterIP whose backends are a pod on node 1 and
// a pod on node 2, over TCP and UDP: both backends answer, they see the pod's own
// address (no SNAT), and the client's sockets (a connected UDP socket included) take
// the answers as coming from the ClusterIP.
func TestLBAttachClusterIP(t *testing.T) {
	c := newLBCluster(t)
	a := c.pod(t, c.n1, "pod-a", podA, podAMAC, lxcAMAC)
	b1 := c.pod(t, c.n1, "pod-b1", podB1, podBMAC, lxcBMAC)
	b2 := c.pod(t, c.n2, "pod-b2", podB2, podBMAC, lxcBMAC)
	vip := netip.MustParseAddr("10.96.0.10")
	serveTCP(t, b1.ns, 8080, "b1")
	serveTCP(t, b2.ns, 8080, "b2")
	serveUDP(t, b1.ns, 5353, "b1")
	serveUDP(t, b2.ns, 5353, "b2")
	program(t, []maps.Backend{
		{ID: 1, Addr: podB1, Port: 8080, Proto: maps.ProtoTCP}, {ID: 2, Addr: podB2, Port: 8080, Proto: maps.ProtoTCP},
		{ID: 3, Addr: podB1, Port: 5353, Proto: maps.ProtoUDP}, {ID: 4, Addr: podB2, Port: 5353, Proto: maps.ProtoUDP},
	}, []maps.Service{
		{ServiceKey: maps.ServiceKey{Addr: vip, Port: 80, Proto: maps.ProtoTCP}, ID: 1, RevNatID: 1, Flags: maps.ServiceClusterIP, Backends: []uint32{1, 2}},
		{ServiceKey: maps.ServiceKey{Addr: vip, Port: 53, Proto: maps.ProtoUDP}, ID: 2, RevNatID: 2, Flags: maps.ServiceClusterIP, Backends: []uint32{3, 4}},
	}, c.n1, c.n2)

	for _, tc := range []struct {
		network string
		port    uint16
	}{{"tcp4", 80}, {"udp4", 53}} {
		seenBy := map[string]int{}
		for i := 0; i < 24; i++ {
			server, seen, local, err := ask(a.ns, tc.network, netip.AddrPortFrom(vip, tc.port))
			if err != nil {
				r1, r2 := drainLB(t, c.n1), drainLB(t, c.n2)
				for _, r := range append(r1, r2...) {
					t.Log(r.String(t))
				}
				t.Fatalf("%s to the ClusterIP, try %d: %v", tc.network, i, err)
			}
			if seen != local || seen.Addr() != podA {
				t.Errorf("%s: backend %s saw the client as %s, the client is %s", tc.network, server, seen, local)
			}
			seenBy[server]++
		}
		if seenBy["b1"] == 0 || seenBy["b2"] == 0 {
			t.Errorf("%s: 24 connections reached %v: want both backends", tc.network, seenBy)
		}
	}

	r1 := drainLB(t, c.n1)
	logOnFailureLB(t, r1)
	if countLB(r1, "OBS_FROM_CONTAINER", "TRACE_LB_DNAT") == 0 {
		t.Error("node 1 traced no DNAT at from-container")
	}
	if countLB(r1, "OBS_FROM_CONTAINER", "TRACE_LB_REVNAT") == 0 {
		t.Error("node 1 traced no reverse NAT at from-container (local backend's replies)")
	}
	if countLB(r1, "OBS_FROM_NETDEV", "TRACE_LB_REVNAT") == 0 {
		t.Error("node 1 traced no reverse NAT at from-netdev (remote backend's replies)")
	}
	if r2 := drainLB(t, c.n2); countLB(r2, "", "TRACE_LB_DNAT")+countLB(r2, "", "TRACE_LB_REVNAT") != 0 {
		t.Error("node 2 translated packets of a flow node 1 owns")
	}
	if list, _ := c.n1.d.LB.CTList(); len(list) == 0 {
		t.Error("node 1 has no conntrack entries")
	}
}

func logOnFailureLB(t *testing.T, recs []lbRecord) {
	t.Cleanup(func() {
		if t.Failed() {
			for _, r := range recs {
				t.Log(r.String(t))
			}
		}
	})
}

// An external client (its own namespace behind node 1's eth2) reaches NodePorts of
// node 1: with the backend on node 2, node 1 SNATs (the backend sees node 1's IP and
// a port of the SNAT range) and translates the replies back; with the backend on
// node 1, no SNAT (the backend sees the client). Either way the client sees the
// answers come from node 1's IP and the NodePort.
func TestLBAttachNodePortSNAT(t *testing.T) {
	c := newLBCluster(t)
	b1 := c.pod(t, c.n1, "pod-b1", podB1, podBMAC, lxcBMAC)
	b2 := c.pod(t, c.n2, "pod-b2", podB2, podBMAC, lxcBMAC)
	serveTCP(t, b1.ns, 8080, "b1")
	serveTCP(t, b2.ns, 8080, "b2")
	serveUDP(t, b2.ns, 5353, "b2")

	// The client: 172.16.0.5 on the far side of node 1's eth2 (172.16.0.1).
	ext := testrun.NewNetns(t, lbName("ext"))
	fd, err := netns.GetFromPath(nsutil.Path(ext))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr = "eth2", mustMAC("02:00:00:00:16:01")
	if err := c.n1.h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(fd),
		PeerHardwareAddr: mustMAC("02:00:00:00:16:05")}); err != nil {
		t.Fatal(err)
	}
	eth2, err := c.n1.h.LinkByName("eth2")
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, c.n1.h, eth2, "172.16.0.1/24")
	if err := c.n1.h.LinkSetUp(eth2); err != nil {
		t.Fatal(err)
	}
	eh := testrun.NetlinkAt(t, ext)
	extEth, err := eh.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, eh, extEth, "172.16.0.5/24")
	if err := eh.LinkSetUp(extEth); err != nil {
		t.Fatal(err)
	}
	addRoute(t, eh, &netlink.Route{Gw: net.ParseIP("172.16.0.1"), LinkIndex: extEth.Attrs().Index})
	c.n1.attach(t, c.n1.d.FromNetdev, eth2.Attrs().Index, loader.Ingress)
	c.n1.attach(t, c.n1.d.ToNetdev, eth2.Attrs().Index, loader.Egress)

	np := func(port uint16, proto maps.Proto, id uint32, backend uint32) maps.Service {
		return maps.Service{ServiceKey: maps.ServiceKey{Addr: lbNode1IP, Port: port, Proto: proto}, ID: id, RevNatID: id,
			Flags: maps.ServiceNodePort, Backends: []uint32{backend}}
	}
	program(t, []maps.Backend{
		{ID: 1, Addr: podB1, Port: 8080, Proto: maps.ProtoTCP}, {ID: 2, Addr: podB2, Port: 8080, Proto: maps.ProtoTCP},
		{ID: 4, Addr: podB2, Port: 5353, Proto: maps.ProtoUDP},
	}, []maps.Service{np(30080, maps.ProtoTCP, 1, 2), np(30081, maps.ProtoTCP, 2, 1), np(30053, maps.ProtoUDP, 3, 4)}, c.n1)

	client := netip.MustParseAddr("172.16.0.5")
	for _, tc := range []struct {
		name    string
		network string
		port    uint16
		server  string
		snat    bool
		tries   int
	}{
		{"tcp, backend on node 2: SNAT", "tcp4", 30080, "b2", true, 4},
		{"udp, backend on node 2: SNAT", "udp4", 30053, "b2", true, 4},
		{"tcp, backend on node 1: no SNAT", "tcp4", 30081, "b1", false, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := 0; i < tc.tries; i++ {
				server, seen, local, err := ask(ext, tc.network, netip.AddrPortFrom(lbNode1IP, tc.port))
				if err != nil {
					r1, r2 := drainLB(t, c.n1), drainLB(t, c.n2)
					for _, r := range append(r1, r2...) {
						t.Log(r.String(t))
					}
					t.Fatalf("try %d: %v", i, err)
				}
				if server != tc.server {
					t.Errorf("answered by %s, want %s", server, tc.server)
				}
				if local.Addr() != client {
					t.Errorf("client address %s", local)
				}
				switch {
				case tc.snat && (seen.Addr() != lbNode1IP || seen.Port() < bpfconfig.DefaultSNATPortMin):
					t.Errorf("the backend saw the client as %s: want node 1's IP and an SNAT port", seen)
				case !tc.snat && seen != local:
					t.Errorf("the backend saw the client as %s, want %s", seen, local)
				}
			}
		})
	}

	r1 := drainLB(t, c.n1)
	logOnFailureLB(t, r1)
	for _, w := range []struct{ obs, action string }{
		{"OBS_FROM_NETDEV", "TRACE_LB_DNAT_SNAT"}, {"OBS_FROM_NETDEV", "TRACE_LB_REV_SNAT"},
		{"OBS_FROM_NETDEV", "TRACE_LB_DNAT"}, {"OBS_FROM_CONTAINER", "TRACE_LB_REVNAT"},
	} {
		if countLB(r1, w.obs, w.action) == 0 {
			t.Errorf("node 1 traced no %s at %s", w.action, w.obs)
		}
	}
	var snat int
	for _, e := range ctEntries(t, c.n1.d.LB) {
		if e.Map == "snat" {
			snat++
			if e.Src.Addr() != podB2 || e.Dst.Addr() != lbNode1IP || e.NAT.Addr() != client {
				t.Errorf("snat entry %s", e)
			}
		}
	}
	if snat == 0 {
		t.Error("node 1 has no snat entries")
	}
}

// Hairpin through real namespaces: pod b1 reaches the service whose only backend is
// itself, over TCP and UDP; it sees its peer as 169.254.42.1, the reply as coming
// from the service.
func TestLBAttachHairpin(t *testing.T) {
	c := newLBCluster(t)
	b1 := c.pod(t, c.n1, "pod-b1", podB1, podBMAC, lxcBMAC)
	vip := netip.MustParseAddr("10.96.0.11")
	serveTCP(t, b1.ns, 8080, "b1")
	serveUDP(t, b1.ns, 5353, "b1")
	program(t, []maps.Backend{
		{ID: 1, Addr: podB1, Port: 8080, Proto: maps.ProtoTCP}, {ID: 3, Addr: podB1, Port: 5353, Proto: maps.ProtoUDP},
	}, []maps.Service{
		{ServiceKey: maps.ServiceKey{Addr: vip, Port: 80, Proto: maps.ProtoTCP}, ID: 1, RevNatID: 1, Flags: maps.ServiceClusterIP, Backends: []uint32{1}},
		{ServiceKey: maps.ServiceKey{Addr: vip, Port: 53, Proto: maps.ProtoUDP}, ID: 2, RevNatID: 2, Flags: maps.ServiceClusterIP, Backends: []uint32{3}},
	}, c.n1, c.n2)
	loopback := netip.MustParseAddr("169.254.42.1")
	for _, tc := range []struct {
		network string
		port    uint16
	}{{"tcp4", 80}, {"udp4", 53}} {
		server, seen, local, err := ask(b1.ns, tc.network, netip.AddrPortFrom(vip, tc.port))
		if err != nil {
			for _, r := range drainLB(t, c.n1) {
				t.Log(r.String(t))
			}
			t.Fatalf("%s from b1 to its own service: %v", tc.network, err)
		}
		if server != "b1" || seen.Addr() != loopback || seen.Port() != local.Port() || local.Addr() != podB1 {
			t.Errorf("%s: server %s saw %s, the client is %s: want b1 seeing %s:%d", tc.network, server, seen, local, loopback, local.Port())
		}
	}
}

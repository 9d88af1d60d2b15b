// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// serveCount answers every connection to :port in ns with the number of bytes it read
// before the client closed its side.
func serveCount(t *testing.T, ns string, port int) {
	t.Helper()
	ln, err := nsutil.ServeTCP(nsutil.Path(ns), fmt.Sprintf(":%d", port), func(c net.Conn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "%d\n", n)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
}

// A client pod on node 1 uploads to a ClusterIP whose backend is on node 2, behind a
// router whose link to node 2 has an MTU of 1400. The router answers the client's
// 1500-byte segments with ICMP fragmentation needed, quoting the translated packet
// (to the backend); node 1 translates the error back (quoting the ClusterIP), so the
// client's socket lowers its path MTU and the upload completes instead of stalling.
func TestLBAttachPMTUDThroughClusterIP(t *testing.T) {
	testutil.RequireRoot(t)
	bpffs := testrun.MountBPFFS(t)
	n1 := newLBNode(t, bpffs, 1, "pmtu-node1", node1GW, netip.MustParseAddr("192.168.77.1"))
	n2 := newLBNode(t, bpffs, 2, "pmtu-node2", node2GW, netip.MustParseAddr("192.168.78.2"))
	r := testrun.NewNetns(t, lbName("pmtu-router"))
	rh := testrun.NetlinkAt(t, r)
	routerSysctls(t, r)
	rfd, err := netns.GetFromPath(nsutil.Path(r))
	if err != nil {
		t.Fatal(err)
	}
	defer rfd.Close()

	// node1 eth1 192.168.77.1 <-> r1 192.168.77.254 | r2 192.168.78.254 (MTU 1400) <-> node2 eth1 192.168.78.2
	link := func(n *testNode, mac, rname, cidr, rcidr string, mtu int) netlink.Link {
		la := netlink.NewLinkAttrs()
		la.Name, la.HardwareAddr, la.MTU = "eth1", mustMAC(mac), mtu
		if err := n.h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: rname, PeerNamespace: netlink.NsFd(rfd)}); err != nil {
			t.Fatal(err)
		}
		l, err := n.h.LinkByName("eth1")
		if err != nil {
			t.Fatal(err)
		}
		addAddr(t, n.h, l, cidr)
		if err := n.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		rl, err := rh.LinkByName(rname)
		if err != nil {
			t.Fatal(err)
		}
		if err := rh.LinkSetMTU(rl, mtu); err != nil {
			t.Fatal(err)
		}
		addAddr(t, rh, rl, rcidr)
		if err := rh.LinkSetUp(rl); err != nil {
			t.Fatal(err)
		}
		return l
	}
	e1 := link(n1, "02:00:00:00:77:01", "r1", "192.168.77.1/24", "192.168.77.254/24", 1500)
	e2 := link(n2, "02:00:00:00:78:02", "r2", "192.168.78.2/24", "192.168.78.254/24", 1400)
	via := func(h *netlink.Handle, dst, gw string, l netlink.Link) {
		addRoute(t, h, &netlink.Route{Dst: ipnet(dst), Gw: net.ParseIP(gw), LinkIndex: l.Attrs().Index})
	}
	via(n1.h, "10.244.2.0/24", "192.168.77.254", e1)
	via(n1.h, "192.168.78.0/24", "192.168.77.254", e1)
	via(n2.h, "10.244.1.0/24", "192.168.78.254", e2)
	via(n2.h, "192.168.77.0/24", "192.168.78.254", e2)
	r1, _ := rh.LinkByName("r1")
	r2, _ := rh.LinkByName("r2")
	via(rh, "10.244.1.0/24", "192.168.77.1", r1)
	via(rh, "10.244.2.0/24", "192.168.78.2", r2)
	for _, x := range []struct {
		n *testNode
		l netlink.Link
	}{{n1, e1}, {n2, e2}} {
		x.n.attach(t, x.n.d.FromNetdev, x.l.Attrs().Index, loader.Ingress)
		x.n.attach(t, x.n.d.ToNetdev, x.l.Attrs().Index, loader.Egress)
	}

	c := &lbCluster{n1: n1, n2: n2}
	a := c.pod(t, n1, "pmtu-a", podA, podAMAC, lxcAMAC)
	b := c.pod(t, n2, "pmtu-b", podB2, podBMAC, lxcBMAC)
	serveCount(t, b.ns, 8080)
	vip := netip.MustParseAddrPort("10.96.0.10:80")
	program(t, []maps.Backend{{ID: 1, Addr: podB2, Port: 8080, Proto: maps.ProtoTCP}},
		[]maps.Service{{ServiceKey: maps.ServiceKey{Addr: vip.Addr(), Port: vip.Port(), Proto: maps.ProtoTCP},
			ID: 1, RevNatID: 1, Flags: maps.ServiceClusterIP, Backends: []uint32{1}}}, n1, n2)

	const size = 256 << 10
	var conn net.Conn
	if err := nsutil.Do(nsutil.Path(a.ns), func() (err error) {
		conn, err = (&net.Dialer{Timeout: 3 * time.Second}).Dial("tcp4", vip.String())
		return err
	}); err != nil {
		t.Fatalf("connect to the ClusterIP: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(make([]byte, size)); err != nil {
		t.Fatalf("upload: %v (a PMTUD black hole?)", err)
	}
	_ = conn.(*net.TCPConn).CloseWrite()
	answer, err := io.ReadAll(conn)
	if err != nil {
		recs := append(drainLB(t, n1), drainLB(t, n2)...)
		for _, r := range recs {
			t.Log(r.String(t))
		}
		t.Fatalf("read the byte count: %v (a PMTUD black hole?)", err)
	}
	if n, _ := strconv.Atoi(strings.TrimSpace(string(answer))); n != size {
		t.Fatalf("the backend read %q bytes, want %d", answer, size)
	}
	recs := drainLB(t, n1)
	var icmpTranslated int
	for _, r := range recs {
		if r.Pkt.IPProto == 1 && r.Pkt.ICMPType == 3 && r.Pkt.ICMPCode == 4 && r.Action == "TRACE_LB_REVNAT" {
			icmpTranslated++
		}
	}
	if icmpTranslated == 0 {
		t.Error("node 1 translated no fragmentation-needed error: the path MTU was never discovered through the service")
	}
}

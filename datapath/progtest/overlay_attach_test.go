// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// The tunnel clusters: node 1 (10.244.1.0/24, pod A 10.244.1.10, identity 1000) and
// node 2 (10.244.2.0/24, pod B 10.244.2.20, identity 2000) joined by a veth underlay
// eth1, 192.168.77.1 and .2, MTU 1500, so the tunnel MTU is 1450. Pods keep eth0's
// default MTU of 1500: traffic larger than the tunnel takes the frag-needed path.
var (
	underlay1    = netip.MustParseAddr("192.168.77.1")
	underlay2    = netip.MustParseAddr("192.168.77.2")
	podBIdentity = uint32(2000)
	clusterMTU   = bpfconfig.TunnelMTU(1500, 0)
)

// tunnelSizes leave room for every record of a few-MB transfer, all traced.
var tunnelSizes = loader.MapSizes{Endpoints: 64, IPCache: 64, Nodes: 16, TraceEvents: 1 << 22}

type tunnelCluster struct {
	proto  config.TunnelProtocol
	n1, n2 *testNode
	a, b   testPod
	eth1   map[*testNode]netlink.Link
	vxlan  map[*testNode]int // cilium_vxlan, VXLAN only
}

func protoName(proto config.TunnelProtocol) string {
	if proto == config.TunnelVXLAN {
		return "vxlan"
	}
	return "geneve"
}

// newTunnelCluster builds the two nodes as the agent would for proto: underlay,
// cilium_vxlan (VXLAN), the datapath in tunnel mode with the node's IP and the tunnel
// MTU, every node in the nodes map, the other node's PodCIDR in the ipcache with that
// node as tunnel endpoint, a route to it with the tunnel MTU (the frag-needed
// contract), and the programs attached: from/to-container on the pods' host veths,
// from/to-netdev on eth1, from-overlay on cilium_vxlan.
func newTunnelCluster(t *testing.T, proto config.TunnelProtocol) *tunnelCluster {
	t.Helper()
	testutil.RequireRoot(t)
	bpffs := testrun.MountBPFFS(t)
	c := &tunnelCluster{proto: proto, eth1: map[*testNode]netlink.Link{}, vxlan: map[*testNode]int{}}
	prefix := protoName(proto)
	gws := []netip.Addr{node1GW, node2GW}
	ips := []netip.Addr{underlay1, underlay2}
	var nodes []*testNode
	for i := range 2 {
		n := plumbNode(t, testrun.NewNetns(t, ovName(fmt.Sprintf("%s-n%d", prefix, i+1))), gws[i])
		n.podNS = func(s string) string { return ovName(prefix + "-" + s) }
		nodes = append(nodes, n)
	}
	c.n1, c.n2 = nodes[0], nodes[1]
	c.underlay(t, c.n1.h, c.n2.name, "eth1", ips)

	for i, n := range nodes {
		l, err := n.h.LinkByName("eth1")
		if err != nil {
			t.Fatal(err)
		}
		c.eth1[n] = l
		if proto == config.TunnelVXLAN {
			c.vxlan[n] = addCollectMDVXLAN(t, n.h, "cilium_vxlan", config.PortVXLAN)
		}
		settings := config.Default()
		settings.TunnelProtocol, settings.TunnelPort = proto, proto.DefaultPort()
		cfg, err := bpfconfig.Build(settings, bpfconfig.Node{ID: uint32(i + 1), IP: ips[i], TunnelMTU: clusterMTU, VXLANIfindex: c.vxlan[n]})
		if err != nil {
			t.Fatal(err)
		}
		n.load(t, cfg, filepath.Join(bpffs, fmt.Sprint(i+1)), tunnelSizes, false)
		other := 1 - i
		for j, ip := range ips {
			if err := n.d.Maps.NodeUpsert(maps.Node{IP: ip, ID: uint32(j + 1)}); err != nil {
				t.Fatal(err)
			}
		}
		cidr := fmt.Sprintf("10.244.%d.0/24", other+1)
		if err := n.d.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netipPrefix(cidr), Identity: 2, TunnelEndpoint: ips[other]}); err != nil {
			t.Fatal(err)
		}
		// ip route add 10.244.<other>.0/24 via <other node> dev eth1 mtu 1450
		addRoute(t, n.h, &netlink.Route{Dst: ipnet(cidr), Gw: ips[other].AsSlice(), LinkIndex: l.Attrs().Index, MTU: clusterMTU})
	}

	c.a = c.n1.addPod(t, "pod-a", "lxc-pod-a", podA, podAMAC, lxcAMAC)
	c.b = c.n2.addPod(t, "pod-b", "lxc-pod-b", podB2, podBMAC, lxcBMAC)
	for n, p := range map[*testNode]testPod{c.n1: c.a, c.n2: c.b} {
		id := podAIdentity
		if p.ip == podB2 {
			id = podBIdentity
		}
		if err := n.d.Maps.EndpointUpsert(maps.Endpoint{IP: p.ip, Ifindex: uint32(p.lxc.Attrs().Index),
			MAC: p.mac, HostMAC: p.lxc.Attrs().HardwareAddr, Identity: id}); err != nil {
			t.Fatal(err)
		}
		n.attach(t, n.d.FromContainer, p.lxc.Attrs().Index, loader.Ingress)
		n.attach(t, n.d.ToContainer, p.lxc.Attrs().Index, loader.Egress)
		n.attach(t, n.d.FromNetdev, c.eth1[n].Attrs().Index, loader.Ingress)
		n.attach(t, n.d.ToNetdev, c.eth1[n].Attrs().Index, loader.Egress)
		if proto == config.TunnelVXLAN {
			n.attach(t, n.d.FromOverlay, c.vxlan[n], loader.Ingress)
		}
	}
	return c
}

// underlay joins h's namespace and peerNS with a veth named dev on both sides, up,
// with ips[0] and ips[1] in a /24.
func (c *tunnelCluster) underlay(t *testing.T, h *netlink.Handle, peerNS, dev string, ips []netip.Addr) {
	t.Helper()
	fd, err := netns.GetFromPath(nsutil.Path(peerNS))
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr = dev, mustMAC("02:00:00:00:77:01")
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: dev, PeerNamespace: netlink.NsFd(fd),
		PeerHardwareAddr: mustMAC("02:00:00:00:77:02")}); err != nil {
		t.Fatal(err)
	}
	for i, hh := range []*netlink.Handle{h, testrun.NetlinkAt(t, peerNS)} {
		l, err := hh.LinkByName(dev)
		if err != nil {
			t.Fatal(err)
		}
		addAddr(t, hh, l, ips[i].String()+"/24")
		if err := hh.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
}

// tunnelRecords are the records of obs whose tunnel field is kind.
func tunnelRecords(t *testing.T, recs []trace.Record, obs, kind string) []trace.Record {
	n := names(t)
	var out []trace.Record
	for _, r := range recs {
		if n.ObsPoint(r.ObsPoint) == obs && r.Tunnel != 0 && n.Tunnel(r.Tunnel) == kind {
			out = append(out, r)
		}
	}
	return out
}

// expectTunnel checks every record carries the tunnel kind, identity and endpoint.
func expectTunnel(t *testing.T, what string, recs []trace.Record, kind string, identity uint32, endpoint netip.Addr) {
	t.Helper()
	n := names(t)
	for _, r := range recs {
		if r.Tunnel == 0 || n.Tunnel(r.Tunnel) != kind || r.SrcIdentity != identity || r.TunnelEndpoint != endpoint {
			t.Errorf("%s: want %s identity %d endpoint %s, got %s", what, kind, identity, endpoint, n.Format(r))
		}
	}
}

// wireCheck decodes the tunnel packets captured on an underlay NIC and checks the
// encapsulation: outer addresses, ports, DF, TTL 64, UDP checksum 0, the VNI = the
// sender's identity, and the inner frame as the pod sent it (its own MACs, TTL - 1).
func wireCheck(t *testing.T, proto config.TunnelProtocol, pkts []capture.Packet, src, dst netip.Addr, vni uint32,
	innerSrc, innerDst netip.Addr, innerSrcMAC, innerDstMAC net.HardwareAddr) int {
	t.Helper()
	seen := 0
	for _, cp := range pkts {
		p := cp.Decode()
		var outer, inner *layers.IPv4
		var ethInner *layers.Ethernet
		var udp *layers.UDP
		var gotVNI uint32
		tunnelSeen := false
		for _, l := range p.Layers() {
			switch h := l.(type) {
			case *layers.IPv4:
				if outer == nil {
					outer = h
				} else if inner == nil {
					inner = h
				}
			case *layers.UDP:
				if udp == nil {
					udp = h
				}
			case *layers.VXLAN:
				gotVNI, tunnelSeen = h.VNI, true
				if proto != config.TunnelVXLAN {
					t.Errorf("VXLAN on the wire, want Geneve")
				}
			case *layers.Geneve:
				gotVNI, tunnelSeen = h.VNI, true
				if proto != config.TunnelGeneve || h.Version != 0 || h.Protocol != layers.EthernetTypeTransparentEthernetBridging ||
					h.OptionsLength != 0 || h.OAMPacket || h.CriticalOption {
					t.Errorf("geneve header: %+v", h)
				}
			case *layers.Ethernet:
				if tunnelSeen && ethInner == nil {
					ethInner = h
				}
			}
		}
		if outer == nil || inner == nil || udp == nil || ethInner == nil || !tunnelSeen {
			continue
		}
		if netip.AddrFrom4([4]byte(outer.SrcIP.To4())) != src || netip.AddrFrom4([4]byte(inner.SrcIP.To4())) != innerSrc ||
			netip.AddrFrom4([4]byte(inner.DstIP.To4())) != innerDst {
			continue
		}
		seen++
		port := layers.UDPPort(config.PortGeneve)
		if proto == config.TunnelVXLAN {
			port = config.PortVXLAN
		}
		if netip.AddrFrom4([4]byte(outer.DstIP.To4())) != dst || outer.TTL != 64 || outer.Flags&layers.IPv4DontFragment == 0 ||
			udp.DstPort != port || udp.SrcPort < 32768 || udp.SrcPort >= 60999 || udp.Checksum != 0 {
			t.Errorf("outer headers: %s > %s ttl %d flags %v, udp %d > %d csum %#x", outer.SrcIP, outer.DstIP, outer.TTL,
				outer.Flags, udp.SrcPort, udp.DstPort, udp.Checksum)
		}
		if gotVNI != vni {
			t.Errorf("VNI %d, want the source identity %d", gotVNI, vni)
		}
		if !bytes.Equal(ethInner.SrcMAC, innerSrcMAC) || !bytes.Equal(ethInner.DstMAC, innerDstMAC) || inner.TTL != 63 {
			t.Errorf("inner frame: %s > %s ttl %d, want the pod's own MACs %s > %s and ttl 63",
				ethInner.SrcMAC, ethInner.DstMAC, inner.TTL, innerSrcMAC, innerDstMAC)
		}
	}
	return seen
}

func TestOverlayPodToPod(t *testing.T) {
	for _, proto := range []config.TunnelProtocol{config.TunnelVXLAN, config.TunnelGeneve} {
		t.Run(protoName(proto), func(t *testing.T) {
			c := newTunnelCluster(t, proto)
			cap1, err := capture.Start("", capture.Point{Member: "node1", Interface: "eth1", NsPath: nsutil.Path(c.n1.name)})
			if err != nil {
				t.Fatal(err)
			}
			testrun.Ping(t, c.a.ns, c.b.ip.String(), 3)
			if err := cap1.Stop(); err != nil {
				t.Fatal(err)
			}
			r1, r2 := drain(t, c.n1), drain(t, c.n2)
			logOnFailure(t, append(r1, r2...))

			encapKind, decapKind, deliverObs := "TRACE_ENCAP_GENEVE", "TRACE_DECAP_GENEVE", "OBS_FROM_NETDEV"
			target := func(n *testNode) int { return c.eth1[n].Attrs().Index }
			verdicts := []string{"VERDICT_REDIRECT", "VERDICT_REDIRECT_NEIGH"}
			if proto == config.TunnelVXLAN {
				encapKind, decapKind, deliverObs = "TRACE_ENCAP_VXLAN", "TRACE_DECAP_VXLAN", "OBS_FROM_OVERLAY"
				target = func(n *testNode) int { return c.vxlan[n] }
				verdicts = []string{"VERDICT_REDIRECT"}
			}
			out1 := echoes(t, r1, "OBS_FROM_CONTAINER", 8, c.a.ip, c.b.ip)
			expectVerdicts(t, "node 1 encapsulates echo requests", out1, 3, target(c.n1), verdicts...)
			expectTunnel(t, "node 1 echo requests", out1, encapKind, podAIdentity, underlay2)
			in2 := echoes(t, r2, deliverObs, 8, c.a.ip, c.b.ip)
			expectVerdicts(t, "node 2 delivers echo requests", in2, 3, c.b.lxc.Attrs().Index, "VERDICT_REDIRECT_PEER")
			expectTunnel(t, "node 2 echo requests", in2, decapKind, podAIdentity, underlay1)
			out2 := echoes(t, r2, "OBS_FROM_CONTAINER", 0, c.b.ip, c.a.ip)
			expectVerdicts(t, "node 2 encapsulates echo replies", out2, 3, target(c.n2), verdicts...)
			expectTunnel(t, "node 2 echo replies", out2, encapKind, podBIdentity, underlay1)
			in1 := echoes(t, r1, deliverObs, 0, c.b.ip, c.a.ip)
			expectVerdicts(t, "node 1 delivers echo replies", in1, 3, c.a.lxc.Attrs().Index, "VERDICT_REDIRECT_PEER")
			expectTunnel(t, "node 1 echo replies", in1, decapKind, podBIdentity, underlay2)
			for _, r := range in2 {
				if r.Pkt.TTL != 63 {
					t.Errorf("node 2 should see the inner TTL node 1 decremented: %s", names(t).Format(r))
				}
			}
			if proto == config.TunnelVXLAN {
				n := names(t)
				toOverlay := 0
				for _, r := range r2 {
					if n.ObsPoint(r.ObsPoint) == "OBS_FROM_NETDEV" && n.PassReason(r.PassReason) == "PASS_TO_OVERLAY" {
						toOverlay++
					}
				}
				if toOverlay < 3 {
					t.Errorf("node 2 from-netdev passed %d VXLAN packets to the vxlan device, want >= 3", toOverlay)
				}
			}

			// On the wire: the outer headers and VNIs both ways, the inner frames as the
			// pods sent them.
			tunnelPkts := cap1.Packets("node1", "eth1", capture.Tunnel())
			if got := wireCheck(t, proto, tunnelPkts, underlay1, underlay2, podAIdentity, c.a.ip, c.b.ip, podAMAC, lxcAMAC); got != 3 {
				t.Errorf("captured %d encapsulated echo requests on node 1's eth1, want 3", got)
			}
			if got := wireCheck(t, proto, tunnelPkts, underlay2, underlay1, podBIdentity, c.b.ip, c.a.ip, podBMAC, lxcBMAC); got != 3 {
				t.Errorf("captured %d encapsulated echo replies on node 1's eth1, want 3", got)
			}
			for i, n := range []*testNode{c.n1, c.n2} {
				if got := n.forwarded(t); got != 0 {
					t.Errorf("node %d: netfilter forwarded %d packets, want 0: the tunnel bypasses the stack", i+1, got)
				}
			}
		})
	}
}

// pingOutput runs ping with args inside ns and returns its output and error.
func pingOutput(ns string, args ...string) (string, error) {
	var out []byte
	err := nsutil.Do(nsutil.Path(ns), func() error {
		var err error
		out, err = exec.Command("ping", args...).CombinedOutput()
		return err
	})
	return string(out), err
}

// tcpTransfer sends size pseudo-random bytes from a client in clientNS to a server in
// serverNS listening on serverIP, and checks they arrive whole.
func tcpTransfer(t *testing.T, clientNS, serverNS string, serverIP netip.Addr, size int) {
	t.Helper()
	addr := netip.AddrPortFrom(serverIP, 5201).String()
	var ln net.Listener
	if err := nsutil.Do(nsutil.Path(serverNS), func() (err error) {
		ln, err = net.Listen("tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type result struct {
		n   int64
		sum []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, conn)
		done <- result{n: n, sum: h.Sum(nil), err: err}
	}()
	var conn net.Conn
	if err := nsutil.Do(nsutil.Path(clientNS), func() (err error) {
		d := net.Dialer{Timeout: 10 * time.Second}
		conn, err = d.DialContext(context.Background(), "tcp4", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(60 * time.Second))
	data := make([]byte, size)
	rng := rand.NewChaCha8([32]byte{1})
	_, _ = rng.Read(data)
	start := time.Now()
	if _, err := conn.Write(data); err != nil {
		t.Fatalf("send %d bytes: %v", size, err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(90 * time.Second):
		t.Fatal("the transfer did not finish in 90 s")
	}
	want := sha256.Sum256(data)
	if r.err != nil || r.n != int64(size) || !bytes.Equal(r.sum, want[:]) {
		t.Fatalf("received %d of %d bytes (err %v), digest match %v", r.n, size, r.err, bytes.Equal(r.sum, want[:]))
	}
	t.Logf("%d bytes in %s", size, time.Since(start).Round(time.Millisecond))
}

// Large packets: a ping that fits the tunnel MTU exactly crosses; one that does not,
// with DF, comes back as ICMP frag-needed with the tunnel MTU; a TCP transfer of a few
// MB (GSO super-packets, after path MTU discovery) arrives whole.
func TestOverlayLargeTransfer(t *testing.T) {
	for _, proto := range []config.TunnelProtocol{config.TunnelVXLAN, config.TunnelGeneve} {
		t.Run(protoName(proto), func(t *testing.T) {
			c := newTunnelCluster(t, proto)
			// First TCP on a cold path: both pods advertise MSS 1460 (eth0 MTU 1500), so
			// pod B's first GSO packets exceed the tunnel MTU, node 2 hands them to its
			// stack, which answers frag-needed (route MTU 1450): path MTU discovery.
			tcpTransfer(t, c.b.ns, c.a.ns, c.a.ip, 2<<20)
			// 1400 bytes of ICMP data: a 1428-byte packet, inside the tunnel MTU.
			if out, err := pingOutput(c.a.ns, "-c", "3", "-i", "0.2", "-W", "2", "-s", "1400", c.b.ip.String()); err != nil {
				t.Fatalf("ping -s 1400: %v\n%s", err, out)
			}
			// The tunnel MTU exactly: 1422 + 28 = 1450.
			if out, err := pingOutput(c.a.ns, "-c", "2", "-i", "0.2", "-W", "2", "-M", "do", "-s", fmt.Sprint(clusterMTU-28), c.b.ip.String()); err != nil {
				t.Fatalf("ping of the tunnel MTU: %v\n%s", err, out)
			}
			// One byte more, DF set: the node's stack answers frag-needed, mtu 1450.
			out, err := pingOutput(c.a.ns, "-c", "2", "-i", "0.2", "-W", "1", "-M", "do", "-s", fmt.Sprint(clusterMTU-28+1), c.b.ip.String())
			if err == nil || !strings.Contains(out, fmt.Sprint(clusterMTU)) {
				t.Errorf("a DF packet over the tunnel MTU should come back as frag-needed with mtu %d: err %v\n%s", clusterMTU, err, out)
			}
			tcpTransfer(t, c.a.ns, c.b.ns, c.b.ip, 5<<20)

			r1, r2 := drain(t, c.n1), drain(t, c.n2)
			n := names(t)
			count := func(recs []trace.Record) (gso, fragNeeded int) {
				for _, r := range recs {
					if n.ObsPoint(r.ObsPoint) != "OBS_FROM_CONTAINER" {
						continue
					}
					if r.Tunnel != 0 && strings.HasPrefix(n.Verdict(r.Verdict), "VERDICT_REDIRECT") && r.PktLen > uint32(clusterMTU+14) {
						gso++
					}
					if n.PassReason(r.PassReason) == "PASS_FRAG_NEEDED_TUNNEL" {
						fragNeeded++
					}
				}
				return gso, fragNeeded
			}
			gso1, frag1 := count(r1)
			gso2, frag2 := count(r2)
			t.Logf("GSO packets encapsulated whole: node 1 %d, node 2 %d; frag-needed passes: node 1 %d, node 2 %d",
				gso1, gso2, frag1, frag2)
			if gso1 == 0 || gso2 == 0 {
				t.Error("large TCP traffic should leave both nodes as GSO super-packets, encapsulated whole")
			}
			if frag1 == 0 {
				t.Error("no PASS_FRAG_NEEDED_TUNNEL record on node 1 for the oversized DF ping")
			}
			if frag2 == 0 {
				t.Error("no PASS_FRAG_NEEDED_TUNNEL record on node 2: pod B (MTU 1500) should have started with segments over the tunnel MTU")
			}
			for i, recs := range [][]trace.Record{r1, r2} {
				for _, r := range recs {
					if n.Verdict(r.Verdict) == "VERDICT_DROP" {
						t.Errorf("node %d dropped: %s", i+1, n.Format(r))
					}
				}
			}
		})
	}
}

// Interop: node 1 runs podpath with VXLAN; "node 2" is plain Linux, a vxlan device
// with VNI 1000 (pod A's identity), remote node 1, port 8472, and pod B's address on
// it. The echo request podpath encapsulates is decapsulated by Linux (which accepts
// VNI 1000 only), and the reply Linux encapsulates is delivered by from-overlay.
func TestVXLANInteropWithLinux(t *testing.T) {
	testutil.RequireRoot(t)
	bpffs := testrun.MountBPFFS(t)
	n1 := plumbNode(t, testrun.NewNetns(t, ovName("ix-n1")), node1GW)
	n1.podNS = func(s string) string { return ovName("ix-" + s) }
	linuxNS := testrun.NewNetns(t, ovName("ix-linux"))
	c := &tunnelCluster{}
	c.underlay(t, n1.h, linuxNS, "eth1", []netip.Addr{underlay1, underlay2})

	vx := addCollectMDVXLAN(t, n1.h, "cilium_vxlan", config.PortVXLAN)
	cfg, err := bpfconfig.Build(config.Default(), bpfconfig.Node{ID: 1, IP: underlay1, TunnelMTU: clusterMTU, VXLANIfindex: vx})
	if err != nil {
		t.Fatal(err)
	}
	n1.load(t, cfg, filepath.Join(bpffs, "n1"), loader.MapSizes{}, false)
	for _, n := range []maps.Node{{IP: underlay1, ID: 1}, {IP: underlay2, ID: 2}} {
		if err := n1.d.Maps.NodeUpsert(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := n1.d.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netipPrefix("10.244.2.0/24"), Identity: 2, TunnelEndpoint: underlay2}); err != nil {
		t.Fatal(err)
	}
	a := n1.addPod(t, "pod-a", "lxc-pod-a", podA, podAMAC, lxcAMAC)
	if err := n1.d.Maps.EndpointUpsert(maps.Endpoint{IP: a.ip, Ifindex: uint32(a.lxc.Attrs().Index), MAC: a.mac,
		HostMAC: lxcAMAC, Identity: podAIdentity}); err != nil {
		t.Fatal(err)
	}
	n1.attach(t, n1.d.FromContainer, a.lxc.Attrs().Index, loader.Ingress)
	n1.attach(t, n1.d.FromOverlay, vx, loader.Ingress)
	eth1, err := n1.h.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	n1.attach(t, n1.d.FromNetdev, eth1.Attrs().Index, loader.Ingress)

	// Plain Linux:
	//   ip link add vxlan0 address <pod A's gateway MAC> type vxlan id 1000 \
	//     local 192.168.77.2 remote 192.168.77.1 dstport 8472 dev eth1
	//   ip addr add 10.244.2.20/16 dev vxlan0
	//   ip neigh add 10.244.1.10 lladdr <pod A's MAC> dev vxlan0
	// The frames podpath sends keep pod A's Ethernet header, addressed to its gateway:
	// vxlan0 carries that MAC so Linux takes them as its own.
	lh := testrun.NetlinkAt(t, linuxNS)
	leth1, err := lh.LinkByName("eth1")
	if err != nil {
		t.Fatal(err)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.HardwareAddr = "vxlan0", lxcAMAC
	if err := lh.LinkAdd(&netlink.Vxlan{LinkAttrs: la, VxlanId: int(podAIdentity), VtepDevIndex: leth1.Attrs().Index,
		SrcAddr: underlay2.AsSlice(), Group: underlay1.AsSlice(), Port: config.PortVXLAN}); err != nil {
		t.Fatalf("add plain vxlan device: %v", err)
	}
	vx0, err := lh.LinkByName("vxlan0")
	if err != nil {
		t.Fatal(err)
	}
	addAddr(t, lh, vx0, podB2.String()+"/16")
	if err := lh.LinkSetUp(vx0); err != nil {
		t.Fatal(err)
	}
	if err := lh.NeighAdd(&netlink.Neigh{LinkIndex: vx0.Attrs().Index, IP: podA.AsSlice(), HardwareAddr: podAMAC,
		State: netlink.NUD_PERMANENT, Family: netlink.FAMILY_V4}); err != nil {
		t.Fatal(err)
	}

	testrun.Ping(t, a.ns, podB2.String(), 3)
	recs := drain(t, n1)
	logOnFailure(t, recs)
	out := echoes(t, recs, "OBS_FROM_CONTAINER", 8, podA, podB2)
	expectVerdicts(t, "podpath encapsulates for Linux", out, 3, vx, "VERDICT_REDIRECT")
	expectTunnel(t, "podpath encapsulates for Linux", out, "TRACE_ENCAP_VXLAN", podAIdentity, underlay2)
	in := echoes(t, recs, "OBS_FROM_OVERLAY", 0, podB2, podA)
	expectVerdicts(t, "from-overlay delivers what Linux encapsulated", in, 3, a.lxc.Attrs().Index, "VERDICT_REDIRECT_PEER")
	expectTunnel(t, "from-overlay delivers what Linux encapsulated", in, "TRACE_DECAP_VXLAN", podAIdentity, underlay2)

	// The VNI is what Linux goes by: a pod whose identity is not the device's VNI is
	// not reached.
	if err := n1.d.Maps.EndpointUpsert(maps.Endpoint{IP: a.ip, Ifindex: uint32(a.lxc.Attrs().Index), MAC: a.mac,
		HostMAC: lxcAMAC, Identity: podAIdentity + 1}); err != nil {
		t.Fatal(err)
	}
	if out, err := pingOutput(a.ns, "-c", "1", "-W", "1", podB2.String()); err == nil {
		t.Errorf("with VNI %d the plain vxlan device (VNI %d) should not answer:\n%s", podAIdentity+1, podAIdentity, out)
	}
}

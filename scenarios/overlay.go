// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/scenarios/capture"
	"podpath/topology"
)

// overlay describes one tunnel protocol as the scenarios check it.
type overlay struct {
	name     string // vxlan | geneve
	config   string // catalog cilium-config
	port     uint16
	layer    gopacket.LayerType
	tsharkAs string // tshark decode-as for the port, when not its default
}

var (
	vxlanOverlay  = overlay{"vxlan", "vxlan", 8472, layers.LayerTypeVXLAN, "udp.port==8472,vxlan"}
	geneveOverlay = overlay{"geneve", "geneve", 6081, layers.LayerTypeGeneve, ""}
)

// overlayTopologies: MTU 1500, jumbo 9000, and nodes whose first NIC is not the one
// that carries the tunnel.
var overlayTopologies = []string{"l2-two-node-agent", "l2-jumbo-agent", "multi-nic-agent"}

func init() {
	for _, o := range []overlay{vxlanOverlay, geneveOverlay} {
		register(&Scenario{
			Name: o.name + "-mtu",
			Description: fmt.Sprintf("%s overlay on MTU 1500, jumbo 9000 and a two-NIC underlay: outer headers, "+
				"VNI = source identity, inner packet intact, MTU sweep both ways (ICMP/UDP/TCP, DF and not), "+
				"frag-needed with the tunnel MTU, tracepath, iperf3 at full MSS, tshark agrees", strings.ToUpper(o.name)),
			Labels: []string{o.name, "mtu", "overlay"},
			Run: func(ctx context.Context, r *Run) error {
				for _, topo := range overlayTopologies {
					if err := overlayRun(ctx, r, o, topo); err != nil {
						return err
					}
				}
				if o.name == "vxlan" {
					return vxlanInterop(ctx, r)
				}
				return nil
			},
		})
	}
}

// overlayRun checks one tunnel protocol on one topology.
func overlayRun(ctx context.Context, r *Run, o overlay, topo string) error {
	t, agents, err := r.UpWithAgents(ctx, topo, o.config)
	if err != nil {
		return err
	}
	label := o.name + " on " + topo
	n1, _ := t.Node("node1")
	underlay := internalIface(n1)
	st, err := agents.Client("node1").Status(ctx)
	if err != nil {
		return err
	}
	route := underlay.MTU - 50
	r.Check(fmt.Sprintf("%s: agent sizes the tunnel from %s (MTU %d): route MTU %d", label, underlay.Name, underlay.MTU, route),
		fmt.Sprintf("podpath-agent status of node1: device MTU %d (%s), route MTU %d (%s)", st.MTU.Device, st.MTU.DeviceSource, st.MTU.Route, st.MTU.OverheadSource),
		errors.Join(expectEqual("device MTU", underlay.MTU, st.MTU.Device), expectEqual("route MTU", route, st.MTU.Route),
			expectEqual("underlay device", underlay.Name, st.MTU.UnderlayDevice)))
	for _, pod := range []string{"pod1a", "pod2a"} {
		r.Check(fmt.Sprintf("%s: %s's eth0 and default route carry the route MTU %d", label, pod, route),
			pod+": link eth0 MTU and the default route's mtu attribute", podMTUs(t, pod, route, route))
	}
	for _, p := range probeProtocols {
		for _, c := range [][2]string{{"pod1a", "pod2a"}, {"pod2a", "pod1a"}} {
			r.Check(fmt.Sprintf("%s: %s %s -> %s delivered", label, p, c[0], c[1]),
				"the answer of the echo server in "+c[1], Exchange(ctx, t, p, c[0], c[1]))
		}
	}
	if err := overlayWire(ctx, r, t, agents, o, label); err != nil {
		return err
	}
	if err := mtuSweep(ctx, r, t, o, label, route); err != nil {
		return err
	}
	return fragNeeded(ctx, r, t, label, underlay.MTU, route)
}

func internalIface(n topology.Node) topology.Interface {
	for _, i := range n.Interfaces {
		if i.Address.Addr() == n.InternalIP {
			return i
		}
	}
	return n.Interfaces[0]
}

func podMTUs(t *topology.Topology, pod string, linkMTU, routeMTU int) error {
	return t.Do(pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		routes, err := netlink.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var def *netlink.Route
		for i := range routes {
			if routes[i].Dst == nil || routes[i].Dst.String() == "0.0.0.0/0" {
				def = &routes[i]
			}
		}
		if def == nil {
			return errors.New("no default route in the pod")
		}
		return errors.Join(expectEqual("eth0 MTU", linkMTU, l.Attrs().MTU), expectEqual("default route mtu", routeMTU, def.MTU))
	})
}

// overlayWire follows one echo request: on the underlay it is outer IPv4/UDP to the
// tunnel port between the node IPs, its VNI is the source pod's identity, the inner
// frame is what the pod sent (TTL one less), every frame fits the link, the trace
// shows encapsulation and delivery, and tshark decodes the pcap without complaint.
func overlayWire(ctx context.Context, r *Run, t *topology.Topology, agents *Agents, o overlay, label string) error {
	n1, _ := t.Node("node1")
	n2, _ := t.Node("node2")
	from, _ := t.Pod("pod1a")
	to, _ := t.Pod("pod2a")
	u1 := internalIface(n1)
	m1, _ := t.Member("node1")
	mp, _ := t.Member("pod1a")
	dir := filepath.Join(r.Artifacts, strings.ReplaceAll(label, " ", "-"))
	session, err := capture.Start(dir,
		capture.Point{Member: "pod1a", Interface: "eth0", NsPath: mp.NsPath},
		capture.Point{Member: "node1", Interface: u1.Name, NsPath: m1.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	traces, err := OpenTraces(t, "node1", "node2")
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	if err := Exchange(ctx, t, ICMP, "pod1a", "pod2a"); err != nil {
		return err
	}
	// A bulk TCP transfer, for the frame-size check with GSO super-packets.
	bulkErr := bulkTCP(ctx, t, "pod1a", "pod2a", 2<<20)
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}
	eps, err := agents.Client("node1").EndpointList(ctx)
	if err != nil {
		return err
	}
	var identity uint32
	for _, ep := range eps {
		if ep.Name == "pod1a" {
			identity = ep.Identity
		}
	}
	sent := session.Packets("pod1a", "eth0", capture.ICMPEcho(ip(from.IP), ip(to.IP)))
	wire := session.Packets("node1", u1.Name, capture.And(capture.InnerIPv4(ip(from.IP), ip(to.IP)), capture.ICMPEcho(ip(from.IP), ip(to.IP))))
	where := fmt.Sprintf("node1/%s (pcap %s) against pod1a/eth0", u1.Name, session.PcapPath("node1", u1.Name))
	var werr error
	switch {
	case len(sent) == 0:
		werr = errors.New("no echo request seen leaving pod1a")
	case len(wire) == 0:
		werr = fmt.Errorf("no encapsulated echo request on the underlay; seen there:\n%s", evidence(session, Hop{Member: "node1", Interface: u1.Name}))
	default:
		werr = checkEncapsulated(wire[0], sent[0], o, n1.InternalIP, n2.InternalIP, identity)
		r.RecordFlow(label+": ICMP echo request pod1a -> node1's underlay", session,
			[]Hop{{"pod1a", "eth0", true, DefaultTTL, from.MAC}, {"node1", u1.Name, true, DefaultTTL, u1.MAC}},
			[]capture.Packet{sent[0], wire[0]}, werr)
	}
	r.Check(fmt.Sprintf("%s: outer Ethernet/IPv4 %s -> %s/UDP %d, VNI %d = pod1a's identity, inner frame as pod1a sent it (TTL-1)",
		label, n1.InternalIP, n2.InternalIP, o.port, identity), where, werr)

	var big error
	frames := 0
	for _, p := range session.Packets("node1", u1.Name, nil) {
		frames++
		if p.WireFrameLen() > u1.MTU+14 {
			big = fmt.Errorf("frame of %d bytes on a link of MTU %d: %s", p.WireFrameLen(), u1.MTU, p.Summary())
			break
		}
	}
	r.Check(fmt.Sprintf("%s: every frame on the underlay fits MTU %d (%d frames incl. a 2 MiB TCP transfer, GSO segments counted as on the wire)", label, u1.MTU, frames),
		"node1/"+u1.Name+": each frame's length, GSO super-packets by their segment size", errors.Join(bulkErr, big))

	kind := map[string]string{"vxlan": "VXLAN", "geneve": "GENEVE"}[o.name]
	lxc, err := ifindexIn(t, "node2", to.HostVeth)
	if err != nil {
		return err
	}
	r.Check(label+": node1 traces the encapsulation with pod1a's identity and node2 as tunnel endpoint",
		"node1 trace: OBS_FROM_CONTAINER record with tunnel "+kind+", src identity, tunnel endpoint",
		expectTunnelTrace(traces, "node1", from.IP, to.IP, "OBS_FROM_CONTAINER", identity, n2.InternalIP))
	point := "OBS_FROM_NETDEV"
	if o.name == "vxlan" {
		point = "OBS_FROM_OVERLAY"
	}
	r.Check(label+": node2 decapsulates, reads pod1a's identity from the VNI and hands the packet to pod2a with redirect_peer",
		"node2 trace: "+point+" record, verdict, target ifindex, src identity",
		errors.Join(expectTrace(traces, "node2", from.IP, to.IP, ICMP, point, lxc, "VERDICT_REDIRECT_PEER"),
			expectTunnelTrace(traces, "node2", from.IP, to.IP, point, identity, netip.Addr{})))
	r.Check(label+": tshark decodes the underlay pcap as "+kind+" with the same VNI and no malformed packet",
		"tshark -r "+session.PcapPath("node1", u1.Name), tsharkAgrees(ctx, session.PcapPath("node1", u1.Name), o, identity))
	return nil
}

func checkEncapsulated(outer, sent capture.Packet, o overlay, src, dst netip.Addr, identity uint32) error {
	d := outer.Decode()
	ip4, _ := d.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	udp, _ := d.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if ip4 == nil || udp == nil {
		return fmt.Errorf("not IPv4/UDP: %s", outer.Summary())
	}
	var errs []error
	if ip4.SrcIP.String() != src.String() || ip4.DstIP.String() != dst.String() {
		errs = append(errs, fmt.Errorf("outer %s -> %s, want the node IPs %s -> %s", ip4.SrcIP, ip4.DstIP, src, dst))
	}
	if uint16(udp.DstPort) != o.port {
		errs = append(errs, fmt.Errorf("UDP destination port %d, want %d", udp.DstPort, o.port))
	}
	var vni uint32
	var inner []byte
	switch l := d.Layer(o.layer).(type) {
	case *layers.VXLAN:
		vni, inner = l.VNI, l.LayerPayload()
	case *layers.Geneve:
		vni, inner = l.VNI, l.LayerPayload()
	default:
		return errors.Join(append(errs, fmt.Errorf("no %s header: %s", o.name, outer.Summary()))...)
	}
	if vni != identity {
		errs = append(errs, fmt.Errorf("VNI %d, want pod1a's identity %d", vni, identity))
	}
	errs = append(errs, sameExceptTTL(sent.Data, inner))
	return errors.Join(errs...)
}

// sameExceptTTL compares the inner frame with what the pod sent: equal but for the IPv4
// TTL (one less) and header checksum.
func sameExceptTTL(sent, inner []byte) error {
	const ttlOff, csumOff = 14 + 8, 14 + 10
	if len(sent) != len(inner) {
		return fmt.Errorf("inner frame %d bytes, the pod sent %d", len(inner), len(sent))
	}
	if inner[ttlOff] != sent[ttlOff]-1 {
		return fmt.Errorf("inner TTL %d, want %d (one less than sent)", inner[ttlOff], sent[ttlOff]-1)
	}
	a, b := bytes.Clone(sent), bytes.Clone(inner)
	for _, i := range []int{ttlOff, csumOff, csumOff + 1} {
		a[i], b[i] = 0, 0
	}
	if !bytes.Equal(a, b) {
		for i := range a {
			if a[i] != b[i] {
				return fmt.Errorf("inner frame differs from what the pod sent at byte %d: sent % x, inner % x", i, a[i:min(i+8, len(a))], b[i:min(i+8, len(b))])
			}
		}
	}
	return nil
}

func expectTunnelTrace(tr *Traces, node string, src, dst netip.Addr, point string, identity uint32, endpoint netip.Addr) error {
	n := tr.Names()
	for _, rec := range tr.Find(node, func(rec traceRecord) bool {
		return rec.Pkt.Src == src && rec.Pkt.Dst == dst && n.ObsPoint(rec.ObsPoint) == point && rec.Tunnel != 0
	}) {
		if rec.SrcIdentity == identity && (!endpoint.IsValid() || rec.TunnelEndpoint == endpoint) {
			return nil
		}
	}
	return fmt.Errorf("no %s tunnel record with identity %d (endpoint %v) for %s -> %s on %s; records:\n%s", point, identity, endpoint, src, dst, node, tr.Dump(node))
}

func tsharkAgrees(ctx context.Context, pcap string, o overlay, identity uint32) error {
	if _, err := exec.LookPath("tshark"); err != nil {
		return errors.New("tshark is not installed (Debian package tshark): the independent dissector check cannot run")
	}
	args := []string{"-r", pcap, "-n"}
	if o.tsharkAs != "" {
		args = append(args, "-d", o.tsharkAs)
	}
	fields := append(append([]string(nil), args...), "-Y", o.name, "-T", "fields", "-e", o.name+".vni")
	// stdout only: as root tshark warns on stderr.
	out, err := exec.CommandContext(ctx, "tshark", fields...).Output()
	if err != nil {
		return fmt.Errorf("tshark: %w", err)
	}
	vnis := strings.Fields(string(out))
	if len(vnis) == 0 {
		return fmt.Errorf("tshark found no %s packet in %s", o.name, pcap)
	}
	found := false
	for _, v := range vnis {
		// tshark prints the Geneve VNI in hex (0x005f34), the VXLAN one in decimal.
		n, err := strconv.ParseUint(v, 0, 32)
		found = found || err == nil && uint32(n) == identity
	}
	if !found {
		return fmt.Errorf("tshark's VNIs %v do not include %d", vnis[:min(len(vnis), 8)], identity)
	}
	verbose, err := exec.CommandContext(ctx, "tshark", append(args, "-V")...).Output()
	if err != nil {
		return fmt.Errorf("tshark -V: %w", err)
	}
	for _, bad := range []string{"Malformed", "[Expert Info (Error"} {
		if i := bytes.Index(verbose, []byte(bad)); i >= 0 {
			return fmt.Errorf("tshark reports %q: ...%s...", bad, verbose[max(0, i-200):min(len(verbose), i+200)])
		}
	}
	return nil
}

// bulkTCP sends n bytes from src to dst's echo server and reads them back.
func bulkTCP(ctx context.Context, t *topology.Topology, src, dst string, n int) error {
	to, err := t.Pod(dst)
	if err != nil {
		return err
	}
	server, err := startEcho(t, TCP, dst)
	if err != nil {
		return err
	}
	defer server.Close()
	return t.Do(src, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", netip.AddrPortFrom(to.IP, probePort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 64<<10)
			got := 0
			for got < n {
				k, err := c.Read(buf)
				if err != nil {
					done <- fmt.Errorf("read back after %d of %d bytes: %w", got, n, err)
					return
				}
				got += k
			}
			done <- nil
		}()
		if _, err := c.Write(make([]byte, n)); err != nil {
			return fmt.Errorf("bulk TCP %s -> %s: %w", src, dst, err)
		}
		return <-done
	})
}

// sendUDP sends one datagram of size payload bytes from src to dst's echo server with
// DF set (df) or clear and checks the whole datagram comes back.
func sendUDP(ctx context.Context, t *topology.Topology, src, dst string, size int, df bool) error {
	to, err := t.Pod(dst)
	if err != nil {
		return err
	}
	server, err := startEcho(t, UDP, dst)
	if err != nil {
		return err
	}
	defer server.Close()
	return t.Do(src, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
			mode := unix.IP_PMTUDISC_DONT
			if df {
				mode = unix.IP_PMTUDISC_DO
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, mode) })
			return errors.Join(err, serr)
		}}
		c, err := d.DialContext(ctx, "udp4", netip.AddrPortFrom(to.IP, probePort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		msg := bytes.Repeat([]byte{0xa5}, size)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		buf := make([]byte, size+1)
		k, err := c.Read(buf)
		if err != nil {
			return err
		}
		if k != size {
			return fmt.Errorf("echo of %d bytes, sent %d", k, size)
		}
		return nil
	})
}

// mtuSweep: in both directions, every size up to the route MTU crosses unfragmented
// with DF (ICMP, UDP), one byte more with DF is refused with the route MTU, and without
// DF it is fragmented by the sender and arrives whole; tracepath finds the path MTU and
// iperf3 runs at full MSS without a retransmission storm.
func mtuSweep(ctx context.Context, r *Run, t *topology.Topology, o overlay, label string, route int) error {
	for _, c := range [][2]string{{"pod1a", "pod2a"}, {"pod2a", "pod1a"}} {
		src, dst := c[0], c[1]
		to, _ := t.Pod(dst)
		dir := src + " -> " + dst
		var errs []error
		for _, size := range []int{64, route / 2, route - 28} {
			if out, err := t.Exec(ctx, src, "ping", "-c1", "-W2", "-M", "do", "-s", strconv.Itoa(size), to.IP.String()); err != nil {
				errs = append(errs, fmt.Errorf("ICMP payload %d: %w: %s", size, err, out))
			}
			if err := sendUDP(ctx, t, src, dst, size, true); err != nil {
				errs = append(errs, fmt.Errorf("UDP payload %d with DF: %w", size, err))
			}
		}
		r.Check(fmt.Sprintf("%s: %s: with DF, ICMP and UDP up to the route MTU (%d bytes) cross", label, dir, route),
			"echo replies to ping -M do -s 64/half/"+strconv.Itoa(route-28)+" and UDP echoes with IP_PMTUDISC_DO", errors.Join(errs...))

		out, err := t.Exec(ctx, src, "ping", "-c1", "-W2", "-M", "do", "-s", strconv.Itoa(route-27), to.IP.String())
		var oerr error
		if err == nil || !strings.Contains(string(out), "mtu="+strconv.Itoa(route)) && !strings.Contains(string(out), "mtu = "+strconv.Itoa(route)) {
			oerr = fmt.Errorf("want the send refused with mtu %d, got: %s", route, out)
		}
		uerr := sendUDP(ctx, t, src, dst, route-27, true)
		if uerr == nil || !errors.Is(uerr, unix.EMSGSIZE) {
			oerr = errors.Join(oerr, fmt.Errorf("UDP %d bytes with DF: want EMSGSIZE, got %v", route-27, uerr))
		}
		r.Check(fmt.Sprintf("%s: %s: one byte over the route MTU with DF is refused, naming MTU %d", label, dir, route),
			"ping -M do -s "+strconv.Itoa(route-27)+" output; UDP send error", oerr)

		var ferr error
		if out, err := t.Exec(ctx, src, "ping", "-c1", "-W2", "-M", "dont", "-s", strconv.Itoa(route-27), to.IP.String()); err != nil {
			ferr = fmt.Errorf("ICMP: %w: %s", err, out)
		}
		ferr = errors.Join(ferr, sendUDP(ctx, t, src, dst, 2*route, false))
		r.Check(fmt.Sprintf("%s: %s: without DF, larger packets are fragmented by the sender and arrive whole", label, dir),
			"ping -M dont -s "+strconv.Itoa(route-27)+" reply; UDP echo of "+strconv.Itoa(2*route)+" bytes", ferr)
	}
	to, _ := t.Pod("pod2a")
	out, err := t.Exec(ctx, "pod1a", "tracepath", "-n", to.IP.String())
	if err == nil && !strings.Contains(string(out), "pmtu "+strconv.Itoa(route)) {
		err = fmt.Errorf("want pmtu %d in:\n%s", route, out)
	}
	r.Check(fmt.Sprintf("%s: tracepath from pod1a reports path MTU %d", label, route), "tracepath -n output", err)

	res, err := IPerf3(ctx, t, "pod1a", "pod2a", to.IP, 2)
	if err == nil {
		segs := res.BitsPerSecond * res.Seconds / 8 / float64(max(res.MSS, 1))
		switch {
		// iperf3 reports the effective send MSS: route MTU - 40, less the 12 bytes of the
		// timestamp option Linux puts on every segment (net.ipv4.tcp_timestamps=1).
		case res.MSS != 0 && res.MSS != route-40 && res.MSS != route-52:
			err = fmt.Errorf("MSS %d, want %d (route MTU - 40, or - 52 with TCP timestamps)", res.MSS, route-52)
		case float64(res.Retransmits) > 0.01*segs+10:
			err = fmt.Errorf("%d retransmissions for ~%.0f segments", res.Retransmits, segs)
		}
	}
	r.Check(fmt.Sprintf("%s: iperf3 pod1a -> pod2a at full MSS without a retransmission storm (%.2f Gbit/s, %d retransmits, MSS %d)", label, res.Gbps(), res.Retransmits, res.MSS),
		"iperf3 -J: MSS and retransmits", err)
	return nil
}

// fragNeeded makes pod1a a sender that does not know the tunnel (eth0 and route at the
// device MTU): its DF packet over the tunnel MTU must be answered with ICMP
// fragmentation-needed carrying the route MTU, and TCP must converge (PMTUD).
func fragNeeded(ctx context.Context, r *Run, t *topology.Topology, label string, deviceMTU, route int) error {
	from, _ := t.Pod("pod1a")
	to, _ := t.Pod("pod2a")
	if err := setPodMTU(t, "pod1a", deviceMTU, 0); err != nil {
		return err
	}
	defer setPodMTU(t, "pod1a", route, route)
	mp, _ := t.Member("pod1a")
	session, err := capture.Start(filepath.Join(r.Artifacts, strings.ReplaceAll(label, " ", "-"), "frag-needed"),
		capture.Point{Member: "pod1a", Interface: "eth0", NsPath: mp.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	out, _ := t.Exec(ctx, "pod1a", "ping", "-c1", "-W2", "-M", "do", "-s", strconv.Itoa(route-27), to.IP.String())
	pkts, werr := session.WaitFor(ctx, "pod1a", "eth0", func(p gopacket.Packet) bool {
		icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return icmp != nil && icmp.TypeCode == layers.CreateICMPv4TypeCode(3, 4)
	}, 1)
	var ferr error
	if werr != nil {
		ferr = fmt.Errorf("no ICMP frag-needed reached pod1a (ping said: %s)", strings.TrimSpace(string(out)))
	} else if icmp := pkts[0].Decode().Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); int(icmp.Seq) != route {
		ferr = fmt.Errorf("next-hop MTU %d, want %d: %s", icmp.Seq, route, pkts[0].Summary())
	}
	r.Check(fmt.Sprintf("%s: a DF packet over the tunnel MTU from a sender unaware of it gets ICMP frag-needed with MTU %d", label, route),
		"pod1a/eth0 capture (pcap "+session.PcapPath("pod1a", "eth0")+"): ICMP type 3 code 4, next-hop MTU", ferr)
	r.Check(label+": TCP from that sender converges (PMTUD) and a 2 MiB transfer completes",
		"bulk TCP pod1a -> pod2a echo", bulkTCP(ctx, t, from.Name, to.Name, 2<<20))
	return nil
}

// setPodMTU sets a pod's eth0 MTU and its default route's mtu (0: none).
func setPodMTU(t *topology.Topology, pod string, linkMTU, routeMTU int) error {
	return t.Do(pod, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		if err := netlink.LinkSetMTU(l, linkMTU); err != nil {
			return err
		}
		routes, err := netlink.RouteList(l, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if rt.Dst == nil || rt.Dst.String() == "0.0.0.0/0" {
				rt.MTU = routeMTU
				// Cached path MTUs of the previous setting would hide the next test.
				_ = netlink.RouteReplace(&rt)
			}
		}
		return exec.Command("ip", "route", "flush", "cache").Run()
	})
}

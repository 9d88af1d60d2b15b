// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
	"podpath/topology"
)

// overlay describes one tunnel protocol as the scenarios check it.
type overlay struct {
	name     string // vxlan | geneve
	port     uint16
	layer    gopacket.LayerType
	tsharkAs string // tshark decode-as for the port, when not its default
}

var overlays = map[string]overlay{
	"vxlan":  {"vxlan", 8472, layers.LayerTypeVXLAN, "udp.port==8472,vxlan"},
	"geneve": {"geneve", 6081, layers.LayerTypeGeneve, ""},
}

func init() {
	scenarios.RegisterStep(scenarios.StepDef[tunnelMTUWith, tunnelMTUExpect]{
		Name: "tunnel-mtu",
		Summary: "the agent's MTU plan (device MTU, route MTU = device MTU - tunnel overhead), the route the node's kernel uses to " +
			"every other node's pods (its mtu = the topology's underlay path MTU - tunnel overhead) and the route MTU on pods' eth0 and default route",
		Agents:  true,
		Timeout: 30 * time.Second,
		Run:     runTunnelMTU,
	})
	scenarios.RegisterStep(scenarios.StepDef[overlayWith, overlayExpect]{
		Name: "overlay-headers",
		Summary: "one echo request over the tunnel: outer headers between the node IPs to the tunnel port, VNI = the " +
			"source pod's identity, inner frame as sent; every underlay frame fits the link (with a 2 MiB TCP " +
			"transfer); traces of encapsulation and decapsulation; tshark agrees",
		Agents:  true,
		Timeout: 2 * time.Minute, // a 2 MiB transfer and tshark twice
		Run:     runOverlayHeaders,
	})
	scenarios.RegisterStep(scenarios.StepDef[podPairWith, mtuSweepExpect]{
		Name: "mtu-sweep",
		Summary: "both ways: DF packets (ICMP, UDP) up to the route MTU cross, one byte more is refused naming the " +
			"MTU, without DF they arrive whole; tracepath finds the path MTU; iperf3 runs at full MSS",
		Timeout: 3 * time.Minute, // two directions of pings and datagrams, tracepath, iperf3
		Run:     runMTUSweep,
	})
	scenarios.RegisterStep(scenarios.StepDef[fragNeededWith, fragNeededExpect]{
		Name: "frag-needed",
		Summary: "a sender unaware of the tunnel (eth0 and route at the device MTU) gets ICMP frag-needed with the " +
			"route MTU for a DF packet over it, and TCP converges (PMTUD)",
		Timeout: time.Minute, // a ping, the ICMP, a 2 MiB transfer
		Run:     runFragNeeded,
	})
}

type tunnelMTUWith struct {
	Node  scenarios.NodeRef  `json:"node" required:"true" doc:"whose agent's MTU plan is read"`
	Pods  []scenarios.PodRef `json:"pods" doc:"pods whose eth0 and default route must carry the route MTU"`
	Label string             `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

type tunnelMTUExpect struct {
	RouteMTU  int    `json:"routeMTU" required:"true" range:"68..65535" doc:"the MTU pods get: device MTU - 50 with VXLAN or Geneve over IPv4"`
	DeviceMTU int    `json:"deviceMTU" range:"68..65535" doc:"the underlay device's MTU (default: the MTU of the node's internal interface in the topology)"`
	Device    string `json:"device" doc:"the underlay device the agent sizes the tunnel from (default: the node's internal interface)"`
}

// runTunnelMTU checks the agent's MTU plan and that pods got the route MTU.
func runTunnelMTU(ctx context.Context, s *scenarios.Stage, w tunnelMTUWith, e tunnelMTUExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	label := s.Label(w.Label)
	n, err := s.T.Node(string(w.Node))
	if err != nil {
		return err
	}
	underlay := internalIface(n)
	device, deviceMTU := cmp.Or(e.Device, underlay.Name), cmp.Or(e.DeviceMTU, underlay.MTU)
	actx, cancel := agentCall(ctx)
	defer cancel()
	st, err := agents.Client(n.Name).Status(actx)
	if err != nil {
		return err
	}
	route := e.RouteMTU
	s.Check(fmt.Sprintf("%s: agent sizes the tunnel from %s (MTU %d): route MTU %d", label, device, deviceMTU, route),
		fmt.Sprintf("podpath-agent status of %s: device MTU %d (%s), route MTU %d (%s)", n.Name, st.MTU.Device, st.MTU.DeviceSource, st.MTU.Route, st.MTU.OverheadSource),
		errors.Join(expectEqual("device MTU", deviceMTU, st.MTU.Device), expectEqual("route MTU", route, st.MTU.Route),
			expectEqual("underlay device", device, st.MTU.UnderlayDevice)))
	if err := kernelTunnelRoutes(ctx, s, label, n); err != nil {
		return err
	}
	for _, pod := range w.Pods {
		s.Check(fmt.Sprintf("%s: %s's eth0 and default route carry the route MTU %d", label, pod, route),
			string(pod)+": link eth0 MTU and the default route's mtu attribute", podMTUs(s.T, string(pod), route, route))
	}
	return nil
}

// kernelTunnelRoutes checks, for every other node, the route node n's kernel really
// uses toward that node's pods (`ip route get`, with its mtu) against the tunnel MTU the
// topology gives: the underlay path MTU between the two nodes less the tunnel overhead.
func kernelTunnelRoutes(ctx context.Context, s *scenarios.Stage, label string, n topology.Node) error {
	oracle, how, err := stageOracle(s)
	if err != nil {
		return err
	}
	overhead := oracle.Options().TunnelOverhead
	if oracle.Options().Tunnel == "" {
		return nil // native routing: no tunnel route to size
	}
	for _, peer := range s.T.Nodes() {
		if peer.Name == n.Name {
			continue
		}
		under, err := oracle.NodeToNode(n.Name, peer.Name)
		if err != nil {
			return err
		}
		want := under.MTU() - overhead
		if c := configRouteMTU(s, oracle); c != 0 && c < want {
			want = c
		}
		dst := peer.PodCIDR.Addr().Next().Next()
		if len(peer.Pods) > 0 {
			dst = peer.Pods[0].IP
		}
		if native, err := crossSubnetNative(oracle, n.Name, dst); err != nil {
			return err
		} else if native {
			nativeKernelRoute(ctx, s, label, n, peer.Name, dst, under)
			continue
		}
		got, out, rerr := kernelRouteMTU(ctx, s.T, n.Name, dst)
		if rerr == nil && got != want {
			rerr = fmt.Errorf("route mtu %d, want %d: underlay path MTU %d - %d (%s):\n%s\n  ip route get %s:\n%s",
				got, want, under.MTU(), overhead, how, indent(under.String()), dst, indent(out))
		}
		s.Check(fmt.Sprintf("%s: %s's kernel route to %s's pods carries the tunnel MTU %d (underlay path MTU %d - %d)", label, n.Name, peer.Name, want, under.MTU(), overhead),
			fmt.Sprintf("%s: ip route get %s (netlink RTM_GETROUTE, the mtu metric)", n.Name, dst), rerr)
	}
	return nil
}

// kernelRouteMTU asks member's kernel for its route to dst and returns the route's mtu
// metric (0: none) and the `ip route get` text for evidence.
func kernelRouteMTU(ctx context.Context, t topology.Cluster, member string, dst netip.Addr) (int, string, error) {
	mtu := 0
	err := t.Do(member, func() error {
		routes, err := netlink.RouteGet(dst.AsSlice())
		if err != nil {
			return fmt.Errorf("route get %s: %w", dst, err)
		}
		if len(routes) == 0 {
			return fmt.Errorf("route get %s: no route", dst)
		}
		mtu = routes[0].MTU
		return nil
	})
	out, _ := t.Exec(ctx, member, "ip", "route", "get", dst.String())
	return mtu, strings.TrimSpace(string(out)), err
}

type overlayWith struct {
	From   scenarios.PodRef `json:"from" required:"true" doc:"the pod that sends"`
	To     scenarios.PodRef `json:"to" required:"true" doc:"the pod that answers, on another node"`
	Tunnel string           `json:"tunnel" required:"true" oneOf:"vxlan,geneve" doc:"the encapsulation on the wire"`
	Label  string           `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

func (w *overlayWith) Validate(e strictyaml.FieldErrors) { checkOtherNode(e, w.From, w.To) }

type overlayExpect struct {
	Port uint16 `json:"port" range:"1..65535" doc:"the tunnel's UDP destination port (default: 8472 for vxlan, 6081 for geneve)"`
}

func runOverlayHeaders(ctx context.Context, s *scenarios.Stage, w overlayWith, e overlayExpect) error {
	o := overlays[w.Tunnel]
	if e.Port != 0 {
		o.port = e.Port
		if o.tsharkAs != "" {
			o.tsharkAs = fmt.Sprintf("udp.port==%d,%s", e.Port, o.name)
		}
	}
	return overlayWire(ctx, s, o, s.Label(w.Label), string(w.From), string(w.To))
}

func podMTUs(t topology.Cluster, pod string, linkMTU, routeMTU int) error {
	l, r, err := podMTU(t, pod)
	if err != nil {
		return err
	}
	return errors.Join(expectEqual("eth0 MTU", linkMTU, l), expectEqual("default route mtu", routeMTU, r))
}

// podMTU reads a pod's eth0 MTU and its default route's mtu attribute (0: none).
func podMTU(t topology.Cluster, pod string) (linkMTU, routeMTU int, err error) {
	err = t.Do(pod, func() error {
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
		linkMTU, routeMTU = l.Attrs().MTU, def.MTU
		return nil
	})
	return linkMTU, routeMTU, err
}

// overlayWire follows one echo request: on the underlay it is outer IPv4/UDP to the
// tunnel port between the node IPs, its VNI is the source pod's identity, the inner
// frame is what the pod sent (TTL one less), every frame fits the link, the trace
// shows encapsulation and delivery, and tshark decodes the pcap without complaint.
func overlayWire(ctx context.Context, r *scenarios.Stage, o overlay, label, src, dst string) error {
	t := r.T
	agents, err := r.Agents()
	if err != nil {
		return err
	}
	from, _ := t.Pod(src)
	to, _ := t.Pod(dst)
	n1, _ := t.Node(from.Node)
	n2, _ := t.Node(to.Node)
	u1 := internalIface(n1)
	m1, _ := t.Member(n1.Name)
	mp, _ := t.Member(src)
	dir := filepath.Join(r.Artifacts, strings.ReplaceAll(label, " ", "-"))
	session, err := capture.Start(dir,
		capture.Point{Member: src, Interface: "eth0", NsPath: mp.NsPath},
		capture.Point{Member: n1.Name, Interface: u1.Name, NsPath: m1.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	traces, err := r.OpenTraces(t, n1.Name, n2.Name)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	// An echo that goes unanswered is evidence for the checks below, not the end of
	// the scenario.
	exErr := probe.Exchange(ctx, t, probe.ICMP, src, dst)
	// A bulk TCP transfer, for the frame-size check with GSO super-packets.
	bulkErr := probe.BulkTCP(ctx, t, src, dst, 2<<20)
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}
	actx, cancel := agentCall(ctx)
	defer cancel()
	eps, err := agents.Client(n1.Name).EndpointList(actx)
	if err != nil {
		return err
	}
	var identity uint32
	for _, ep := range eps {
		if ep.Name == src {
			identity = ep.Identity
		}
	}
	sent := session.Packets(src, "eth0", capture.ICMPEcho(ip(from.IP), ip(to.IP)))
	wire := session.Packets(n1.Name, u1.Name, capture.And(capture.InnerIPv4(ip(from.IP), ip(to.IP)), capture.ICMPEcho(ip(from.IP), ip(to.IP))))
	where := fmt.Sprintf("%s/%s (pcap %s) against %s/eth0", n1.Name, u1.Name, session.PcapPath(n1.Name, u1.Name), src)
	var werr error
	switch {
	case len(sent) == 0:
		werr = errors.New("no echo request seen leaving " + src)
	case len(wire) == 0:
		werr = fmt.Errorf("no encapsulated echo request on the underlay; seen there:\n%s", hops.Evidence(session, hops.Hop{Member: n1.Name, Interface: u1.Name}))
	default:
		werr = checkEncapsulated(wire[0], sent[0], o, n1.InternalIP, n2.InternalIP, identity, src)
		r.RecordFlow(fmt.Sprintf("%s: ICMP echo request %s -> %s's underlay", label, src, n1.Name), session,
			[]hops.Hop{
				{Member: src, Interface: "eth0", Outgoing: true, TTL: hops.DefaultTTL, MAC: from.MAC},
				{Member: n1.Name, Interface: u1.Name, Outgoing: true, TTL: hops.DefaultTTL, MAC: u1.MAC}},
			[]capture.Packet{sent[0], wire[0]}, werr)
	}
	if werr != nil && exErr != nil {
		werr = fmt.Errorf("%w\n(the echo itself: %w)", werr, exErr)
	}
	r.Check(fmt.Sprintf("%s: outer Ethernet/IPv4 %s -> %s/UDP %d, VNI %d = %s's identity, inner frame as %s sent it (TTL-1)",
		label, n1.InternalIP, n2.InternalIP, o.port, identity, src, src), where, werr)

	var big error
	frames := 0
	for _, p := range session.Packets(n1.Name, u1.Name, nil) {
		frames++
		if p.WireFrameLen() > u1.MTU+14 {
			big = fmt.Errorf("frame of %d bytes on a link of MTU %d: %s", p.WireFrameLen(), u1.MTU, p.Summary())
			break
		}
	}
	r.Check(fmt.Sprintf("%s: every frame on the underlay fits MTU %d (%d frames incl. a 2 MiB TCP transfer, GSO segments counted as on the wire)", label, u1.MTU, frames),
		n1.Name+"/"+u1.Name+": each frame's length, GSO super-packets by their segment size", errors.Join(bulkErr, big))

	kind := strings.ToUpper(o.name)
	lxc, err := ifindexIn(t, n2.Name, to.HostVeth)
	if err != nil {
		return err
	}
	r.Check(fmt.Sprintf("%s: %s traces the encapsulation with %s's identity and %s as tunnel endpoint", label, n1.Name, src, n2.Name),
		n1.Name+" trace: OBS_FROM_CONTAINER record with tunnel "+kind+", src identity, tunnel endpoint",
		expectTunnelTrace(traces, n1.Name, from.IP, to.IP, "OBS_FROM_CONTAINER", identity, n2.InternalIP))
	point := "OBS_FROM_NETDEV"
	if o.name == "vxlan" {
		point = "OBS_FROM_OVERLAY"
	}
	r.Check(fmt.Sprintf("%s: %s decapsulates, reads %s's identity from the VNI and hands the packet to %s with redirect_peer", label, n2.Name, src, dst),
		n2.Name+" trace: "+point+" record, verdict, target ifindex, src identity",
		errors.Join(expectTrace(traces, n2.Name, from.IP, to.IP, probe.ICMP, point, lxc, "VERDICT_REDIRECT_PEER"),
			expectTunnelTrace(traces, n2.Name, from.IP, to.IP, point, identity, netip.Addr{})))
	pcap := session.PcapPath(n1.Name, u1.Name)
	r.Check(label+": tshark decodes the underlay pcap as "+kind+" with the same VNI and no malformed packet",
		"tshark -r "+pcap, tsharkAgrees(ctx, pcap, o, identity))
	return overlayFields(ctx, r, o, label, src, dst, identity)
}

func checkEncapsulated(outer, sent capture.Packet, o overlay, src, dst netip.Addr, identity uint32, pod string) error {
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
		errs = append(errs, fmt.Errorf("VNI %d, want %s's identity %d", vni, pod, identity))
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

func expectTunnelTrace(tr *trace.Collector, node string, src, dst netip.Addr, point string, identity uint32, endpoint netip.Addr) error {
	n := tr.Names()
	for _, rec := range tr.Find(node, func(rec trace.Record) bool {
		return rec.Pkt.Src == src && rec.Pkt.Dst == dst && n.ObsPoint(rec.ObsPoint) == point && rec.Tunnel != 0
	}) {
		if rec.SrcIdentity == identity && (!endpoint.IsValid() || rec.TunnelEndpoint == endpoint) {
			return nil
		}
	}
	return fmt.Errorf("no %s tunnel record with identity %d (endpoint %v) for %s -> %s on %s; records:\n%s", point, identity, endpoint, src, dst, node, tr.Dump(node))
}

func tsharkAgrees(ctx context.Context, pcap string, o overlay, identity uint32) error {
	ctx, cancel := context.WithTimeout(ctx, tsharkWait)
	defer cancel()
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

// mtuSweep: in both directions, every size up to the route MTU crosses unfragmented
// with DF (ICMP, UDP), one byte more with DF is refused with the route MTU, and without
// DF it is fragmented by the sender and arrives whole; tracepath finds the path MTU and
// iperf3 runs at full MSS without a retransmission storm.
type mtuSweepExpect struct {
	RouteMTU int `json:"routeMTU" required:"true" range:"68..65535" doc:"the path MTU between the pods; it must agree with the topology's (the smallest link on the way, less the tunnel overhead in tunnel mode), else the first check fails"`
}

func runMTUSweep(ctx context.Context, s *scenarios.Stage, w podPairWith, e mtuSweepExpect) error {
	t, label := s.T, s.Label(w.Label)
	a, b := string(w.From), string(w.To)
	route, mismatch, err := expectedMTU(s, a, b, e.RouteMTU, "routeMTU")
	if err != nil {
		return err
	}
	for _, c := range [][2]string{{a, b}, {b, a}} {
		src, dst := c[0], c[1]
		to, _ := t.Pod(dst)
		dir := src + " -> " + dst
		var errs []error
		if mismatch != "" {
			errs = append(errs, errors.New(mismatch))
		}
		for _, size := range []int{64, route / 2, route - 28} {
			if out, err := probe.PingSized(ctx, t, src, to.IP, size, true); err != nil {
				errs = append(errs, fmt.Errorf("ICMP payload %d: %w: %s", size, err, out))
			}
			if err := probe.SendUDP(ctx, t, src, dst, size, true); err != nil {
				errs = append(errs, fmt.Errorf("UDP payload %d with DF: %w", size, err))
			}
		}
		s.Check(fmt.Sprintf("%s: %s: with DF, ICMP and UDP up to the route MTU (%d bytes) cross", label, dir, route),
			"echo replies to ping -M do -s 64/half/"+strconv.Itoa(route-28)+" and UDP echoes with IP_PMTUDISC_DO", errors.Join(errs...))
		if mismatch == "" {
			fullSizeEncapsulated(ctx, s, label, src, dst, route)
		}

		out, err := probe.PingSized(ctx, t, src, to.IP, route-27, true)
		var oerr error
		if err == nil || !strings.Contains(string(out), "mtu="+strconv.Itoa(route)) && !strings.Contains(string(out), "mtu = "+strconv.Itoa(route)) {
			oerr = fmt.Errorf("want the send refused with mtu %d, got: %s", route, out)
		}
		uerr := probe.SendUDP(ctx, t, src, dst, route-27, true)
		if uerr == nil || !errors.Is(uerr, unix.EMSGSIZE) {
			oerr = errors.Join(oerr, fmt.Errorf("UDP %d bytes with DF: want EMSGSIZE, got %v", route-27, uerr))
		}
		s.Check(fmt.Sprintf("%s: %s: one byte over the route MTU with DF is refused, naming MTU %d", label, dir, route),
			"ping -M do -s "+strconv.Itoa(route-27)+" output; UDP send error", oerr)

		var ferr error
		if out, err := probe.PingSized(ctx, t, src, to.IP, route-27, false); err != nil {
			ferr = fmt.Errorf("ICMP: %w: %s", err, out)
		}
		ferr = errors.Join(ferr, probe.SendUDP(ctx, t, src, dst, 2*route, false))
		s.Check(fmt.Sprintf("%s: %s: without DF, larger packets are fragmented by the sender and arrive whole", label, dir),
			"ping -M dont -s "+strconv.Itoa(route-27)+" reply; UDP echo of "+strconv.Itoa(2*route)+" bytes", ferr)
	}
	to, _ := t.Pod(b)
	out, err := probe.Tracepath(ctx, t, a, to.IP)
	if err == nil && !strings.Contains(string(out), "pmtu "+strconv.Itoa(route)) {
		err = fmt.Errorf("want pmtu %d in:\n%s", route, out)
	}
	s.Check(fmt.Sprintf("%s: tracepath from %s reports path MTU %d", label, a, route), "tracepath -n output", err)

	res, err := probe.IPerf3(ctx, t, a, b, to.IP, 2)
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
	s.Check(fmt.Sprintf("%s: iperf3 %s -> %s at full MSS without a retransmission storm (%.2f Gbit/s, %d retransmits, MSS %d)", label, a, b, res.Gbps(), res.Retransmits, res.MSS),
		"iperf3 -J: MSS and retransmits", err)
	return nil
}

// fragNeededWait is how long frag-needed waits, after the ping that provoked it ended,
// for the ICMP error to show in the capture.
const fragNeededWait = time.Second

// tsharkWait bounds one tshark run over a step's pcap (a few MiB).
const tsharkWait = 30 * time.Second

// agentCallWait bounds one call to an agent's API (a local socket, a map dump).
const agentCallWait = 10 * time.Second

// agentCall returns ctx bounded by agentCallWait, for one call to an agent's API.
func agentCall(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, agentCallWait)
}

type fragNeededWith struct {
	From      scenarios.PodRef `json:"from" required:"true" doc:"the sender made unaware of the tunnel"`
	To        scenarios.PodRef `json:"to" required:"true" doc:"the pod it sends to, on another node"`
	SenderMTU int              `json:"senderMTU" range:"68..65535" doc:"the MTU the sender believes in, on eth0 and its default route (default: the MTU of its node's internal interface)"`
	Label     string           `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

func (w *fragNeededWith) Validate(e strictyaml.FieldErrors) { checkOtherNode(e, w.From, w.To) }

type fragNeededExpect struct {
	MTU int `json:"mtu" required:"true" range:"68..65535" doc:"the next-hop MTU the ICMP frag-needed carries: the route MTU; it must agree with the topology's path MTU between the pods (less the tunnel overhead in tunnel mode), else the check fails"`
}

// runFragNeeded makes a pod a sender that does not know the tunnel (eth0 and route at
// the device MTU): its DF packet over the tunnel MTU must be answered with ICMP
// fragmentation-needed carrying the route MTU, and TCP must converge (PMTUD).
func runFragNeeded(ctx context.Context, s *scenarios.Stage, w fragNeededWith, e fragNeededExpect) error {
	t, label := s.T, s.Label(w.Label)
	route, mismatch, err := expectedMTU(s, string(w.From), string(w.To), e.MTU, "mtu")
	if err != nil {
		return err
	}
	from, _ := t.Pod(string(w.From))
	to, _ := t.Pod(string(w.To))
	n, _ := t.Node(from.Node)
	linkMTU, routeMTU, err := podMTU(t, from.Name)
	if err != nil {
		return err
	}
	if err := setPodMTU(t, from.Name, cmp.Or(w.SenderMTU, internalIface(n).MTU), 0); err != nil {
		return err
	}
	defer setPodMTU(t, from.Name, linkMTU, routeMTU)
	mp, _ := t.Member(from.Name)
	session, err := capture.Start(filepath.Join(s.Artifacts, strings.ReplaceAll(label, " ", "-"), "frag-needed"),
		capture.Point{Member: from.Name, Interface: "eth0", NsPath: mp.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	// The ping waits 2 s for its reply; the frag-needed answers its request at once, so
	// by the time ping gives up it has long been captured: fragNeededWait is for the
	// capture to catch up.
	out, _ := probe.PingSized(ctx, t, from.Name, to.IP, route-27, true)
	pkts, werr := session.Await(ctx, capture.Wait{Member: from.Name, Interface: "eth0", N: 1, Within: fragNeededWait,
		What: fmt.Sprintf("ICMP frag-needed (type 3 code 4) to %s (%s) for its %d-byte DF echo request to %s", from.Name, from.IP, route+1, to.IP),
		Filter: func(p gopacket.Packet) bool {
			icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			return icmp != nil && icmp.TypeCode == layers.CreateICMPv4TypeCode(3, 4)
		}})
	var ferr error
	if mismatch != "" {
		ferr = errors.New(mismatch)
	}
	if werr != nil {
		ferr = errors.Join(ferr, fmt.Errorf("no ICMP frag-needed reached %s (ping said: %s)\n%w", from.Name, strings.TrimSpace(string(out)), werr))
	} else if icmp := pkts[0].Decode().Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); int(icmp.Seq) != route {
		ferr = errors.Join(ferr, fmt.Errorf("next-hop MTU %d, want %d: %s", icmp.Seq, route, pkts[0].Summary()))
	}
	s.Check(fmt.Sprintf("%s: a DF packet over the tunnel MTU from a sender unaware of it gets ICMP frag-needed with MTU %d", label, route),
		fmt.Sprintf("%s/eth0 capture (pcap %s): ICMP type 3 code 4, next-hop MTU", from.Name, session.PcapPath(from.Name, "eth0")), ferr)
	s.Check(label+": TCP from that sender converges (PMTUD) and a 2 MiB transfer completes",
		fmt.Sprintf("bulk TCP %s -> %s echo", from.Name, to.Name), probe.BulkTCP(ctx, t, from.Name, to.Name, 2<<20))
	return nil
}

// setPodMTU sets a pod's eth0 MTU and its default route's mtu (0: none).
func setPodMTU(t topology.Cluster, pod string, linkMTU, routeMTU int) error {
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

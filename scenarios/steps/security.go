// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/nsutil"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

// Security as conformance: a host on the underlay that is not a node sends forged
// frames to a node (tunnel packets from an unknown peer or with broken headers, plain
// packets with spoofed sources, malformed headers at a NodePort). For every kind the
// node's trace must show the drop with its named reason at the right hook, the packet
// must reach no pod, and a control (the same packet with legitimate fields, sent by
// the same host right after) must be delivered: the check can fail.

func init() {
	scenarios.RegisterStep(scenarios.StepDef[forgedWith, forgedExpect]{
		Name: "forged-packets",
		Summary: "a non-node host on the underlay sends forged frames (tunnel packets from an unknown peer or malformed, " +
			"spoofed pod/node sources, malformed headers at a NodePort) to a node: each is dropped with its named reason " +
			"at its hook (trace), reaches no pod (capture on the pods' eth0), and its legitimate twin is delivered",
		Agents: true,
		Run:    runForgedPackets,
	})
}

// forgedKind is one kind of forged frame: what the spec says happens to it.
type forgedKind struct {
	tunnel  string // vxlan | geneve | "" (plain IPv4)
	service bool   // aimed at a NodePort: needs with.service
	reason  string // the drop reason (drop.h); "" = any drop
	point   string // the hook that drops it
	what    string // for the check name
}

var forgedKinds = map[string]forgedKind{
	"vxlan-unknown-peer":     {"vxlan", false, "DROP_UNKNOWN_TUNNEL_PEER", "OBS_FROM_OVERLAY", "VXLAN from a host that is no node"},
	"vxlan-vni-zero":         {"vxlan", false, "DROP_BAD_VNI", "OBS_FROM_OVERLAY", "VXLAN with VNI 0 (no source identity), outer source a node's IP"},
	"vxlan-wrong-node":       {"vxlan", false, "DROP_TUNNEL_WRONG_NODE", "OBS_FROM_OVERLAY", "VXLAN whose inner destination is a pod of another node, outer source a node's IP"},
	"geneve-unknown-peer":    {"geneve", false, "DROP_UNKNOWN_TUNNEL_PEER", "OBS_FROM_NETDEV", "Geneve from a host that is no node"},
	"geneve-vni-zero":        {"geneve", false, "DROP_BAD_VNI", "OBS_FROM_NETDEV", "Geneve with VNI 0, outer source a node's IP"},
	"geneve-wrong-node":      {"geneve", false, "DROP_TUNNEL_WRONG_NODE", "OBS_FROM_NETDEV", "Geneve whose inner destination is a pod of another node, outer source a node's IP"},
	"geneve-version":         {"geneve", false, "DROP_GENEVE_VERSION", "OBS_FROM_NETDEV", "Geneve version 1"},
	"geneve-oam":             {"geneve", false, "DROP_GENEVE_CONTROL", "OBS_FROM_NETDEV", "Geneve with the O (control message) bit"},
	"geneve-critical":        {"geneve", false, "DROP_GENEVE_CRITICAL_OPT", "OBS_FROM_NETDEV", "Geneve with the C (critical option) bit"},
	"geneve-protocol":        {"geneve", false, "DROP_GENEVE_PROTOCOL", "OBS_FROM_NETDEV", "Geneve with protocol type 0x0800, not Ethernet"},
	"geneve-opt-len":         {"geneve", false, "DROP_GENEVE_OPT_LEN", "OBS_FROM_NETDEV", "Geneve whose option length runs past the packet"},
	"geneve-fragment":        {"geneve", false, "DROP_TUNNEL_FRAGMENT", "OBS_FROM_NETDEV", "Geneve in an outer first fragment (MF)"},
	"geneve-critical-option": {"geneve", false, "DROP_GENEVE_CRITICAL_OPT", "OBS_FROM_NETDEV", "Geneve with an unknown option marked critical (type bit 0x80)"},
	"geneve-option-overrun":  {"geneve", false, "DROP_GENEVE_OPT_LEN", "OBS_FROM_NETDEV", "Geneve whose option runs past the options' length"},
	"geneve-truncated":       {"geneve", false, "DROP_TRUNCATED_GENEVE", "OBS_FROM_NETDEV", "Geneve header cut to 4 bytes"},
	"geneve-truncated-inner": {"geneve", false, "DROP_TRUNCATED_INNER", "OBS_FROM_NETDEV", "Geneve whose inner frame is 20 bytes, shorter than Ethernet + IPv4"},
	"geneve-inner-not-ipv4":  {"geneve", false, "DROP_NOT_IPV4", "OBS_FROM_NETDEV", "Geneve carrying an ARP frame"},
	"geneve-dsr-unknown-peer": {"geneve", false, "DROP_UNKNOWN_TUNNEL_PEER", "OBS_FROM_NETDEV",
		"Geneve with a DSR option naming a service, from a host that is no node (DSR modes)"},
	"spoofed-pod-source":  {"", false, "", "OBS_FROM_NETDEV", "plain IPv4 from the underlay with a remote pod's address as source"},
	"spoofed-remote-pod":  {"", false, "DROP_SPOOFED_SOURCE", "OBS_FROM_NETDEV", "plain IPv4 from the underlay with a remote pod's address as source, in tunnel mode"},
	"spoofed-local-pod":   {"", false, "DROP_SPOOFED_SOURCE", "OBS_FROM_NETDEV", "plain IPv4 from the underlay with a pod of the node itself as source"},
	"spoofed-own-node":    {"", false, "DROP_SPOOFED_SOURCE", "OBS_FROM_NETDEV", "plain IPv4 from the underlay with the node's own address as source"},
	"spoofed-node-source": {"", false, "", "OBS_FROM_NETDEV", "plain IPv4 from the underlay with another node's address as source"},
	"bad-ihl":             {"", true, "DROP_BAD_IHL", "OBS_FROM_NETDEV", "TCP SYN to the NodePort with IPv4 IHL 4"},
	"bad-ip-version":      {"", true, "DROP_BAD_IP_VERSION", "OBS_FROM_NETDEV", "TCP SYN to the NodePort with IP version 6 under EtherType IPv4"},
	"bad-total-len":       {"", true, "DROP_BAD_TOTAL_LEN", "OBS_FROM_NETDEV", "TCP SYN to the NodePort with an IPv4 total length past the frame"},
	"truncated-tcp":       {"", true, "DROP_TRUNCATED_L4", "OBS_FROM_NETDEV", "a TCP header of 10 bytes to the NodePort"},
}

// dsrKinds carry Cilium's Geneve DSR option (class 0x014B, type 1: service address and
// port): a DSR flow must be learned from the legitimate twin and never from the forged one.
var dsrKinds = map[string]bool{"geneve-dsr-unknown-peer": true}

// forgedLetThrough are the kinds today's datapath delivers, with the hook that lets
// them through and why. The catalog's security scenarios leave them out (they must
// pass); the step still sends them (a scenario of your own can name them and see the
// evidence), and TestForgedCatalogCoverage wants every other kind in the catalog.
var forgedLetThrough = map[string]string{
	"spoofed-pod-source": "native routing: a plain packet with a remote pod's source is exactly what routed pod traffic " +
		"looks like, so from-netdev delivers it; in tunnel mode the same frame is kind spoofed-remote-pod and dropped",
	"spoofed-node-source": "by design: a node's own traffic to another node's pods goes plain over the underlay in every " +
		"routing mode (route to the PodCIDR via the node's IP), and nothing in the datapath keys on the source",
}

// forgedKindNames lists the kinds in a stable order (for oneOf and the docs).
var forgedKindNames = func() string {
	var names []string
	for k := range forgedKinds {
		names = append(names, k)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}()

type forgedWith struct {
	From    scenarios.MemberRef  `json:"from" required:"true" doc:"the attacker: a client (not a node) on the segment of via's internal interface"`
	Via     scenarios.NodeRef    `json:"via" required:"true" doc:"the node the forged frames are sent to"`
	Kinds   []string             `json:"kinds" required:"true" oneOf:"bad-ihl,bad-ip-version,bad-total-len,geneve-critical,geneve-critical-option,geneve-dsr-unknown-peer,geneve-fragment,geneve-inner-not-ipv4,geneve-oam,geneve-opt-len,geneve-option-overrun,geneve-protocol,geneve-truncated,geneve-truncated-inner,geneve-unknown-peer,geneve-version,geneve-vni-zero,geneve-wrong-node,spoofed-local-pod,spoofed-node-source,spoofed-own-node,spoofed-pod-source,spoofed-remote-pod,truncated-tcp,vxlan-unknown-peer,vxlan-vni-zero,vxlan-wrong-node" doc:"the forged frames to send, each its own checks (scenarios/README.md: Security scenarios)"`
	Pod     scenarios.PodRef     `json:"pod" doc:"the inner destination, a pod of via (default: via's first pod)"`
	Peer    scenarios.NodeRef    `json:"peer" doc:"the node whose address the legitimate tunnel packets and spoofed node sources use (default: the first other node)"`
	Service scenarios.ServiceRef `json:"service" doc:"the TCP NodePort service the malformed headers aim at (needed by bad-ihl, bad-ip-version, bad-total-len, truncated-tcp); its ClusterIP and port are what a forged DSR option names"`
	Label   string               `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

func (w *forgedWith) Validate(e strictyaml.FieldErrors) {
	for _, k := range w.Kinds {
		fk, ok := forgedKinds[k]
		switch {
		case !ok: // the oneOf tag reports it
		case fk.service && w.Service == "":
			e.Add("service", "kind %s aims at a NodePort: want a TCP NodePort service", k)
		}
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.Protocol != "TCP" || svc.NodePort == 0) {
		e.Add("service", "service %s: want a TCP service with a nodePort", w.Service)
	}
	if node := scenarios.DecodingStage(e).PodNode(w.Pod); w.Pod != "" && node != "" && node != string(w.Via) {
		e.Add("pod", "pod %s is on %s: want a pod of via %s", w.Pod, node, w.Via)
	}
	if w.Peer != "" && w.Peer == w.Via {
		e.Add("peer", "want a node other than via %s", w.Via)
	}
}

type forgedExpect struct {
	Reasons map[string]string `json:"reasons" doc:"the drop reason (drop.h name) expected per kind, where it is not the kind's own"`
}

// forgedEnv is what every kind's frames are built from: the topology's addresses.
type forgedEnv struct {
	attacker    topology.Interface // the attacker's interface on the via node's segment
	attackerNs  string
	via, peer   topology.Node
	viaIf       topology.Interface // via's interface on that segment
	dst, source topology.Pod       // inner destination (on via), claimed source (on peer)
	local       topology.Pod       // another pod of via (spoofed-local-pod)
	elsewhere   topology.Pod       // a pod not on via (wrong-node)
	identity    uint32             // source's security identity, the legitimate VNI
	nodePort    netip.AddrPort
	dsrService  netip.AddrPort // what the DSR option names: the service's ClusterIP and port
	backends    []topology.Pod
	tunnelPort  map[string]uint16
}

func runForgedPackets(ctx context.Context, s *scenarios.Stage, w forgedWith, e forgedExpect) error {
	env, err := forgedEnvOf(ctx, s, w)
	if err != nil {
		return err
	}
	label := s.Label(w.Label)
	restore, err := bridgeAsWire(s, env.viaIf.Segment)
	if err != nil {
		return err
	}
	defer restore()
	for i, k := range w.Kinds {
		fk := forgedKinds[k]
		if r := e.Reasons[k]; r != "" {
			fk.reason = r
		}
		if err := runForgedKind(ctx, s, env, label, k, fk, uint16(0x5e00+4*i)); err != nil {
			return fmt.Errorf("forged %s: %w", k, err)
		}
	}
	return nil
}

func forgedEnvOf(ctx context.Context, s *scenarios.Stage, w forgedWith) (*forgedEnv, error) {
	t := s.T
	env := &forgedEnv{tunnelPort: map[string]uint16{"vxlan": overlays["vxlan"].port, "geneve": overlays["geneve"].port}}
	var err error
	if env.via, err = t.Node(string(w.Via)); err != nil {
		return nil, err
	}
	env.viaIf = internalIface(env.via)
	m, err := t.Member(string(w.From))
	if err != nil {
		return nil, err
	}
	if m.Kind == topology.KindNode || m.Kind == topology.KindPod {
		return nil, fmt.Errorf("attacker %s is a %s: want a host that is no node", m.Name, m.Kind)
	}
	if m.NsPath == "" {
		return nil, fmt.Errorf("attacker %s has no namespace on this machine", m.Name)
	}
	env.attackerNs = m.NsPath
	ifs, err := t.Interfaces(m.Name)
	if err != nil {
		return nil, err
	}
	for _, i := range ifs {
		if i.Segment == env.viaIf.Segment {
			env.attacker = i
		}
	}
	if env.attacker.Name == "" {
		return nil, fmt.Errorf("attacker %s has no interface on segment %s of %s", m.Name, env.viaIf.Segment, env.via.Name)
	}
	for _, n := range t.Nodes() {
		if (w.Peer == "" && n.Name != env.via.Name && !env.peer.InternalIP.IsValid()) || n.Name == string(w.Peer) {
			env.peer = n
		}
	}
	if !env.peer.InternalIP.IsValid() {
		return nil, errors.New("no other node to claim as peer")
	}
	for _, p := range t.Pods() {
		if p.Name == string(w.Pod) || w.Pod == "" && p.Node == env.via.Name && !env.dst.IP.IsValid() {
			env.dst = p
		}
	}
	for _, p := range t.Pods() {
		switch {
		case p.Node == env.peer.Name && !env.source.IP.IsValid():
			env.source = p
		case p.Node == env.via.Name && p.Name != env.dst.Name && !env.local.IP.IsValid():
			env.local = p
		}
		if p.Node != env.via.Name && p.Name != env.source.Name && !env.elsewhere.IP.IsValid() {
			env.elsewhere = p
		}
	}
	if env.dst.Node != env.via.Name {
		return nil, fmt.Errorf("pod %s is not on %s", env.dst.Name, env.via.Name)
	}
	if !env.source.IP.IsValid() {
		return nil, fmt.Errorf("node %s has no pod to claim as source", env.peer.Name)
	}
	if !env.elsewhere.IP.IsValid() {
		env.elsewhere = env.source
	}
	if !env.local.IP.IsValid() {
		env.local = env.dst
	}
	agents, err := s.Agents()
	if err != nil {
		return nil, err
	}
	eps, err := agents.Client(env.peer.Name).EndpointList(ctx)
	if err != nil {
		return nil, err
	}
	for _, ep := range eps {
		if ep.Name == env.source.Name {
			env.identity = ep.Identity
		}
	}
	if env.identity == 0 {
		return nil, fmt.Errorf("%s's agent lists no identity for %s", env.peer.Name, env.source.Name)
	}
	env.dsrService = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 96, 255, 1}), 80)
	if w.Service != "" {
		svc := s.Services[string(w.Service)]
		env.nodePort = netip.AddrPortFrom(env.via.InternalIP, svc.NodePort)
		env.dsrService = netip.AddrPortFrom(svc.ClusterIP, svc.Port)
		for _, b := range svc.Backends {
			for _, p := range t.Pods() {
				if p.IP == b.IP {
					env.backends = append(env.backends, p)
				}
			}
		}
	}
	return env, nil
}

// brNFPath is the sysctl that makes a bridge run IPv4 frames through netfilter
// (br_netfilter), which first validates their headers and drops malformed ones.
const brNFPath = "/proc/sys/net/bridge/bridge-nf-call-iptables"

// bridgeAsWire makes the segment's bridge forward frames as a switch does, without
// br_netfilter's IPv4 header validation (on in every namespace once the module is
// loaded), so that malformed frames reach the node and the datapath is what is
// tested. It returns the function that restores the setting.
func bridgeAsWire(s *scenarios.Stage, segment string) (func(), error) {
	m, err := s.T.Member(segment)
	if err != nil || m.Kind != topology.KindSegment || m.NsPath == "" {
		return func() {}, nil
	}
	var old []byte
	err = nsutil.Do(m.NsPath, func() error {
		var err error
		if old, err = os.ReadFile(brNFPath); err != nil {
			return nil // br_netfilter not loaded: nothing validates
		}
		return os.WriteFile(brNFPath, []byte("0"), 0o644)
	})
	if err != nil {
		return nil, fmt.Errorf("segment %s: %s: %w", segment, brNFPath, err)
	}
	if old == nil {
		return func() {}, nil
	}
	s.Progress("segment %s: bridge-nf-call-iptables 0 while forged frames are sent (was %s)", segment, strings.TrimSpace(string(old)))
	return func() { _ = nsutil.Do(m.NsPath, func() error { return os.WriteFile(brNFPath, old, 0o644) }) }, nil
}

// forgedFrames builds a kind's forged frame and its legitimate twin, marked with IPv4
// IDs id and id+1 (outer and inner alike). It returns the pods that must not see the
// forged packet and of which one must see the twin.
func (env *forgedEnv) frames(kind string, fk forgedKind, id uint16) (forged, control []byte, pods []topology.Pod, err error) {
	outerL2 := probe.L2{Src: env.attacker.MAC, Dst: env.viaIf.MAC}
	attackerIP := env.attacker.Address.Addr()
	innerL2 := probe.L2{Src: env.source.MAC, Dst: env.dst.HostMAC}
	echo := func(src, dst netip.Addr, l2 probe.L2, id uint16) ([]byte, error) {
		return probe.ICMPEchoRequest(l2, probe.IPv4Fields{Src: src, Dst: dst, ID: id}, id, 1)
	}
	pods = []topology.Pod{env.dst}
	switch fk.tunnel {
	case "vxlan", "geneve":
		innerDst, controlDst := env.dst, env.dst
		if strings.HasSuffix(kind, "-wrong-node") {
			innerDst = env.elsewhere
			pods = []topology.Pod{env.dst, env.elsewhere}
		}
		innerF, err1 := echo(env.source.IP, innerDst.IP, innerL2, id)
		innerC, err2 := echo(env.source.IP, controlDst.IP, innerL2, id+1)
		if err := errors.Join(err1, err2); err != nil {
			return nil, nil, nil, err
		}
		outer := func(src netip.Addr, id uint16) probe.Outer {
			return probe.Outer{L2: outerL2, IP: probe.IPv4Fields{Src: src, Dst: env.via.InternalIP, ID: id},
				Sport: 40000 + id%1000, Dport: env.tunnelPort[fk.tunnel]}
		}
		of, oc := outer(env.peer.InternalIP, id), outer(env.peer.InternalIP, id+1)
		vni := env.identity
		g := probe.GeneveHeader{VNI: vni}
		switch strings.TrimPrefix(strings.TrimPrefix(kind, "vxlan-"), "geneve-") {
		case "unknown-peer":
			of.IP.Src = attackerIP
		case "vni-zero":
			vni, g.VNI = 0, 0
		case "version":
			g.Version = 1
		case "oam":
			g.OAM = true
		case "critical":
			g.Critical = true
		case "protocol":
			g.Protocol = 0x0800
		case "opt-len":
			g.OptLenWords = 63
		case "fragment":
			of.IP.Flags = layers.IPv4MoreFragments
		case "critical-option":
			// Class 0x0102 (not Cilium's), type 0x81: critical, 1 word of data.
			g.Options = []byte{0x01, 0x02, 0x81, 0x01, 0xde, 0xad, 0xbe, 0xef}
		case "option-overrun":
			// An option announcing 5 words of data inside 2 words of options.
			g.Options = []byte{0x01, 0x02, 0x01, 0x05, 0xde, 0xad, 0xbe, 0xef}
		case "truncated":
			forged, err1 = probe.UDPFrame(of, g.Bytes()[:4])
		case "truncated-inner":
			innerF = innerF[:20]
		case "inner-not-ipv4":
			innerF, err1 = probe.ARPRequest(innerL2, env.source.IP, innerDst.IP)
		case "dsr-unknown-peer":
			// A client's SYN to the backend pod, as a NodePort node forwards it with DSR,
			// with the option naming the service the replies must come from.
			of.IP.Src = attackerIP
			syn := func(id uint16) ([]byte, error) {
				return probe.TCPSYN(innerL2, probe.IPv4Fields{Src: attackerIP, Dst: env.dst.IP, ID: id}, 42000+id%1000, 7777, uint32(id)<<16)
			}
			innerF, err1 = syn(id)
			if innerC, err2 = syn(id + 1); err2 != nil {
				return nil, nil, nil, err2
			}
			g.Options = probe.CiliumDSROption(env.dsrService)
		}
		if err1 != nil {
			return nil, nil, nil, err1
		}
		switch {
		case fk.tunnel == "vxlan":
			forged, err1 = probe.VXLAN(of, vni, innerF)
			control, err2 = probe.VXLAN(oc, env.identity, innerC)
		default:
			if forged == nil {
				forged, err1 = probe.Geneve(of, g, innerF)
			}
			cg := probe.GeneveHeader{VNI: env.identity}
			if dsrKinds[kind] {
				cg.Options = g.Options
			}
			control, err2 = probe.Geneve(oc, cg, innerC)
		}
		return forged, control, pods, errors.Join(err1, err2)
	}
	if fk.service {
		pods = env.backends
		syn := func(id uint16) ([]byte, error) {
			return probe.TCPSYN(outerL2, probe.IPv4Fields{Src: attackerIP, Dst: env.nodePort.Addr(), ID: id},
				41000+id%1000, env.nodePort.Port(), uint32(id)<<16)
		}
		good, err1 := syn(id)
		control, err2 := syn(id + 1)
		if err := errors.Join(err1, err2); err != nil {
			return nil, nil, nil, err
		}
		m := map[string]probe.Malformation{"bad-ihl": probe.BadIHL, "bad-ip-version": probe.BadIPVersion,
			"bad-total-len": probe.TotalLenPastFrame, "truncated-tcp": probe.TruncatedTCP}[kind]
		forged, err = probe.Malform(good, m)
		return forged, control, pods, err
	}
	// Plain IPv4 from the underlay with a spoofed source; the twin carries the
	// attacker's own address.
	src := map[string]netip.Addr{"spoofed-pod-source": env.source.IP, "spoofed-remote-pod": env.source.IP, "spoofed-local-pod": env.local.IP,
		"spoofed-node-source": env.peer.InternalIP, "spoofed-own-node": env.via.InternalIP}[kind]
	forged, err1 := echo(src, env.dst.IP, outerL2, id)
	control, err2 := echo(attackerIP, env.dst.IP, outerL2, id+1)
	return forged, control, pods, errors.Join(err1, err2)
}

// ipv4ID matches a frame with an IPv4 header (outer or inner) whose ID is id.
func ipv4ID(id uint16) capture.Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			if ip4, ok := l.(*layers.IPv4); ok && ip4.Id == id {
				return true
			}
		}
		return false
	}
}

func runForgedKind(ctx context.Context, s *scenarios.Stage, env *forgedEnv, label, kind string, fk forgedKind, id uint16) error {
	t := s.T
	forged, control, pods, err := env.frames(kind, fk, id)
	if err != nil {
		return err
	}
	if len(pods) == 0 {
		return errors.New("no pod to watch")
	}
	var points []capture.Point
	for _, p := range pods {
		m, err := t.Member(p.Name)
		if err != nil {
			return err
		}
		points = append(points, capture.Point{Member: p.Name, Interface: "eth0", NsPath: m.NsPath})
	}
	vm, err := t.Member(env.via.Name)
	if err != nil {
		return err
	}
	nodePoint := capture.Point{Member: env.via.Name, Interface: env.viaIf.Name, NsPath: vm.NsPath}
	session, err := capture.Start(filepath.Join(s.Artifacts, strings.ReplaceAll(cmp.Or(label, "security"), " ", "-"), "forged-"+kind), append(points, nodePoint)...)
	if err != nil {
		return err
	}
	defer session.Stop()
	traces, err := s.OpenTraces(t, env.via.Name)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	// The forged frame three times, then its twin; the twin's arrival (or the deadline)
	// bounds the wait for the forged one, which went first along the same path.
	if err := probe.Inject(env.attackerNs, env.attacker.Name, forged, forged, forged); err != nil {
		return err
	}
	time.Sleep(50 * time.Millisecond)
	if err := probe.Inject(env.attackerNs, env.attacker.Name, control); err != nil {
		return err
	}
	delivered := waitAny(ctx, session, points, ipv4ID(id+1), 3*time.Second)
	time.Sleep(200 * time.Millisecond)
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}

	prefix := ""
	if label != "" {
		prefix = label + ": "
	}
	what := fmt.Sprintf("%sforged %s (%s) from %s to %s", prefix, kind, fk.what, env.attacker.Address.Addr(), env.via.Name)
	reason := fk.reason
	if reason == "" {
		reason = "a drop"
	}
	// The frame must have reached the node: a drop on the way (a bridge validating
	// IPv4 headers) would prove nothing about the datapath.
	var derr error
	if arrived := session.Packets(nodePoint.Member, nodePoint.Interface, sameBytes(forged)); len(arrived) == 0 {
		derr = fmt.Errorf("the forged frame never reached %s (dropped on the underlay before the node); seen there:\n%s",
			nodePoint, summaries(session.Packets(nodePoint.Member, nodePoint.Interface, nil)))
	} else {
		derr = expectForgedDrop(traces, env.via.Name, fk, id)
	}
	s.Check(fmt.Sprintf("%s: dropped at %s with %s", what, fk.point, reason),
		fmt.Sprintf("the frame arriving on %s (pcap %s); %s trace records (IPv4 ID %#x)", nodePoint,
			session.PcapPath(nodePoint.Member, nodePoint.Interface), env.via.Name, id), derr)
	var reached []error
	for _, pt := range points {
		if pkts := session.Packets(pt.Member, pt.Interface, ipv4ID(id)); len(pkts) > 0 {
			reached = append(reached, fmt.Errorf("%d forged packet(s) reached %s/eth0: first %s (pcap %s)",
				len(pkts), pt.Member, pkts[0].Summary(), session.PcapPath(pt.Member, pt.Interface)))
		}
	}
	s.Check(what+": reaches no pod", fmt.Sprintf("capture on eth0 of %s (IPv4 ID %#x)", podNames(pods), id), errors.Join(reached...))
	var cerr error
	if !delivered {
		cerr = fmt.Errorf("the legitimate twin (IPv4 ID %#x) reached none of %s within 3s: the path is broken, so the drop proves nothing; %s trace:\n%s",
			id+1, podNames(pods), env.via.Name, traces.Dump(env.via.Name))
	}
	s.Check(what+": control: the same packet with legitimate fields is delivered", fmt.Sprintf("capture on eth0 of %s (IPv4 ID %#x)", podNames(pods), id+1), cerr)
	if dsrKinds[kind] {
		s.Check(what+": no DSR flow learned from it, one learned from the legitimate twin",
			fmt.Sprintf("%s trace records with TRACE_LB_DSR_LEARNED (IPv4 IDs %#x, %#x)", env.via.Name, id, id+1),
			expectDSRLearned(traces, env.via.Name, id, env.dsrService))
	}
	return nil
}

// sameBytes matches a frame equal to b, byte for byte (malformed frames do not decode).
func sameBytes(b []byte) capture.Filter {
	return func(p gopacket.Packet) bool { return bytes.Equal(p.Data(), b) }
}

func summaries(pkts []capture.Packet) string {
	var b strings.Builder
	for i, p := range pkts {
		if i == 10 {
			fmt.Fprintf(&b, "  ... %d more\n", len(pkts)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", p.Summary())
	}
	return b.String()
}

func podNames(pods []topology.Pod) string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	return strings.Join(names, ", ")
}

// expectDSRLearned wants the DSR option of the twin (IPv4 ID id+1) learned, naming svc,
// and nothing learned from the forged frame (id).
func expectDSRLearned(tr *trace.Collector, node string, id uint16, svc netip.AddrPort) error {
	n := tr.Names()
	learned := func(want uint16) []trace.Record {
		return tr.Find(node, func(r trace.Record) bool {
			return r.Pkt.IPID == want && n.LBAction(r.LB.Action) == "TRACE_LB_DSR_LEARNED"
		})
	}
	var errs []error
	if recs := learned(id); len(recs) > 0 {
		errs = append(errs, fmt.Errorf("a DSR flow was learned from the forged frame:\n%s", formatRecords(n, node, recs)))
	}
	twin := learned(id + 1)
	switch {
	case len(twin) == 0:
		errs = append(errs, fmt.Errorf("no DSR flow learned from the legitimate twin (is DSR with Geneve dispatch configured?); records:\n%s", tr.Dump(node)))
	case twin[0].LB.OrigDst != svc:
		errs = append(errs, fmt.Errorf("the twin's DSR flow names %s, want %s:\n%s", twin[0].LB.OrigDst, svc, formatRecords(n, node, twin)))
	}
	return errors.Join(errs...)
}

// waitAny waits until one of the points saw a packet matching f, or the deadline.
func waitAny(ctx context.Context, s *capture.Session, points []capture.Point, f capture.Filter, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	for {
		for _, p := range points {
			if len(s.Packets(p.Member, p.Interface, f)) > 0 {
				return true
			}
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// expectForgedDrop wants a VERDICT_DROP record at the kind's hook with its reason for
// the frame marked id (a record of a frame dropped before its IPv4 header parsed has
// no addresses and ID 0: it counts too, at that hook with that reason).
func expectForgedDrop(tr *trace.Collector, node string, fk forgedKind, id uint16) error {
	n := tr.Names()
	mine := func(r trace.Record) bool {
		return r.Pkt.HasIPv4 && r.Pkt.IPID == id || !r.Pkt.HasIPv4 && r.Pkt.EthProto == 0x0800
	}
	recs := tr.Find(node, mine)
	for _, r := range recs {
		if n.ObsPoint(r.ObsPoint) == fk.point && n.Verdict(r.Verdict) == "VERDICT_DROP" &&
			(fk.reason == "" || n.DropReason(r.DropReason) == fk.reason) {
			return nil
		}
	}
	if len(recs) == 0 {
		return fmt.Errorf("no trace record of the forged frame on %s; records there:\n%s", node, tr.Dump(node))
	}
	return fmt.Errorf("want VERDICT_DROP %s at %s; the forged frame's records:\n%s", cmp.Or(fk.reason, "(any reason)"), fk.point, formatRecords(n, node, recs))
}

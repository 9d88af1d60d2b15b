// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[pathWith, pathExpect]{
		Name: "path",
		Summary: "one packet the harness builds field by field (IPv4 ID, TTL, DF, size, ports) sent from any member " +
			"to a pod or an address; at every hop the expectation names (member/interface, direction) its headers " +
			"are compared field by field with expect.hops (outer, tunnel, inner; an omitted field matches " +
			"anything, a value starting with ~ is a pattern, {pod1a}, {node1/eth0}, {pod1a.mac}, " +
			"{node1/eth0.mac} and {identity:pod1a} stand for the topology's addresses, MACs and the pod's " +
			"identity), and expect.traces names the datapath records the packet must produce",
		Agents: true,
		Run:    runPath,
	})
}

type pathWith struct {
	From    string         `json:"from" required:"true" doc:"the sender: a pod, node, router or client of the topology"`
	To      string         `json:"to" required:"true" doc:"a pod's name, or an IPv4 address, or address:port (a Service frontend)"`
	Proto   probe.Protocol `json:"proto" doc:"icmp (echo request, the default), udp, or tcp (a SYN)"`
	Port    uint16         `json:"port" doc:"destination port for udp and tcp (default 7777, or the port of to)"`
	Size    int            `json:"size" range:"0..65000" doc:"bytes of payload after the L4 header (default 56)"`
	DF      *bool          `json:"df" doc:"set the IPv4 don't-fragment flag (default true)"`
	TTL     uint8          `json:"ttl" doc:"the IPv4 TTL the packet leaves with (default 64)"`
	Label   string         `json:"label" doc:"prefix of the check names (default: the stage's name)"`
	Timeout time.Duration  `json:"wait" doc:"how long the packet has to cross every hop before the captures stop (default 500ms)"`
}

type pathExpect struct {
	Hops   []hopExpect   `json:"hops" doc:"the hops to look at, each its own check"`
	Traces []traceExpect `json:"traces" doc:"datapath trace records the packet must produce, each its own check"`
}

type hopExpect struct {
	At     string            `json:"at" required:"true" doc:"member/interface where the packet is captured, e.g. node2/eth0"`
	Dir    string            `json:"dir" oneOf:"in,out" doc:"in: the interface received it; out: sent it (default: either)"`
	Seen   *bool             `json:"seen" doc:"false: the packet must never appear here (default true)"`
	Outer  map[string]string `json:"outer" doc:"outermost Ethernet/IPv4/L4 fields: ethSrc, ethDst, src, dst, ttl, tos, id, df, length, ipOptions, proto, sport, dport, tcpFlags, icmpType"`
	Tunnel map[string]string `json:"tunnel" doc:"type (vxlan, geneve), vni, options (Geneve: class 0x014b type 1 len 8, ...); tunnel: {type: \"\"} says not encapsulated"`
	Inner  map[string]string `json:"inner" doc:"the encapsulated frame's fields, named as for outer"`
}

type traceExpect struct {
	Node    string `json:"node" required:"true" doc:"whose datapath"`
	Point   string `json:"point" required:"true" doc:"the observation point, e.g. OBS_FROM_NETDEV"`
	Verdict string `json:"verdict" doc:"e.g. VERDICT_REDIRECT_PEER, VERDICT_DROP (or a ~pattern)"`
	Reason  string `json:"reason" doc:"the drop or pass reason, e.g. DROP_SPOOFED_SOURCE, PASS_TO_HOST (or a ~pattern)"`
}

func (e *pathExpect) Validate(fe strictyaml.FieldErrors) {
	for i, h := range e.Hops {
		p := strictyaml.Index("hops", i)
		if !strings.Contains(h.At, "/") {
			fe.Add(p+".at", "%q is not member/interface", h.At)
		}
		for layer, fields := range map[string]map[string]string{"outer": h.Outer, "inner": h.Inner} {
			for k, v := range fields {
				if !slices.Contains(hops.HeaderFields, k) {
					fe.Add(p+"."+layer+"."+k, "unknown field; accepted: %s", strings.Join(hops.HeaderFields, ", "))
				}
				if pat, ok := strings.CutPrefix(v, "~"); ok {
					if _, err := regexp.Compile(pat); err != nil {
						fe.Add(p+"."+layer+"."+k, "bad pattern: %v", err)
					}
				}
			}
		}
		for k := range h.Tunnel {
			if !slices.Contains(hops.TunnelFields, k) {
				fe.Add(p+".tunnel."+k, "unknown field; accepted: %s", strings.Join(hops.TunnelFields, ", "))
			}
		}
	}
}

// placeholder matches {name}, {member/iface}, {x.mac}, {identity:pod}.
var placeholder = regexp.MustCompile(`\{([^{}]+)\}`)

// resolve replaces the placeholders in v with what the topology (and, for identities,
// the pod's agent) says.
func resolve(ctx context.Context, s *scenarios.Stage, v string) (string, error) {
	var errs []error
	out := placeholder.ReplaceAllStringFunc(v, func(m string) string {
		r, err := resolveOne(ctx, s, m[1:len(m)-1])
		if err != nil {
			errs = append(errs, err)
		}
		return r
	})
	return out, errors.Join(errs...)
}

func resolveOne(ctx context.Context, s *scenarios.Stage, name string) (string, error) {
	t := s.T
	if pod, ok := strings.CutPrefix(name, "identity:"); ok {
		p, err := t.Pod(pod)
		if err != nil {
			return "", fmt.Errorf("{%s}: %w", name, err)
		}
		agents := agentsOf(s)
		if agents == nil {
			return "", fmt.Errorf("{%s}: no agents in this stage", name)
		}
		actx, cancel := agentCall(ctx)
		defer cancel()
		eps, err := agents.Client(p.Node).EndpointList(actx)
		if err != nil {
			return "", fmt.Errorf("{%s}: %w", name, err)
		}
		for _, ep := range eps {
			if ep.Name == pod {
				return strconv.Itoa(int(ep.Identity)), nil
			}
		}
		return "", fmt.Errorf("{%s}: %s's agent has no endpoint %s", name, p.Node, pod)
	}
	base, mac := strings.CutSuffix(name, ".mac")
	if member, iface, ok := strings.Cut(base, "/"); ok {
		ifc, err := hops.Iface(t, member, iface)
		if err != nil {
			// Not in the topology (a pod's host veth the agent made): ask the kernel.
			return linkAttr(t, member, iface, mac)
		}
		if mac {
			return ifc.MAC.String(), nil
		}
		return ifc.Address.Addr().String(), nil
	}
	if p, err := t.Pod(base); err == nil {
		if mac {
			return p.MAC.String(), nil
		}
		return p.IP.String(), nil
	}
	if n, err := t.Node(base); err == nil && !mac {
		return n.InternalIP.String(), nil
	}
	ifs, err := t.Interfaces(base)
	if err != nil || len(ifs) == 0 {
		return "", fmt.Errorf("{%s}: no pod, node or member with an interface of that name", name)
	}
	if mac {
		return ifs[0].MAC.String(), nil
	}
	return ifs[0].Address.Addr().String(), nil
}

func runPath(ctx context.Context, s *scenarios.Stage, w pathWith, e pathExpect) error {
	t := s.T
	var err error
	proto := cmp.Or(w.Proto, probe.ICMP)
	if w.To, err = resolve(ctx, s, w.To); err != nil {
		return fmt.Errorf("with.to: %w", err)
	}
	dst, port, err := pathTarget(t, w)
	if err != nil {
		return err
	}
	size := w.Size
	if size == 0 {
		size = 56
	}
	df := w.DF == nil || *w.DF
	ttl := w.TTL
	if ttl == 0 {
		ttl = 64
	}
	id := uint16(0x4000 + rand.IntN(0x3fff))
	sport := uint16(42000 + rand.IntN(8000))
	label := s.Label(w.Label)
	flow := fmt.Sprintf("%s %s -> %s", proto, w.From, w.To)

	var points []capture.Point
	seenAt := map[string]bool{}
	for _, h := range e.Hops {
		member, iface, _ := strings.Cut(h.At, "/")
		if seenAt[h.At] {
			continue
		}
		seenAt[h.At] = true
		m, err := t.Member(member)
		if err != nil {
			return fmt.Errorf("expect.hops at %s: %w", h.At, err)
		}
		points = append(points, capture.Point{Member: member, Interface: iface, NsPath: m.NsPath})
	}
	var traces *trace.Collector
	if len(e.Traces) > 0 {
		var nodes []string
		for _, tr := range e.Traces {
			if !slices.Contains(nodes, tr.Node) {
				nodes = append(nodes, tr.Node)
			}
		}
		if traces, err = s.OpenTraces(t, nodes...); err != nil {
			return err
		}
		defer traces.Close()
	}
	dir := filepath.Join(s.Artifacts, "path-"+strings.NewReplacer(" ", "-", "/", "-").Replace(label+"-"+w.From+"-"+w.To))
	session, err := capture.Start(dir, points...)
	if err != nil {
		return err
	}
	defer session.Stop()
	src, sendErr := probe.SendRaw(t, w.From, probe.RawProbe{Proto: proto, Dst: dst, DstPort: port, SrcPort: sport,
		ID: id, TTL: ttl, DF: df, Payload: size})
	time.Sleep(cmp.Or(w.Timeout, 500*time.Millisecond))
	if err := session.Stop(); err != nil {
		return err
	}
	if traces != nil {
		if err := traces.Collect(); err != nil {
			return err
		}
	}
	sent := fmt.Sprintf("%s (IPv4 ID %#04x, TTL %d, DF %v, %d payload bytes, from %s)", flow, id, ttl, df, size, src)
	if sendErr != nil {
		s.Check(fmt.Sprintf("%s: path %s: the probe is sent", label, flow), sent, sendErr)
		return nil
	}
	var drawn []hops.ExpectedHop
	var failed []error
	for _, h := range e.Hops {
		member, iface, _ := strings.Cut(h.At, "/")
		title, frame, wrong, err := checkHop(ctx, s, session, member, iface, h, id)
		s.Check(fmt.Sprintf("%s: path %s: %s", label, flow, title),
			fmt.Sprintf("capture at %s (pcap %s) of %s", h.At, session.PcapPath(member, iface), sent), err)
		if err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", h.At, err))
		}
		if h.Seen != nil && !*h.Seen {
			continue
		}
		eh := hops.ExpectedHop{Hop: hops.Hop{Member: member, Interface: iface, Outgoing: h.Dir == "out"}, Frame: frame, Wrong: wrong}
		if frame != nil {
			eh.Outgoing = frame.Outgoing
		}
		drawn = append(drawn, eh)
	}
	if len(drawn) > 0 {
		s.RecordCheckedFlow(fmt.Sprintf("%s: path %s (IPv4 ID %#04x)", label, flow, id), session, drawn, errors.Join(failed...))
	}
	for _, te := range e.Traces {
		s.Check(fmt.Sprintf("%s: path %s: %s traces it at %s%s", label, flow, te.Node, te.Point, traceWants(te)),
			fmt.Sprintf("%s's trace ring: records with IPv4 ID %#04x", te.Node, id), checkPathTrace(traces, te, id))
	}
	return nil
}

// pathTarget reads `to`: a pod (its address, port from with.port) or address[:port].
func pathTarget(t topology.Cluster, w pathWith) (netip.Addr, uint16, error) {
	port := cmp.Or(w.Port, 7777)
	if p, err := t.Pod(w.To); err == nil {
		return p.IP, port, nil
	}
	if ap, err := netip.ParseAddrPort(w.To); err == nil {
		if w.Port == 0 {
			port = ap.Port()
		}
		return ap.Addr(), port, nil
	}
	if a, err := netip.ParseAddr(w.To); err == nil && a.Is4() {
		return a, port, nil
	}
	return netip.Addr{}, 0, fmt.Errorf("with.to %q: no pod of that name, and not an IPv4 address or address:port", w.To)
}

func hasID(id uint16) capture.Filter {
	return func(p gopacket.Packet) bool {
		for _, l := range p.Layers() {
			if ip4, ok := l.(*layers.IPv4); ok && ip4.Id == id {
				return true
			}
		}
		return false
	}
}

// checkHop finds the probe at one hop and compares the fields the expectation names.
func checkHop(ctx context.Context, s *scenarios.Stage, session *capture.Session, member, iface string, h hopExpect, id uint16) (string, *capture.Packet, []string, error) {
	raw := map[string]string{}  // as written: the check's name stays the same from run to run
	want := map[string]string{} // placeholders resolved against this run's topology
	for layer, fields := range map[string]map[string]string{"outer": h.Outer, "tunnel": h.Tunnel, "inner": h.Inner} {
		for k, v := range fields {
			raw[layer+"."+k] = v
			r, err := resolve(ctx, s, v)
			if err != nil {
				return fmt.Sprintf("at %s %s", h.At, cmp.Or(h.Dir, "in/out")), nil, nil, err
			}
			want[layer+"."+k] = r
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var desc []string
	for _, k := range keys {
		v := raw[k]
		if v == "" {
			v = `""`
		}
		desc = append(desc, k+" "+v)
	}
	title := fmt.Sprintf("at %s %s", h.At, cmp.Or(h.Dir, "in/out"))
	if len(desc) > 0 {
		title += ": " + strings.Join(desc, ", ")
	}
	var frames []capture.Packet
	for _, p := range session.Packets(member, iface, hasID(id)) {
		if h.Dir == "" || (h.Dir == "out") == p.Outgoing {
			frames = append(frames, p)
		}
	}
	if h.Seen != nil && !*h.Seen {
		title = fmt.Sprintf("never at %s %s", h.At, cmp.Or(h.Dir, "in/out"))
		if len(frames) > 0 {
			return title, nil, nil, fmt.Errorf("seen %d time(s): %s", len(frames), fieldsLine(hops.Fields(frames[0].Decode()), nil))
		}
		return title, nil, nil, nil
	}
	if len(frames) == 0 {
		return title, nil, nil, fmt.Errorf("the probe never crossed %s %s; frames there: %d in all", h.At, cmp.Or(h.Dir, "in/out"),
			len(session.Packets(member, iface, nil)))
	}
	got := hops.Fields(frames[0].Decode())
	var errs []error
	var wrong []string
	for _, k := range keys {
		ok, err := hops.MatchValue(want[k], got[k])
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("%s: %w", k, err))
		case !ok && want[k] != raw[k]:
			errs = append(errs, fmt.Errorf("%s is %q, want %q (%s)", k, got[k], want[k], raw[k]))
		case !ok:
			errs = append(errs, fmt.Errorf("%s is %q, want %q", k, got[k], want[k]))
		}
		if err != nil || !ok {
			wrong = append(wrong, k)
		}
	}
	if len(errs) > 0 {
		errs = append(errs, fmt.Errorf("the frame: %s", fieldsLine(got, nil)))
	}
	return title, &frames[0], wrong, errors.Join(errs...)
}

// fieldsLine renders a frame's fields (only keys, when given) for evidence.
func fieldsLine(f map[string]string, keys []string) string {
	if keys == nil {
		for k := range f {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%q", k, f[k]))
	}
	return strings.Join(parts, " ")
}

func traceWants(te traceExpect) string {
	var s []string
	if te.Verdict != "" {
		s = append(s, te.Verdict)
	}
	if te.Reason != "" {
		s = append(s, te.Reason)
	}
	if len(s) == 0 {
		return ""
	}
	return " with " + strings.Join(s, ", ")
}

func checkPathTrace(tr *trace.Collector, te traceExpect, id uint16) error {
	n := tr.Names()
	recs := tr.Find(te.Node, func(r trace.Record) bool { return r.Pkt.IPID == id })
	if len(recs) == 0 {
		return fmt.Errorf("no record of the probe on %s; records there:\n%s", te.Node, tr.Dump(te.Node))
	}
	for _, r := range recs {
		if n.ObsPoint(r.ObsPoint) != te.Point {
			continue
		}
		okV, _ := hops.MatchValue(te.Verdict, n.Verdict(r.Verdict))
		reason := n.PassReason(r.PassReason)
		if n.Verdict(r.Verdict) == "VERDICT_DROP" {
			reason = n.DropReason(r.DropReason)
		}
		okR, _ := hops.MatchValue(te.Reason, reason)
		if (te.Verdict == "" || okV) && (te.Reason == "" || okR) {
			return nil
		}
	}
	return fmt.Errorf("no %s record%s; the probe's records on %s:\n%s", te.Point, traceWants(te), te.Node, formatRecords(n, te.Node, recs))
}

// linkAttr reads an interface's MAC or first IPv4 address from member's namespace.
func linkAttr(t topology.Cluster, member, iface string, mac bool) (string, error) {
	var out string
	err := t.Do(member, func() error {
		l, err := netlink.LinkByName(iface)
		if err != nil {
			return fmt.Errorf("{%s/%s}: %w", member, iface, err)
		}
		if mac {
			out = l.Attrs().HardwareAddr.String()
			return nil
		}
		addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
		if err != nil || len(addrs) == 0 {
			return fmt.Errorf("{%s/%s}: no IPv4 address (%v)", member, iface, err)
		}
		out = addrs[0].IP.String()
		return nil
	})
	return out, err
}

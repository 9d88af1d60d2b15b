// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/google/gopacket/layers"

	"podpath/datapath/agent"
	"podpath/datapath/maps"
	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[policyFlowWith, policyFlowExpect]{
		Name: "policy-flow",
		Summary: "one flow under the stage's network policies: forwarded (answered, seen on the destination pod's eth0, " +
			"a policy-verdict allowed event), dropped (no answer, 0 frames on the destination pod's eth0, the drop " +
			"with its reason at the expected node and hook, a policy-verdict denied event) or audited (answered, " +
			"an audit event naming the reason)",
		Agents: true,
		With:   policyFlowWith{Proto: probe.TCP, Port: 80},
		Run:    runPolicyFlow,
	})
	scenarios.RegisterStep(scenarios.StepDef[policyChangeWith, none]{
		Name: "policy-change-stream",
		Summary: "a TCP stream allowed by policy, then a deny policy applied under it: as Cilium, which looks policy " +
			"up on every packet that is not a reply, the established stream's next packet is dropped at the " +
			"destination (DROP_POLICY_DENY_RULE); deleting the policy lets the same connection carry on, and new " +
			"connections are refused while it is in force",
		Agents: true,
		With:   policyChangeWith{Port: 80},
		Run:    runPolicyChange,
	})
}

type policyFlowWith struct {
	From  scenarios.PodRef `json:"from" required:"true" doc:"the pod that opens the flow"`
	To    scenarios.PodRef `json:"to" required:"true" doc:"the pod it is for"`
	Proto probe.Protocol   `json:"proto" doc:"tcp, udp or icmp"`
	Port  uint16           `json:"port" range:"1..65535" doc:"destination port (tcp, udp); the harness runs an echo server there"`
	Label string           `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

type policyFlowExpect struct {
	Verdict string            `json:"verdict" required:"true" oneOf:"forwarded,dropped,audited" doc:"what policy does to the flow"`
	Reason  string            `json:"reason" oneOf:"DROP_POLICY_DENIED,DROP_POLICY_DENY_RULE" doc:"dropped, audited: the drop reason"`
	Node    scenarios.NodeRef `json:"node" doc:"dropped, audited: the node whose datapath judges the flow"`
	Hook    string            `json:"hook" oneOf:"OBS_FROM_CONTAINER,OBS_FROM_OVERLAY,OBS_FROM_NETDEV" doc:"dropped, audited: the program that judges it (egress: from-container of the source; ingress: the delivering program)"`
}

func (e *policyFlowExpect) Validate(fe strictyaml.FieldErrors) {
	if e.Verdict != "forwarded" && (e.Reason == "" || e.Node == "" || e.Hook == "") {
		fe.Add("verdict", "%s needs reason, node and hook", e.Verdict)
	}
}

// policyFlowTimeout is how long a denied flow is given to be answered anyway.
const policyFlowTimeout = 2 * time.Second

// policyExchange runs one exchange of proto from pod from to addr and returns its error.
func policyExchange(ctx context.Context, s *scenarios.Stage, proto probe.Protocol, from string, to netip.Addr, port uint16) error {
	if proto == probe.ICMP {
		_, err := probe.Exec(ctx, s.T, policyFlowTimeout+time.Second, from, "ping", "-c1", "-W2", to.String())
		return err
	}
	return probe.ExchangeAddr(ctx, s.T, from, proto, netip.AddrPortFrom(to, port))
}

func flowFilter(proto probe.Protocol, src, dst netip.Addr, port uint16) capture.Filter {
	switch proto {
	case probe.ICMP:
		return capture.ICMPEcho(ip(src), ip(dst))
	case probe.UDP:
		return capture.And(capture.IPv4Flow(ip(src), ip(dst), layers.IPProtocolUDP), capture.UDPPort(port))
	}
	return capture.And(capture.IPv4Flow(ip(src), ip(dst), layers.IPProtocolTCP), capture.TCPPort(port))
}

// policyRecords are node's records of the flow with one of the verdicts.
func policyRecords(tr *trace.Collector, node string, proto probe.Protocol, src, dst netip.Addr, port uint16, verdicts ...string) []trace.Record {
	n := tr.Names()
	return tr.Find(node, func(r trace.Record) bool {
		if r.Pkt.Src != src || r.Pkt.Dst != dst || r.Pkt.IPProto != ipProto(proto) {
			return false
		}
		if proto != probe.ICMP && r.Pkt.DstPort != port {
			return false
		}
		for _, v := range verdicts {
			if n.Verdict(r.Verdict) == v {
				return true
			}
		}
		return false
	})
}

func runPolicyFlow(ctx context.Context, s *scenarios.Stage, w policyFlowWith, e policyFlowExpect) error {
	t := s.T
	from, _ := t.Pod(string(w.From))
	to, _ := t.Pod(string(w.To))
	label := s.Label(w.Label)
	what := fmt.Sprintf("%s %s -> %s", w.Proto, from.Name, to.Name)
	if w.Proto != probe.ICMP {
		what += fmt.Sprintf(":%d", w.Port)
	}
	var nodes []string
	for _, n := range t.Nodes() {
		nodes = append(nodes, n.Name)
	}
	traces, err := s.OpenTraces(t, nodes...)
	if err != nil {
		return err
	}
	defer traces.Close()
	if w.Proto != probe.ICMP {
		srv, err := probe.StartEchoOn(t, w.Proto, to.Name, w.Port)
		if err != nil {
			return err
		}
		defer srv.Close()
	}
	m, err := t.Member(to.Name)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.Artifacts, fmt.Sprintf("policy-%s-%s-%s-%d", from.Name, to.Name, w.Proto, w.Port))
	session, err := capture.Start(dir, capture.Point{Member: to.Name, Interface: "eth0", NsPath: m.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	if err := traces.Reset(); err != nil {
		return err
	}
	xerr := policyExchange(ctx, s, w.Proto, from.Name, to.IP, w.Port)
	time.Sleep(100 * time.Millisecond) // the last frames reach the capture
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}
	f := flowFilter(w.Proto, from.IP, to.IP, w.Port)
	seen := session.Packets(to.Name, "eth0", f)
	at := fmt.Sprintf("capture on %s/eth0 (pcap %s)", to.Name, session.PcapPath(to.Name, "eth0"))
	switch e.Verdict {
	case "forwarded", "audited":
		s.Check(fmt.Sprintf("%s: policy %s: %s answered", label, e.Verdict, what),
			fmt.Sprintf("the %s echo from %s in %s", w.Proto, to.Name, from.Name), xerr)
		var cerr error
		if len(seen) == 0 {
			cerr = fmt.Errorf("no frame of the flow reached %s/eth0", to.Name)
		}
		s.Check(fmt.Sprintf("%s: policy %s: %s reaches %s's eth0", label, e.Verdict, what, to.Name), at, cerr)
		for _, node := range nodes {
			drops := policyRecords(traces, node, w.Proto, from.IP, to.IP, w.Port, "VERDICT_DROP")
			var derr error
			if len(drops) > 0 {
				derr = fmt.Errorf("dropped:\n%s", formatRecords(traces.Names(), node, drops))
			}
			if derr != nil || node == to.Node {
				s.Check(fmt.Sprintf("%s: policy %s: %s has no drop record on %s", label, e.Verdict, what, node),
					node+" trace ring buffer: VERDICT_DROP records of the flow", derr)
			}
		}
		if e.Verdict == "audited" {
			s.Check(fmt.Sprintf("%s: policy audited: %s recorded as %s at %s on %s", label, what, e.Reason, e.Hook, e.Node),
				string(e.Node)+" trace ring buffer: VERDICT_POLICY_AUDIT records (policy-audit-mode)",
				expectPolicyEvent(traces, string(e.Node), w, from.IP, to.IP, "VERDICT_POLICY_AUDIT", e.Reason, e.Hook))
		} else {
			s.Check(fmt.Sprintf("%s: policy forwarded: %s has a policy-verdict allowed event on %s", label, what, to.Node),
				to.Node+" trace ring buffer: VERDICT_POLICY_ALLOWED records",
				expectAllowedEvent(traces, nodes, w, from.IP, to.IP))
		}
	case "dropped":
		var aerr error
		if xerr == nil {
			aerr = errors.New("the flow was answered")
		}
		s.Check(fmt.Sprintf("%s: policy dropped: %s gets no answer", label, what),
			fmt.Sprintf("the %s exchange from %s (deadline %s)", w.Proto, from.Name, policyFlowTimeout), aerr)
		var cerr error
		if len(seen) > 0 {
			cerr = fmt.Errorf("%d frame(s) of the flow reached %s/eth0, want 0: first %s", len(seen), to.Name, seen[0].Summary())
		}
		s.Check(fmt.Sprintf("%s: policy dropped: %s never reaches %s's eth0 (0 frames)", label, what, to.Name), at, cerr)
		drops := policyRecords(traces, string(e.Node), w.Proto, from.IP, to.IP, w.Port, "VERDICT_DROP")
		n := traces.Names()
		var derr error
		ok := false
		for _, r := range drops {
			ok = ok || (n.DropReason(r.DropReason) == e.Reason && n.ObsPoint(r.ObsPoint) == e.Hook)
		}
		if !ok {
			derr = fmt.Errorf("want VERDICT_DROP %s at %s; drops of the flow there:\n%s\nrecords there:\n%s",
				e.Reason, e.Hook, formatRecords(n, string(e.Node), drops), traces.Dump(string(e.Node)))
		}
		s.Check(fmt.Sprintf("%s: policy dropped: %s dropped on %s at %s with %s", label, what, e.Node, e.Hook, e.Reason),
			string(e.Node)+" trace ring buffer: VERDICT_DROP records of the flow", derr)
		s.Check(fmt.Sprintf("%s: policy dropped: %s has a policy-verdict denied event on %s", label, what, e.Node),
			string(e.Node)+" trace ring buffer: VERDICT_POLICY_DENIED records",
			expectPolicyEvent(traces, string(e.Node), w, from.IP, to.IP, "VERDICT_POLICY_DENIED", e.Reason, e.Hook))
	}
	return nil
}

func expectPolicyEvent(tr *trace.Collector, node string, w policyFlowWith, src, dst netip.Addr, verdict, reason, hook string) error {
	n := tr.Names()
	recs := policyRecords(tr, node, w.Proto, src, dst, w.Port, verdict)
	for _, r := range recs {
		if n.DropReason(r.DropReason) == reason && n.ObsPoint(r.ObsPoint) == hook {
			return nil
		}
	}
	return fmt.Errorf("no %s event with %s at %s; records there:\n%s", verdict, reason, hook, tr.Dump(node))
}

func expectAllowedEvent(tr *trace.Collector, nodes []string, w policyFlowWith, src, dst netip.Addr) error {
	for _, node := range nodes {
		if len(policyRecords(tr, node, w.Proto, src, dst, w.Port, "VERDICT_POLICY_ALLOWED")) > 0 {
			return nil
		}
	}
	return fmt.Errorf("no VERDICT_POLICY_ALLOWED event for the flow on any node (%s)", strings.Join(nodes, ", "))
}

type policyChangeWith struct {
	From  scenarios.PodRef `json:"from" required:"true" doc:"the pod that streams"`
	To    scenarios.PodRef `json:"to" required:"true" doc:"the pod streamed to; its policy must allow from first"`
	Port  uint16           `json:"port" range:"1..65535" doc:"TCP port of the echo server on to"`
	Label string           `json:"label" doc:"prefix of the check names"`
}

// policyCutName is the deny policy the step applies and removes.
const policyCutName = "podpath-stream-cut"

func runPolicyChange(ctx context.Context, s *scenarios.Stage, w policyChangeWith, _ none) error {
	t := s.T
	from, _ := t.Pod(string(w.From))
	to, _ := t.Pod(string(w.To))
	label := s.Label(w.Label)
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	labels := map[string]string{}
	for _, n := range t.Spec().Nodes {
		for _, p := range n.Pods {
			if p.Name == to.Name {
				labels = p.Labels
			}
		}
	}
	if len(labels) == 0 {
		return fmt.Errorf("policy-change-stream: pod %s has no labels to select it by", to.Name)
	}
	traces, err := s.OpenTraces(t, to.Node)
	if err != nil {
		return err
	}
	defer traces.Close()
	// An echo server whose connections live for the whole step (the harness's echo
	// server gives a connection 5 s).
	srv, err := probe.StartServer(t, probe.TCP, to.Name, w.Port, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(time.Minute))
		_, _ = io.Copy(c, c)
	}, nil)
	if err != nil {
		return err
	}
	defer srv.Close()
	dst := netip.AddrPortFrom(to.IP, w.Port)
	what := fmt.Sprintf("tcp %s -> %s:%d", from.Name, to.Name, w.Port)
	// One connection for the whole step, opened in the source pod's namespace.
	var conn net.Conn
	if err := t.Do(from.Name, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", dst.String())
		conn = c
		return err
	}); err != nil {
		s.Check(fmt.Sprintf("%s: policy change: %s connects before the change", label, what), "TCP connect from "+from.Name, err)
		return nil
	}
	defer conn.Close()
	echo := func(msg string, within time.Duration) error {
		_ = conn.SetDeadline(time.Now().Add(within))
		if _, err := conn.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil {
			return err
		}
		if string(buf) != msg {
			return fmt.Errorf("echo %q, want %q", buf, msg)
		}
		return nil
	}
	var berr error
	for i := 0; i < 5 && berr == nil; i++ {
		berr = echo(fmt.Sprintf("before-%d;", i), 2*time.Second)
	}
	s.Check(fmt.Sprintf("%s: policy change: %s carries 5 echoes before the change", label, what), "the stream's echoes in "+from.Name, berr)
	if err := traces.Reset(); err != nil {
		return err
	}
	var sel strings.Builder
	for k, v := range labels {
		fmt.Fprintf(&sel, "      %s: %q\n", k, v)
	}
	cut := fmt.Sprintf("apiVersion: cilium.io/v2\nkind: CiliumClusterwideNetworkPolicy\nmetadata:\n  name: %s\nspec:\n  endpointSelector:\n    matchLabels:\n%s  ingressDeny:\n  - fromEntities: [all]\n    toPorts:\n    - ports:\n      - port: \"%d\"\n        protocol: TCP\n",
		policyCutName, strings.ReplaceAll(sel.String(), "      ", "      "), w.Port)
	if err := agents.PolicyUpsert(ctx, agent.Policy{Name: policyCutName, YAML: cut}); err != nil {
		return fmt.Errorf("apply %s: %w", policyCutName, err)
	}
	cerr := echo("during;", 2*time.Second)
	var derr error
	if cerr == nil {
		derr = errors.New("the established stream was still echoed under the deny policy")
	}
	s.Check(fmt.Sprintf("%s: policy change: a deny applied under %s stops the established stream at its next packet", label, what),
		"the stream's echo in "+from.Name+" (deadline 2s), after "+policyCutName+" was programmed on every agent", derr)
	if err := traces.Collect(); err != nil {
		return err
	}
	n := traces.Names()
	drops := traces.Find(to.Node, func(r trace.Record) bool {
		return r.Pkt.Src == from.IP && r.Pkt.Dst == to.IP && n.Verdict(r.Verdict) == "VERDICT_DROP" && n.DropReason(r.DropReason) == "DROP_POLICY_DENY_RULE"
	})
	var terr error
	if len(drops) == 0 {
		terr = fmt.Errorf("no DROP_POLICY_DENY_RULE drop of the stream on %s; records:\n%s", to.Node, traces.Dump(to.Node))
	}
	s.Check(fmt.Sprintf("%s: policy change: the stream's packets are dropped on %s with DROP_POLICY_DENY_RULE", label, to.Node),
		to.Node+" trace ring buffer", terr)
	nerr := probe.ExchangeAddr(ctx, t, from.Name, probe.TCP, dst)
	var nerr2 error
	if nerr == nil {
		nerr2 = errors.New("a new connection was answered under the deny policy")
	}
	s.Check(fmt.Sprintf("%s: policy change: a new connection %s is refused while the deny is in force", label, what), "TCP exchange from "+from.Name, nerr2)
	if err := agents.PolicyDelete(ctx, policyCutName); err != nil {
		return fmt.Errorf("delete %s: %w", policyCutName, err)
	}
	// The unanswered message is retransmitted by TCP: once the deny is gone it gets
	// through and its echo arrives, then the stream goes on.
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, len("during;"))
	_, rerr := io.ReadFull(conn, buf)
	if rerr == nil {
		rerr = echo("after;", 3*time.Second)
	}
	s.Check(fmt.Sprintf("%s: policy change: with the deny deleted the same connection carries on", label),
		"the stream's echoes in "+from.Name+" (TCP retransmission, deadline 10s)", rerr)
	return nil
}

func init() {
	scenarios.RegisterStep(scenarios.StepDef[none, none]{
		Name: "policy-identities",
		Summary: "every node's ipcache (pinned map) holds every pod of the topology at the identity of its label set " +
			"(namespace label added), computed here from the topology: FNV-1a of the canonical labels onto 256..65535, " +
			"the same on every node; pods with equal labels share an identity, different label sets differ",
		Agents: true,
		Run:    runPolicyIdentities,
	})
}

func runPolicyIdentities(ctx context.Context, s *scenarios.Stage, _ none, _ none) error {
	want := map[netip.Addr]uint32{}
	byLabels := map[string]uint32{}
	for _, n := range s.T.Spec().Nodes {
		for _, p := range n.Pods {
			// The spec, written out here rather than taken from datapath/identity:
			// sorted key=value pairs joined by ';', the namespace label added, FNV-1a
			// 32 onto 256..65535.
			l := map[string]string{"io.kubernetes.pod.namespace": "default"}
			for k, v := range p.Labels {
				l[k] = v
			}
			var pairs []string
			for k, v := range l {
				pairs = append(pairs, k+"="+v)
			}
			sort.Strings(pairs)
			canonical := strings.Join(pairs, ";")
			h := fnv.New32a()
			h.Write([]byte(canonical))
			id := 256 + h.Sum32()%(65535-256+1)
			pod, err := s.T.Pod(p.Name)
			if err != nil {
				return err
			}
			want[pod.IP] = id
			byLabels[canonical] = id
		}
	}
	var derr error
	seen := map[uint32]string{}
	for set, id := range byLabels {
		if other, ok := seen[id]; ok {
			derr = fmt.Errorf("label sets %q and %q hash to the same identity %d", set, other, id)
		}
		seen[id] = set
	}
	s.Check(fmt.Sprintf("%s: identities: %d label sets, %d distinct identities", s.Label(""), len(byLabels), len(seen)),
		"the topology's pod labels", derr)
	for _, n := range s.T.Nodes() {
		m, err := maps.OpenPinned(filepath.Join(s.T.Dir(), "bpffs", n.Name, "maps"))
		if err != nil {
			return err
		}
		cache, err := m.IPCacheList()
		m.Close()
		if err != nil {
			return err
		}
		got := map[netip.Addr]uint32{}
		for _, e := range cache {
			if e.Prefix.Bits() == 32 {
				got[e.Prefix.Addr()] = e.Identity
			}
		}
		var bad []string
		for ip, id := range want {
			if got[ip] != id {
				bad = append(bad, fmt.Sprintf("%s: identity %d, want %d", ip, got[ip], id))
			}
		}
		var err2 error
		if len(bad) > 0 {
			err2 = errors.New(strings.Join(bad, "\n"))
		}
		s.Check(fmt.Sprintf("%s: identities: %s's ipcache maps every pod to its label set's identity", s.Label(""), n.Name),
			n.Name+" pinned map ipcache (/32 entries)", err2)
	}
	return nil
}

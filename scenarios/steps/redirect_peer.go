// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[sameNodeWith, sameNodeExpect]{
		Name: "same-node-path",
		Summary: "ICMP, TCP and UDP between two pods of one node: delivery, the from-container trace, the path " +
			"hop by hop, and whether the host stack saw the packets (BPF host routing: bpf_redirect_peer, never)",
		Agents: true,
		Run:    runSameNodePath,
	})
}

type sameNodeWith struct {
	From  scenarios.PodRef `json:"from" required:"true" doc:"the pod that sends"`
	To    scenarios.PodRef `json:"to" required:"true" doc:"a pod on the same node"`
	Label string           `json:"label" doc:"prefix of the check names (default: BPF host routing or legacy host routing)"`
}

type sameNodeExpect struct {
	HostRouting string `json:"hostRouting" required:"true" oneOf:"BPF,Legacy" doc:"BPF: from-container hands the packets to the peer pod with bpf_redirect_peer, the destination host veth and netfilter never see them; Legacy: they pass the host stack"`
}

func (w *sameNodeWith) Validate(e strictyaml.FieldErrors) {
	st := scenarios.CheckableStage(e)
	if st == nil {
		return
	}
	if a, b := st.PodNode(w.From), st.PodNode(w.To); a != b || w.From == w.To {
		e.Add("to", "%q is on %s: want another pod of %s's node %s", w.To, b, w.From, a)
	}
}

// runSameNodePath sends ICMP, TCP and UDP between two pods of one node and checks
// delivery, the trace, the capture path and the host-stack counters. With BPF host
// routing the destination host veth and netfilter are bypassed; with legacy they are not.
func runSameNodePath(ctx context.Context, s *scenarios.Stage, w sameNodeWith, e sameNodeExpect) error {
	t := s.T
	bpf := e.HostRouting == "BPF"
	mode := w.Label
	if mode == "" {
		mode = map[bool]string{true: "BPF host routing", false: "legacy host routing"}[bpf]
	}
	from, _ := t.Pod(string(w.From))
	to, _ := t.Pod(string(w.To))
	node := from.Node
	if err := hostStackCounters(ctx, s); err != nil {
		return err
	}
	traces, err := s.OpenTraces(t, node)
	if err != nil {
		return err
	}
	defer traces.Close()
	plan, err := hops.PodPath(t, from.Name, to.Name)
	if err != nil {
		return err
	}
	points, err := hops.PathPoints(t, plan)
	if err != nil {
		return err
	}
	session, err := capture.Start(filepath.Join(s.Artifacts, "same-node-"+strings.ToLower(e.HostRouting)), points...)
	if err != nil {
		return err
	}
	defer session.Stop()
	if err := traces.Reset(); err != nil {
		return err
	}
	before, err := probe.ReadHostStackCounters(ctx, t, node)
	if err != nil {
		return err
	}
	for _, p := range probeProtocols {
		s.Check(fmt.Sprintf("%s: %s %s -> %s delivered", mode, p, from.Name, to.Name),
			fmt.Sprintf("the %s answer from %s (%s) in %s", p, to.Name, to.IP, from.Name),
			probe.Exchange(ctx, t, p, from.Name, to.Name))
	}
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}
	target, err := ifindexIn(t, node, to.HostVeth)
	if err != nil {
		return err
	}
	echo := capture.ICMPEcho(ip(from.IP), ip(to.IP))
	delta, err := counterDelta(ctx, t, node, before)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("nftables counters (inet podpath_probe forward/input, pod to pod) in %s: forward %d, input %d", node, delta.Forward, delta.Input)
	traceAt := node + " trace ring buffer: OBS_FROM_CONTAINER records of the flow"
	pathName := fmt.Sprintf("%s: ICMP echo request %s -> %s", mode, from.Name, to.Name)
	if bpf {
		for _, p := range probeProtocols {
			s.Check(fmt.Sprintf("%s: %s traced from-container -> redirect_peer into %s", mode, p, to.HostVeth),
				traceAt+", verdict and target ifindex",
				expectTrace(traces, node, from.IP, to.IP, p, "OBS_FROM_CONTAINER", target, "VERDICT_REDIRECT_PEER"))
		}
		path, bypassed := hops.PeerRedirected(plan)
		_, perr := s.VerifyPath(pathName, session, path, echo)
		s.Check(fmt.Sprintf("%s: echo request crosses %s/eth0 -> %s/%s -> %s/eth0, MACs and TTL as a router sets them", mode, from.Name, node, from.HostVeth, to.Name),
			"captures on every hop: direction, source/destination MAC, IPv4 TTL", perr)
		s.Check(mode+": the destination host veth never transmits the packet (bpf_redirect_peer)",
			"capture on "+node+"/"+to.HostVeth, notSeen(session, bypassed, echo))
		s.Check(mode+": the host stack and netfilter never see the packets", where, expectZero(delta))
		return nil
	}
	for _, p := range probeProtocols {
		s.Check(fmt.Sprintf("%s: %s traced at from-container and passed to the stack", mode, p), traceAt,
			expectTrace(traces, node, from.IP, to.IP, p, "OBS_FROM_CONTAINER", 0, "VERDICT_PASS"))
	}
	_, perr := s.VerifyPath(pathName, session, plan, echo)
	s.Check(fmt.Sprintf("%s: echo request crosses %s/eth0 -> %s host stack -> %s -> %s/eth0", mode, from.Name, node, to.HostVeth, to.Name),
		"captures on every hop: direction, source/destination MAC, IPv4 TTL", perr)
	var cerr error
	if delta.Forward == 0 {
		cerr = fmt.Errorf("forward counter stayed 0: the packets did not pass the host stack")
	}
	s.Check(mode+": netfilter's forward hook sees the packets", where, cerr)
	return nil
}

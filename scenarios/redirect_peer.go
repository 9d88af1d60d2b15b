// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"podpath/scenarios/capture"
	"podpath/topology"
)

func init() {
	register(&Scenario{
		Name: "redirect-peer",
		Description: "same-node pod to pod with eBPF host routing: from-container hands packets to the " +
			"peer pod with bpf_redirect_peer and the host stack never sees them; legacy host routing, " +
			"in the same run, goes through the host stack",
		Labels: []string{"redirect-peer", "host-routing"},
		Run:    runRedirectPeer,
	})
}

func runRedirectPeer(ctx context.Context, r *Run) error {
	t, agents, err := r.UpWithAgents(ctx, "l2-two-node-agent", "native-routing")
	if err != nil {
		return err
	}
	if err := HostStackCounters(ctx, t, podSupernet(t)); err != nil {
		return err
	}
	traces, err := OpenTraces(t, "node1")
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := sameNodePhase(ctx, r, t, traces, true); err != nil {
		return err
	}

	legacy, err := WriteConfig(t.Dir(), "native-routing-legacy")
	if err != nil {
		return err
	}
	r.Progress("restarting the agents with enable-host-legacy-routing: true")
	for _, n := range t.Nodes() {
		if err := agents.Restart(ctx, n.Name, legacy, false); err != nil {
			return err
		}
	}
	st, err := agents.Client("node1").Status(ctx)
	r.Check("agent reports legacy host routing after the restart", "podpath-agent status of node1: Host Routing",
		errors.Join(err, expectEqual("host routing", "Legacy", st.HostRouting)))
	return sameNodePhase(ctx, r, t, traces, false)
}

// sameNodePhase sends ICMP, TCP and UDP from pod1a to pod1b (both on node1) and checks
// delivery, the trace, the capture path and the host-stack counters. With BPF host
// routing the destination host veth and netfilter are bypassed; with legacy they are not.
func sameNodePhase(ctx context.Context, r *Run, t *topology.Topology, traces *Traces, bpf bool) error {
	mode := "legacy host routing"
	if bpf {
		mode = "BPF host routing"
	}
	from, _ := t.Pod("pod1a")
	to, _ := t.Pod("pod1b")
	hops, err := PodPath(t, from.Name, to.Name)
	if err != nil {
		return err
	}
	points, err := PathPoints(t, hops)
	if err != nil {
		return err
	}
	session, err := capture.Start(filepath.Join(r.Artifacts, "same-node-"+map[bool]string{true: "bpf", false: "legacy"}[bpf]), points...)
	if err != nil {
		return err
	}
	defer session.Stop()
	if err := traces.Reset(); err != nil {
		return err
	}
	before, err := ReadHostStackCounters(ctx, t, "node1")
	if err != nil {
		return err
	}
	for _, p := range probeProtocols {
		r.Check(fmt.Sprintf("%s: %s pod1a -> pod1b delivered", mode, p),
			fmt.Sprintf("the %s answer from pod1b (%s) in pod1a", p, to.IP),
			Exchange(ctx, t, p, from.Name, to.Name))
	}
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}
	target, err := ifindexIn(t, "node1", to.HostVeth)
	if err != nil {
		return err
	}
	echo := capture.ICMPEcho(ip(from.IP), ip(to.IP))
	delta, err := counterDelta(ctx, t, "node1", before)
	if err != nil {
		return err
	}
	where := fmt.Sprintf("nftables counters (inet podpath_probe forward/input, pod to pod) in node1: forward %d, input %d", delta.Forward, delta.Input)
	if bpf {
		for _, p := range probeProtocols {
			r.Check(fmt.Sprintf("%s: %s traced from-container -> redirect_peer into %s", mode, p, to.HostVeth),
				"node1 trace ring buffer: OBS_FROM_CONTAINER records of the flow, verdict and target ifindex",
				expectTrace(traces, "node1", from.IP, to.IP, p, "OBS_FROM_CONTAINER", target, "VERDICT_REDIRECT_PEER"))
		}
		path, bypassed := PeerRedirected(hops)
		_, perr := r.VerifyPath(mode+": ICMP echo request pod1a -> pod1b", session, path, echo)
		r.Check(mode+": echo request crosses pod1a/eth0 -> node1/"+from.HostVeth+" -> pod1b/eth0, MACs and TTL as a router sets them",
			"captures on every hop: direction, source/destination MAC, IPv4 TTL", perr)
		r.Check(mode+": the destination host veth never transmits the packet (bpf_redirect_peer)",
			"capture on node1/"+to.HostVeth, notSeen(session, bypassed, echo))
		r.Check(mode+": the host stack and netfilter never see the packets", where,
			expectZero(delta))
		return nil
	}
	for _, p := range probeProtocols {
		r.Check(fmt.Sprintf("%s: %s traced at from-container and passed to the stack", mode, p),
			"node1 trace ring buffer: OBS_FROM_CONTAINER records of the flow",
			expectTrace(traces, "node1", from.IP, to.IP, p, "OBS_FROM_CONTAINER", 0, "VERDICT_PASS"))
	}
	_, perr := r.VerifyPath(mode+": ICMP echo request pod1a -> pod1b", session, hops, echo)
	r.Check(mode+": echo request crosses pod1a/eth0 -> node1 host stack -> "+to.HostVeth+" -> pod1b/eth0",
		"captures on every hop: direction, source/destination MAC, IPv4 TTL", perr)
	var cerr error
	if delta.Forward == 0 {
		cerr = fmt.Errorf("forward counter stayed 0: the packets did not pass the host stack")
	}
	r.Check(mode+": netfilter's forward hook sees the packets", where, cerr)
	return nil
}

func expectZero(d StackPackets) error {
	if d.Forward != 0 || d.Input != 0 {
		return fmt.Errorf("forward counter rose by %d, input by %d: packets went through the host stack", d.Forward, d.Input)
	}
	return nil
}

func expectEqual(what string, want, got any) error {
	if want != got {
		return fmt.Errorf("%s: want %v, got %v", what, want, got)
	}
	return nil
}

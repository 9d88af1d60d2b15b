// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket/layers"

	"podpath/datapath/config"
	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
	"podpath/topology"
	"podpath/topology/agentrun"
)

// The helpers here are shared by the feature files: a feature file uses them and the
// step package's own types, never another feature file's.

// probeProtocols are the probes a step sends when its file names none.
var probeProtocols = []probe.Protocol{probe.ICMP, probe.TCP, probe.UDP}

// ipProto is the IPv4 protocol number of probe p.
func ipProto(p probe.Protocol) uint8 {
	switch p {
	case probe.TCP:
		return uint8(layers.IPProtocolTCP)
	case probe.UDP:
		return uint8(layers.IPProtocolUDP)
	}
	return uint8(layers.IPProtocolICMPv4)
}

// podSupernet is the smallest prefix holding every node's PodCIDR.
func podSupernet(t topology.Cluster) netip.Prefix {
	nodes := t.Nodes()
	p := nodes[0].PodCIDR
	for _, n := range nodes[1:] {
		for !p.Contains(n.PodCIDR.Addr()) {
			p = netip.PrefixFrom(p.Addr(), p.Bits()-1).Masked()
		}
	}
	return p
}

// ifindexIn returns the index of interface name inside member's namespace.
func ifindexIn(t topology.Cluster, member, name string) (int, error) {
	var idx int
	err := t.Do(member, func() error {
		i, err := net.InterfaceByName(name)
		if err != nil {
			return err
		}
		idx = i.Index
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("interface %s in %s: %w", name, member, err)
	}
	return idx, nil
}

// expectTrace checks that node's datapath traced the flow src -> dst of proto at point
// with one of verdicts (and, when target is non-zero, redirected to that ifindex).
func expectTrace(tr *trace.Collector, node string, src, dst netip.Addr, proto probe.Protocol, point string, target int, verdicts ...string) error {
	n := tr.Names()
	match := func(r trace.Record) bool {
		return r.Pkt.Src == src && r.Pkt.Dst == dst && r.Pkt.IPProto == ipProto(proto) && n.ObsPoint(r.ObsPoint) == point
	}
	recs := tr.Find(node, match)
	if len(recs) == 0 {
		return fmt.Errorf("no %s record for %s %s -> %s on %s; records there:\n%s", point, proto, src, dst, node, tr.Dump(node))
	}
	for _, r := range recs {
		for _, v := range verdicts {
			if n.Verdict(r.Verdict) == v && (target == 0 || int(r.TargetIfindex) == target) {
				return nil
			}
		}
	}
	return fmt.Errorf("want %s with verdict %v (target ifindex %d) for %s %s -> %s; got:\n%s", point, verdicts, target, proto, src, dst, formatRecords(n, node, recs))
}

func formatRecords(n *trace.Names, node string, recs []trace.Record) string {
	var s string
	for _, r := range recs {
		s += fmt.Sprintf("  %s: %s\n", node, n.Format(r))
	}
	return s
}

// notSeen fails when a capture point saw any packet matching f.
func notSeen(s *capture.Session, h hops.Hop, f capture.Filter) error {
	if pkts := s.Packets(h.Member, h.Interface, f); len(pkts) > 0 {
		return fmt.Errorf("%d packet(s) seen on %s/%s, want none: first %s (pcap %s)",
			len(pkts), h.Member, h.Interface, pkts[0].Summary(), s.PcapPath(h.Member, h.Interface))
	}
	return nil
}

// counterDelta reads a node's host-stack counters and says how they moved since before.
func counterDelta(ctx context.Context, t topology.Cluster, node string, before probe.StackPackets) (probe.StackPackets, error) {
	now, err := probe.ReadHostStackCounters(ctx, t, node)
	if err != nil {
		return probe.StackPackets{}, err
	}
	return probe.StackPackets{Forward: now.Forward - before.Forward, Input: now.Input - before.Input}, nil
}

// ip is a in the form gopacket and capture filters take.
func ip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

// internalIface is the interface of node n that carries its InternalIP (the first one
// when none does): where DSR and service traffic enters and leaves the node.
func internalIface(n topology.Node) topology.Interface {
	for _, i := range n.Interfaces {
		if i.Address.Addr() == n.InternalIP {
			return i
		}
	}
	return n.Interfaces[0]
}

// none is the parameters or expected values of a step that takes none.
type none struct{}

// hostStackCounters installs the host-stack counters (see probe.HostStackCounters) in
// every node of the stage, once.
func hostStackCounters(ctx context.Context, s *scenarios.Stage) error {
	if s.Memo[countersMemo] != nil {
		return nil
	}
	if err := probe.HostStackCounters(ctx, s.T, podSupernet(s.T)); err != nil {
		return err
	}
	s.Memo[countersMemo] = true
	return nil
}

// countersMemo is the Stage.Memo key of the counters installed.
const countersMemo = "host-stack-counters"

// agentsOf is the stage's agents, nil when its topology runs none (podNetwork: kernel).
func agentsOf(s *scenarios.Stage) *agentrun.Agents {
	a, _ := s.Agents()
	return a
}

// expectZero wants the host-stack counters not to have moved.
func expectZero(d probe.StackPackets) error {
	if d.Forward != 0 || d.Input != 0 {
		return fmt.Errorf("forward counter rose by %d, input by %d: packets went through the host stack", d.Forward, d.Input)
	}
	return nil
}

// expectEqual wants got to be want.
func expectEqual(what string, want, got any) error {
	if want != got {
		return fmt.Errorf("%s: want %v, got %v", what, want, got)
	}
	return nil
}

// podPairWith names two pods, a sender and a receiver.
type podPairWith struct {
	From  scenarios.PodRef `json:"from" required:"true" doc:"the pod that sends"`
	To    scenarios.PodRef `json:"to" required:"true" doc:"the pod that answers, on another node"`
	Label string           `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

func (w *podPairWith) Validate(e strictyaml.FieldErrors) { checkOtherNode(e, w.From, w.To) }

// checkOtherNode wants pod to on another node than pod from.
func checkOtherNode(e strictyaml.FieldErrors, from, to scenarios.PodRef) {
	st := scenarios.CheckableStage(e)
	if st == nil {
		return
	}
	if a, b := st.PodNode(from), st.PodNode(to); a == b {
		e.Add("to", "%q is on %s, like %s: want a pod of another node", to, b, from)
	}
}

// effectiveConfig is the stage's cilium-config as resolved (Cilium's defaults when none).
func effectiveConfig(s *scenarios.Stage) *config.Config {
	if s.Config != nil {
		return s.Config
	}
	return config.Default()
}

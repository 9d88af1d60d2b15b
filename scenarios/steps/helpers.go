// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket/layers"

	"podpath/datapath/trace"
	"podpath/scenarios"
	"podpath/scenarios/capture"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
	"podpath/topology"
)

var probeProtocols = []probe.Protocol{probe.ICMP, probe.TCP, probe.UDP}

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
func podSupernet(t *topology.Topology) netip.Prefix {
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
func ifindexIn(t *topology.Topology, member, name string) (int, error) {
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
func counterDelta(ctx context.Context, t *topology.Topology, node string, before probe.StackPackets) (probe.StackPackets, error) {
	now, err := probe.ReadHostStackCounters(ctx, t, node)
	if err != nil {
		return probe.StackPackets{}, err
	}
	return probe.StackPackets{Forward: now.Forward - before.Forward, Input: now.Input - before.Input}, nil
}

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

const countersMemo = "host-stack-counters"

// agentsOf is the stage's agents, nil when its topology runs none (podNetwork: kernel).
func agentsOf(s *scenarios.Stage) *scenarios.Agents {
	a, _ := s.Agents()
	return a
}

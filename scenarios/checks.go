// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/google/gopacket/layers"

	"podpath/datapath/trace"
	"podpath/scenarios/capture"
	"podpath/topology"
)

var probeProtocols = []Protocol{ICMP, TCP, UDP}

func ipProto(p Protocol) uint8 {
	switch p {
	case TCP:
		return uint8(layers.IPProtocolTCP)
	case UDP:
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
func expectTrace(tr *trace.Collector, node string, src, dst netip.Addr, proto Protocol, point string, target int, verdicts ...string) error {
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
func notSeen(s *capture.Session, h Hop, f capture.Filter) error {
	if pkts := s.Packets(h.Member, h.Interface, f); len(pkts) > 0 {
		return fmt.Errorf("%d packet(s) seen on %s/%s, want none: first %s (pcap %s)",
			len(pkts), h.Member, h.Interface, pkts[0].Summary(), s.PcapPath(h.Member, h.Interface))
	}
	return nil
}

// counterDelta reads a node's host-stack counters and says how they moved since before.
func counterDelta(ctx context.Context, t *topology.Topology, node string, before StackPackets) (StackPackets, error) {
	now, err := ReadHostStackCounters(ctx, t, node)
	if err != nil {
		return StackPackets{}, err
	}
	return StackPackets{Forward: now.Forward - before.Forward, Input: now.Input - before.Input}, nil
}

func ip(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

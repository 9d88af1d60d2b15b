// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"podpath/datapath/agent"
	"podpath/datapath/maps"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[nodeRouteWith, nodeRouteExpect]{
		Name:    "node-route",
		Summary: "whether a node routes another node's PodCIDR via that node's IP (auto-direct-node-routes)",
		With:    nodeRouteWith{},
		Expect:  nodeRouteExpect{Present: true},
		Run:     runNodeRoute,
	})
	scenarios.RegisterStep(scenarios.StepDef[podPairWith, none]{
		Name: "cross-node-path",
		Summary: "ICMP, TCP and UDP between pods of two nodes with native routing: delivery, the trace on both " +
			"nodes (FIB lookup and redirect out, redirect_peer in), the wire hop by hop, not encapsulated, and " +
			"neither host stack seeing the packets",
		Agents: true,
		Run:    runCrossNodePath,
	})
	scenarios.RegisterStep(scenarios.StepDef[nodeChangeWith, none]{
		Name:    "node-remove",
		Summary: "remove a node from another node's agent: its route and map entries go, and its pods become unreachable",
		Agents:  true,
		Run:     runNodeRemove,
	})
	scenarios.RegisterStep(scenarios.StepDef[nodeChangeWith, none]{
		Name:    "node-add",
		Summary: "add a node (back) to another node's agent: its route comes back, and its pods are reachable",
		Agents:  true,
		Run:     runNodeAdd,
	})
}

type nodeRouteWith struct {
	Node scenarios.NodeRef `json:"node" required:"true" doc:"whose routing table"`
	To   scenarios.NodeRef `json:"to" required:"true" doc:"the node whose PodCIDR is routed"`
}

type nodeRouteExpect struct {
	Present bool `json:"present" doc:"the route is there (false: there is no route to the PodCIDR at all)"`
}

func runNodeRoute(_ context.Context, s *scenarios.Stage, w nodeRouteWith, e nodeRouteExpect) error {
	to, err := s.T.Node(string(w.To))
	if err != nil {
		return err
	}
	where := fmt.Sprintf("%s routing table: %s", w.Node, to.PodCIDR)
	if e.Present {
		s.Check(fmt.Sprintf("auto-direct-node-routes: %s routes %s's PodCIDR via %s", w.Node, w.To, w.To), where,
			expectRoute(s.T, string(w.Node), to.PodCIDR, to.InternalIP))
		return nil
	}
	s.Check(fmt.Sprintf("%s has no route to %s's PodCIDR", w.Node, w.To), where, expectNoRoute(s.T, string(w.Node), to.PodCIDR))
	return nil
}

func runCrossNodePath(ctx context.Context, s *scenarios.Stage, w podPairWith, _ none) error {
	return crossNode(ctx, s, s.Label(w.Label), string(w.From), string(w.To))
}

// crossNode checks one cross-node flow: delivery of ICMP/TCP/UDP, the trace on both
// nodes, the wire (not encapsulated, pod IPs, node MACs, TTL per hop), and that neither
// node's host stack saw the packets.
func crossNode(ctx context.Context, r *scenarios.Stage, label, src, dst string) error {
	t := r.T
	from, _ := t.Pod(src)
	to, _ := t.Pod(dst)
	if err := hostStackCounters(ctx, r); err != nil {
		return err
	}
	traces, err := r.OpenTraces(t, from.Node, to.Node)
	if err != nil {
		return err
	}
	defer traces.Close()
	plan, err := hops.PodPath(t, src, dst)
	if err != nil {
		return err
	}
	path, bypassed := hops.PeerRedirected(plan)
	points, err := hops.PathPoints(t, plan)
	if err != nil {
		return err
	}
	session, err := capture.Start(filepath.Join(r.Artifacts, "cross-node-"+label), points...)
	if err != nil {
		return err
	}
	defer session.Stop()
	before := map[string]probe.StackPackets{}
	for _, n := range []string{from.Node, to.Node} {
		if before[n], err = probe.ReadHostStackCounters(ctx, t, n); err != nil {
			return err
		}
	}
	for _, p := range probeProtocols {
		r.Check(fmt.Sprintf("%s: %s %s -> %s (%s -> %s) delivered", label, p, src, dst, from.Node, to.Node),
			fmt.Sprintf("the %s answer from %s (%s) in %s", p, dst, to.IP, src), probe.Exchange(ctx, t, p, src, dst))
	}
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}
	nic, err := ifindexIn(t, from.Node, path[2].Interface)
	if err != nil {
		return err
	}
	lxc, err := ifindexIn(t, to.Node, to.HostVeth)
	if err != nil {
		return err
	}
	for _, p := range probeProtocols {
		r.Check(fmt.Sprintf("%s: %s from-container on %s redirects out of %s after a FIB lookup", label, p, from.Node, path[2].Interface),
			from.Node+" trace ring buffer: OBS_FROM_CONTAINER verdict and target ifindex",
			expectTrace(traces, from.Node, from.IP, to.IP, p, "OBS_FROM_CONTAINER", nic, "VERDICT_REDIRECT", "VERDICT_REDIRECT_NEIGH"))
		r.Check(fmt.Sprintf("%s: %s from-netdev on %s hands the packet to %s with redirect_peer", label, p, to.Node, dst),
			to.Node+" trace ring buffer: OBS_FROM_NETDEV verdict and target ifindex",
			expectTrace(traces, to.Node, from.IP, to.IP, p, "OBS_FROM_NETDEV", lxc, "VERDICT_REDIRECT_PEER"))
	}
	echo := capture.ICMPEcho(ip(from.IP), ip(to.IP))
	seen, perr := r.VerifyPath(fmt.Sprintf("%s: ICMP echo request %s -> %s", label, src, dst), session, path, echo)
	r.Check(fmt.Sprintf("%s: echo request crosses %d hops with the interfaces' MACs and TTL one less per routing hop", label, len(path)),
		"captures on every hop: direction, source/destination MAC, IPv4 TTL", perr)
	if perr == nil {
		wire := seen[2]
		r.Check(label+": on the underlay wire the packet is plain IPv4 between pod addresses, not encapsulated",
			fmt.Sprintf("%s/%s: layers after Ethernet", wire.Member, wire.Interface), plainPodPacket(wire, from.IP, to.IP))
	}
	r.Check(label+": "+to.HostVeth+" on "+to.Node+" never transmits the packet (bpf_redirect_peer from the NIC)",
		"capture on "+to.Node+"/"+to.HostVeth, notSeen(session, bypassed, echo))
	for _, n := range []string{from.Node, to.Node} {
		d, err := counterDelta(ctx, t, n, before[n])
		if err != nil {
			return err
		}
		r.Check(fmt.Sprintf("%s: %s's host stack and netfilter never see the packets", label, n),
			fmt.Sprintf("nftables counters in %s: forward %d, input %d", n, d.Forward, d.Input), expectZero(d))
	}
	return nil
}

func plainPodPacket(p capture.Packet, src, dst netip.Addr) error {
	var names []string
	for _, l := range p.Decode().Layers() {
		names = append(names, l.LayerType().String())
	}
	got := strings.Join(names, "/")
	if got != "Ethernet/IPv4/ICMPv4/Payload" {
		return fmt.Errorf("layers %s, want Ethernet/IPv4/ICMPv4/Payload: %s", got, p.Summary())
	}
	ip4 := p.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip4.SrcIP.String() != src.String() || ip4.DstIP.String() != dst.String() {
		return fmt.Errorf("addresses %s -> %s, want the pods' %s -> %s", ip4.SrcIP, ip4.DstIP, src, dst)
	}
	return nil
}

func expectRoute(t topology.Cluster, node string, dst netip.Prefix, via netip.Addr) error {
	return t.Do(node, func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		var have []string
		for _, rt := range routes {
			if rt.Dst != nil && rt.Dst.String() == dst.String() {
				if rt.Gw.String() == via.String() {
					return nil
				}
				have = append(have, rt.String())
			}
		}
		return fmt.Errorf("no route %s via %s; routes to it: %v", dst, via, have)
	})
}

func expectNoRoute(t topology.Cluster, node string, dst netip.Prefix) error {
	return t.Do(node, func() error {
		routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if rt.Dst != nil && rt.Dst.String() == dst.String() {
				return fmt.Errorf("route still present: %s", rt)
			}
		}
		return nil
	})
}

// nodeChangeWith names a node, the agent told about it, and two pods to probe with.
type nodeChangeWith struct {
	On   scenarios.NodeRef `json:"on" required:"true" doc:"whose agent is told"`
	Node scenarios.NodeRef `json:"node" required:"true" doc:"the node removed or added"`
	From scenarios.PodRef  `json:"from" required:"true" doc:"a pod on the agent's node that probes"`
	To   scenarios.PodRef  `json:"to" required:"true" doc:"a pod of the node removed or added"`
}

func (w *nodeChangeWith) Validate(e strictyaml.FieldErrors) {
	if w.On == w.Node {
		e.Add("node", "%q is the node whose agent is told: want another", w.Node)
	}
	st := scenarios.CheckableStage(e)
	if st == nil {
		return
	}
	if n := st.PodNode(w.From); n != string(w.On) {
		e.Add("from", "%q is on %s: want a pod of %s", w.From, n, w.On)
	}
	if n := st.PodNode(w.To); n != string(w.Node) {
		e.Add("to", "%q is on %s: want a pod of %s", w.To, n, w.Node)
	}
}

// runNodeRemove removes node from on's agent: its routes and map entries must go,
// and connectivity with them.
func runNodeRemove(ctx context.Context, s *scenarios.Stage, w nodeChangeWith, _ none) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	on, gone := string(w.On), string(w.Node)
	n, err := s.T.Node(gone)
	if err != nil {
		return err
	}
	m, err := maps.OpenPinned(filepath.Join(s.T.Dir(), "bpffs", on, "maps"))
	if err != nil {
		return err
	}
	defer m.Close()
	s.Progress("removing %s from %s's agent", gone, on)
	if err := agents.Client(on).NodeDelete(ctx, gone); err != nil {
		return err
	}
	s.Check(fmt.Sprintf("node removed: %s's route to %s's PodCIDR is gone", on, gone), fmt.Sprintf("%s routing table: %s", on, n.PodCIDR),
		expectNoRoute(s.T, on, n.PodCIDR))
	s.Check(fmt.Sprintf("node removed: %s's ipcache and node map hold no entry of %s", on, gone),
		fmt.Sprintf("%s pinned maps ipcache (%s, %s/32) and nodes (%s)", on, n.PodCIDR, n.InternalIP, n.InternalIP),
		noNodeEntries(m, n.PodCIDR, n.InternalIP))
	to, _ := s.T.Pod(string(w.To))
	var unreachable error
	if err := probe.Exchange(ctx, s.T, probe.ICMP, string(w.From), to.Name); err == nil {
		unreachable = fmt.Errorf("ping %s -> %s (%s) still answered", w.From, to.Name, to.IP)
	}
	s.Check(fmt.Sprintf("node removed: %s can no longer reach %s", w.From, to.Name), "ping from "+string(w.From), unreachable)
	return nil
}

// runNodeAdd adds node to on's agent: its route and connectivity come back.
func runNodeAdd(ctx context.Context, s *scenarios.Stage, w nodeChangeWith, _ none) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	on := string(w.On)
	n, err := s.T.Node(string(w.Node))
	if err != nil {
		return err
	}
	s.Progress("adding %s to %s's agent", n.Name, on)
	if err := agents.Client(on).NodeUpsert(ctx, agent.Node{Name: n.Name, IP: n.InternalIP, PodCIDR: n.PodCIDR}); err != nil {
		return err
	}
	s.Check(fmt.Sprintf("node added: %s routes %s's PodCIDR again", on, n.Name), on+" routing table", expectRoute(s.T, on, n.PodCIDR, n.InternalIP))
	s.Check(fmt.Sprintf("node added: %s reaches %s", w.From, w.To), "ping from "+string(w.From), probe.Exchange(ctx, s.T, probe.ICMP, string(w.From), string(w.To)))
	return nil
}

func noNodeEntries(m *maps.Maps, podCIDR netip.Prefix, nodeIP netip.Addr) error {
	cache, err := m.IPCacheList()
	if err != nil {
		return err
	}
	for _, e := range cache {
		if e.Prefix == podCIDR || e.Prefix == netip.PrefixFrom(nodeIP, 32) {
			return fmt.Errorf("ipcache still holds %s (identity %d, tunnel endpoint %s)", e.Prefix, e.Identity, e.TunnelEndpoint)
		}
	}
	nodes, err := m.NodeList()
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.IP == nodeIP {
			return fmt.Errorf("node map still holds %s (id %d)", n.IP, n.ID)
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"podpath/datapath/agent"
	"podpath/datapath/maps"
	"podpath/scenarios/capture"
	"podpath/topology"
)

func init() {
	register(&Scenario{
		Name: "native-routing",
		Description: "cross-node pod to pod without encapsulation: bpf_fib_lookup + redirect out of the NIC, " +
			"from-netdev -> bpf_redirect_peer on the other side; L2 with auto-direct-node-routes and a routed " +
			"underlay; nodes added and removed; agents restarted and killed without losing a packet",
		Labels: []string{"native-routing", "redirect-peer", "agent"},
		Run:    runNativeRouting,
	})
}

func runNativeRouting(ctx context.Context, r *Run) error {
	if err := nativeL2(ctx, r); err != nil {
		return err
	}
	return nativeRouted(ctx, r)
}

func nativeL2(ctx context.Context, r *Run) error {
	t, agents, err := r.UpWithAgents(ctx, "l2-two-node-agent", "native-routing")
	if err != nil {
		return err
	}
	node2, _ := t.Node("node2")
	node2IP := node2.InternalIP
	r.Check("auto-direct-node-routes: node1 routes node2's PodCIDR via node2",
		"node1 routing table: "+node2.PodCIDR.String(), expectRoute(t, "node1", node2.PodCIDR, node2IP))
	if err := crossNode(ctx, r, t, "L2", "pod1a", "pod2a"); err != nil {
		return err
	}
	if err := nodeLifecycle(ctx, r, t, agents); err != nil {
		return err
	}
	return restartWithoutLoss(ctx, r, t, agents)
}

func nativeRouted(ctx context.Context, r *Run) error {
	t, agents, err := r.UpWithAgents(ctx, "routed-two-node-agent", "native-routing-routed")
	if err != nil {
		return err
	}
	if err := crossNode(ctx, r, t, "routed", "pod1", "pod2"); err != nil {
		return err
	}
	direct, err := WriteConfig(t.Dir(), "native-routing")
	if err != nil {
		return err
	}
	r.Progress("restarting node1's agent with auto-direct-node-routes: true on the routed underlay")
	if err := agents.Restart(ctx, "node1", direct, false); err != nil {
		return err
	}
	st, err := agents.Client("node1").Status(ctx)
	if err == nil {
		err = errors.New("no problem reported")
		for _, p := range st.Problems {
			if strings.Contains(p, "node node2") && strings.Contains(p, "not on a directly connected subnet") {
				err = nil
			}
		}
		if err != nil {
			err = fmt.Errorf("%w; problems: %q", err, st.Problems)
		}
	}
	r.Check("auto-direct-node-routes on a routed underlay: the agent names node2 as not directly reachable",
		"podpath-agent status of node1: Problems", err)
	return nil
}

// crossNode checks one cross-node flow: delivery of ICMP/TCP/UDP, the trace on both
// nodes, the wire (not encapsulated, pod IPs, node MACs, TTL per hop), and that neither
// node's host stack saw the packets.
func crossNode(ctx context.Context, r *Run, t *topology.Topology, label, src, dst string) error {
	from, _ := t.Pod(src)
	to, _ := t.Pod(dst)
	if err := HostStackCounters(ctx, t, podSupernet(t)); err != nil {
		return err
	}
	traces, err := OpenTraces(t, from.Node, to.Node)
	if err != nil {
		return err
	}
	defer traces.Close()
	hops, err := PodPath(t, src, dst)
	if err != nil {
		return err
	}
	path, bypassed := PeerRedirected(hops)
	points, err := PathPoints(t, hops)
	if err != nil {
		return err
	}
	session, err := capture.Start(filepath.Join(r.Artifacts, "cross-node-"+label), points...)
	if err != nil {
		return err
	}
	defer session.Stop()
	before := map[string]StackPackets{}
	for _, n := range []string{from.Node, to.Node} {
		if before[n], err = ReadHostStackCounters(ctx, t, n); err != nil {
			return err
		}
	}
	for _, p := range probeProtocols {
		r.Check(fmt.Sprintf("%s: %s %s -> %s (%s -> %s) delivered", label, p, src, dst, from.Node, to.Node),
			fmt.Sprintf("the %s answer from %s (%s) in %s", p, dst, to.IP, src), Exchange(ctx, t, p, src, dst))
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

func expectRoute(t *topology.Topology, node string, dst netip.Prefix, via netip.Addr) error {
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

func expectNoRoute(t *topology.Topology, node string, dst netip.Prefix) error {
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

// nodeLifecycle removes node2 from node1's agent and adds it back: its routes and map
// entries must go and come back, and connectivity with them.
func nodeLifecycle(ctx context.Context, r *Run, t *topology.Topology, agents *Agents) error {
	node2, _ := t.Node("node2")
	node2IP := node2.InternalIP
	c := agents.Client("node1")
	m, err := maps.OpenPinned(filepath.Join(t.Dir(), "bpffs", "node1", "maps"))
	if err != nil {
		return err
	}
	defer m.Close()
	r.Progress("removing node2 from node1's agent")
	if err := c.NodeDelete(ctx, "node2"); err != nil {
		return err
	}
	r.Check("node removed: node1's route to node2's PodCIDR is gone", "node1 routing table: "+node2.PodCIDR.String(),
		expectNoRoute(t, "node1", node2.PodCIDR))
	r.Check("node removed: node1's ipcache and node map hold no entry of node2",
		"node1 pinned maps ipcache ("+node2.PodCIDR.String()+", "+node2IP.String()+"/32) and nodes ("+node2IP.String()+")",
		noNodeEntries(m, node2.PodCIDR, node2IP))
	pod2a, _ := t.Pod("pod2a")
	var unreachable error
	if err := Exchange(ctx, t, ICMP, "pod1a", "pod2a"); err == nil {
		unreachable = fmt.Errorf("ping pod1a -> pod2a (%s) still answered", pod2a.IP)
	}
	r.Check("node removed: pod1a can no longer reach pod2a", "ping from pod1a", unreachable)

	r.Progress("adding node2 back")
	if err := c.NodeUpsert(ctx, agent.Node{Name: "node2", IP: node2IP, PodCIDR: node2.PodCIDR}); err != nil {
		return err
	}
	r.Check("node added: node1 routes node2's PodCIDR again", "node1 routing table", expectRoute(t, "node1", node2.PodCIDR, node2IP))
	r.Check("node added: pod1a reaches pod2a", "ping from pod1a", Exchange(ctx, t, ICMP, "pod1a", "pod2a"))
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

// restartWithoutLoss pings pod1a -> pod2a every 10 ms while node1's agent is restarted
// and node2's is killed with SIGKILL and started again: no request may go unanswered.
func restartWithoutLoss(ctx context.Context, r *Run, t *topology.Topology, agents *Agents) error {
	pod2a, _ := t.Pod("pod2a")
	const count, interval = 300, 10 * time.Millisecond
	type result struct {
		lost int
		out  string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		lost, out, err := PingLoss(ctx, t, "pod1a", pod2a.IP, count, interval)
		done <- result{lost, out, err}
	}()
	time.Sleep(300 * time.Millisecond)
	r.Progress("restarting node1's agent (SIGTERM) and killing node2's (SIGKILL) during a 10 ms ping")
	rerr := agents.Restart(ctx, "node1", "", false)
	rerr = errors.Join(rerr, agents.Restart(ctx, "node2", "", true))
	res := <-done
	if rerr != nil {
		return rerr
	}
	err := res.err
	if err == nil && res.lost > 0 {
		err = fmt.Errorf("%d of %d echo requests lost:\n%s", res.lost, count, res.out)
	}
	r.Check(fmt.Sprintf("agents restarted and killed: %d pings every %s, none lost", count, interval),
		"ping -i 0.01 statistics in pod1a", err)
	for _, n := range []string{"node1", "node2"} {
		st, err := agents.Client(n).Status(ctx)
		if err == nil && !st.Adopted {
			err = fmt.Errorf("status says the programs were attached afresh, not adopted: %v", st.Attached)
		}
		r.Check(n+": the new agent adopted the attached programs and pinned maps", "podpath-agent status of "+n+": Adopted", err)
	}
	return nil
}

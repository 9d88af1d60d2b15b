// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/agent"
	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
	"podpath/topology/agentrun"
)

// Egress gateway (issue 11): a selected pod's traffic to the world leaves through the
// gateway node, SNATed there to the egress IP; wire checks on the pod node's uplink,
// the gateway's uplink and the server; the named drop when no node is the gateway.

func init() {
	scenarios.RegisterStep(scenarios.StepDef[egwWith, egwExpect]{
		Name: "egress-gateway",
		Summary: "a pod selected by an egress gateway policy talks to a server outside the cluster (TCP, UDP, ICMP echo): its node's uplink " +
			"shows the packets going to the gateway node (encapsulated to it, or natively to its MAC) and the replies coming back from it the same way, " +
			"the gateway's uplink shows the egress IP as the source, the server sees the egress IP, the pod gets replies to its own tuple",
		Agents:  true,
		With:    egwWith{Protocols: []probe.Protocol{probe.TCP, probe.UDP, probe.ICMP}, Port: 8080},
		Run:     runEgressGateway,
		Timeout: time.Minute,
	})
	scenarios.RegisterStep(scenarios.StepDef[egwDropWith, egwDropExpect]{
		Name: "egress-gateway-drop",
		Summary: "a selected pod's UDP flow and ping to the server while no node is its policy's gateway: no answer, dropped with the reason " +
			"the spec says at the node and hook the spec says (trace records)",
		Agents:  true,
		With:    egwDropWith{Port: 8083},
		Run:     runEgressGatewayDrop,
		Timeout: time.Minute,
	})
	scenarios.RegisterStep(scenarios.StepDef[nodeAddressWith, none]{
		Name: "node-address",
		Summary: "(an action) add an IPv4 address to a node's internal interface (`ip addr add`), as an egress gateway's egressIP must be " +
			"assigned to the gateway",
		Run:     runNodeAddress,
		Timeout: 30 * time.Second,
	})
	scenarios.RegisterStep(scenarios.StepDef[nodeLabelsWith, none]{
		Name:    "node-labels",
		Summary: "(an action) give a node new labels (replacing the topology's) on every agent, as a `kubectl label node` would",
		Agents:  true,
		Run:     runNodeLabels,
		Timeout: 30 * time.Second,
	})
}

type egwWith struct {
	From      scenarios.PodRef    `json:"from" required:"true" doc:"the selected pod"`
	To        scenarios.MemberRef `json:"to" required:"true" doc:"the server outside the cluster"`
	Gateway   scenarios.NodeRef   `json:"gateway" required:"true" doc:"the node the policy's nodeSelector picks (from the topology's labels)"`
	EgressIP  string              `json:"egressIP" doc:"the policy's egress IP (default: the gateway's InternalIP, as for interface: its uplink)"`
	Protocols []probe.Protocol    `json:"protocols" doc:"tcp, udp, icmp"`
	Port      uint16              `json:"port" range:"1..65535" doc:"the server's TCP/UDP port"`
	Label     string              `json:"label" doc:"prefix of the check names"`
}

type egwExpect struct {
	Encapsulated bool `json:"encapsulated" doc:"true: the pod node's uplink carries the packets in the tunnel to the gateway (VXLAN); false: natively, to the gateway's MAC"`
	PortMin      int  `json:"portMin" range:"0..65535" doc:"the gateway's masquerade range's first port (0: not checked)"`
	PortMax      int  `json:"portMax" range:"0..65535" doc:"its last port"`
}

// ipLayers are a packet's IPv4 headers, outermost first.
func ipLayers(p capture.Packet) []*layers.IPv4 { return ipLayersOf(p.Decode()) }

func ipLayersOf(p gopacket.Packet) []*layers.IPv4 {
	var out []*layers.IPv4
	for _, l := range p.Layers() {
		if ip, ok := l.(*layers.IPv4); ok {
			out = append(out, ip)
		}
	}
	return out
}

// outgoing are the packets an interface sent.
func outgoing(ps []capture.Packet) []capture.Packet {
	var out []capture.Packet
	for _, p := range ps {
		if p.Outgoing {
			out = append(out, p)
		}
	}
	return out
}

func addrOf(b net.IP) netip.Addr { a, _ := netip.AddrFromSlice(b.To4()); return a }

func runEgressGateway(ctx context.Context, s *scenarios.Stage, w egwWith, e egwExpect) error {
	t := s.T
	pod, err := t.Pod(string(w.From))
	if err != nil {
		return err
	}
	node, err := t.Node(pod.Node)
	if err != nil {
		return err
	}
	gw, err := t.Node(string(w.Gateway))
	if err != nil {
		return err
	}
	egressIP := gw.InternalIP
	if w.EgressIP != "" {
		if egressIP, err = netip.ParseAddr(w.EgressIP); err != nil {
			return fmt.Errorf("egressIP: %w", err)
		}
	}
	server := string(w.To)
	sifs, err := t.Interfaces(server)
	if err != nil || len(sifs) == 0 {
		return fmt.Errorf("server %s: no interface (%v)", server, err)
	}
	serverIP := sifs[0].Address.Addr()
	pm, _ := t.Member(pod.Name)
	nm, _ := t.Member(node.Name)
	gm, _ := t.Member(gw.Name)
	sm, _ := t.Member(server)
	uplink, gwUplink := internalIface(node), internalIface(gw)
	dir := strings.NewReplacer(" ", "-", ":", "", "/", "-").Replace(strings.ToLower(s.Label(w.Label)))
	session, err := capture.Start(filepath.Join(s.Artifacts, "egress-gateway-"+dir+"-"+pod.Name+"-"+server),
		capture.Point{Member: pod.Name, Interface: "eth0", NsPath: pm.NsPath},
		capture.Point{Member: node.Name, Interface: uplink.Name, NsPath: nm.NsPath},
		capture.Point{Member: gw.Name, Interface: gwUplink.Name, NsPath: gm.NsPath},
		capture.Point{Member: server, Interface: sifs[0].Name, NsPath: sm.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	prefix := s.Label(w.Label)
	if prefix != "" {
		prefix += ": "
	}
	inRange := func(p uint16) bool { return e.PortMin == 0 || (int(p) >= e.PortMin && int(p) <= e.PortMax) }
	for _, proto := range w.Protocols {
		name := fmt.Sprintf("%s%s %s -> %s", prefix, proto, pod.Name, server)
		x, err := worldExchange(ctx, t, pod.Name, server, netip.AddrPortFrom(serverIP, w.Port), proto)
		if err != nil {
			return err
		}
		time.Sleep(100 * time.Millisecond)
		s.Check(name+": the replies reach the pod", fmt.Sprintf("the exchange from %s's socket (pcaps %s)", pod.Name, session.PcapPath(pod.Name, "eth0")), x.err)

		// The pod's node: the pod's own packet, to the gateway.
		toServer := func(p gopacket.Packet) bool {
			ips := ipLayersOf(p)
			if len(ips) == 0 {
				return false
			}
			in := ips[len(ips)-1]
			return addrOf(in.DstIP) == serverIP && in.Protocol == layerProto(proto)
		}
		var uerr error
		out := outgoing(session.Packets(node.Name, uplink.Name, toServer))
		if len(out) == 0 {
			uerr = fmt.Errorf("no %s packet to %s on %s/%s; seen there:\n%s", proto, serverIP, node.Name, uplink.Name, session.Seen(node.Name, uplink.Name, 10))
		}
		how := "natively to " + gw.Name + "'s MAC " + gwUplink.MAC.String()
		if e.Encapsulated {
			how = "encapsulated (VXLAN) to " + gw.Name + " " + gw.InternalIP.String()
		}
		for _, p := range out {
			ips := ipLayers(p)
			in := ips[len(ips)-1]
			var bad string
			switch {
			case addrOf(in.SrcIP) != pod.IP:
				bad = fmt.Sprintf("the inner source is %s, want the pod's %s (the gateway translates, not %s)", addrOf(in.SrcIP), pod.IP, node.Name)
			case e.Encapsulated && (len(ips) < 2 || addrOf(ips[0].DstIP) != gw.InternalIP || p.Decode().Layer(layers.LayerTypeVXLAN) == nil):
				bad = "not in a VXLAN packet to " + gw.InternalIP.String()
			case !e.Encapsulated && len(ips) != 1:
				bad = "encapsulated, want it native"
			case !e.Encapsulated && !bytes.Equal(p.Decode().Layer(layers.LayerTypeEthernet).(*layers.Ethernet).DstMAC, gwUplink.MAC):
				bad = "its Ethernet destination is not " + gw.Name + "'s " + gwUplink.MAC.String()
			}
			if bad != "" {
				uerr = fmt.Errorf("leaving %s/%s: %s: %s", node.Name, uplink.Name, bad, p.Summary())
				break
			}
		}
		s.Check(fmt.Sprintf("%s: on %s's uplink the pod's packets go %s", name, node.Name, how),
			fmt.Sprintf("%s/%s capture: outer and inner IPv4 and Ethernet headers of packets to %s (pcap %s)", node.Name, uplink.Name, serverIP,
				session.PcapPath(node.Name, uplink.Name)), uerr)

		// The way back: the replies reach the pod's node from the gateway, in the tunnel
		// (tunnel mode) or natively from the gateway's MAC.
		fromServer := func(p gopacket.Packet) bool {
			ips := ipLayersOf(p)
			if len(ips) == 0 {
				return false
			}
			in := ips[len(ips)-1]
			return addrOf(in.SrcIP) == serverIP && addrOf(in.DstIP) == pod.IP && in.Protocol == layerProto(proto)
		}
		var rerr error
		var back []capture.Packet
		for _, p := range session.Packets(node.Name, uplink.Name, fromServer) {
			if !p.Outgoing {
				back = append(back, p)
			}
		}
		if len(back) == 0 {
			rerr = fmt.Errorf("no %s reply from %s to %s arrives on %s/%s; seen there:\n%s", proto, serverIP, pod.IP, node.Name, uplink.Name, session.Seen(node.Name, uplink.Name, 10))
		}
		for _, p := range back {
			ips := ipLayers(p)
			var bad string
			switch {
			case e.Encapsulated && (len(ips) < 2 || addrOf(ips[0].SrcIP) != gw.InternalIP || p.Decode().Layer(layers.LayerTypeVXLAN) == nil):
				bad = "not in a VXLAN packet from " + gw.InternalIP.String()
			case !e.Encapsulated && len(ips) != 1:
				bad = "encapsulated, want it native"
			case !e.Encapsulated && !bytes.Equal(p.Decode().Layer(layers.LayerTypeEthernet).(*layers.Ethernet).SrcMAC, gwUplink.MAC):
				bad = "its Ethernet source is not " + gw.Name + "'s " + gwUplink.MAC.String()
			}
			if bad != "" {
				rerr = fmt.Errorf("arriving on %s/%s: %s: %s", node.Name, uplink.Name, bad, p.Summary())
				break
			}
		}
		back2 := "natively from " + gw.Name + "'s MAC"
		if e.Encapsulated {
			back2 = "encapsulated (VXLAN) from " + gw.Name
		}
		s.Check(fmt.Sprintf("%s: the replies come back to %s %s", name, node.Name, back2),
			fmt.Sprintf("%s/%s capture: outer and inner headers of the replies to %s (pcap %s)", node.Name, uplink.Name, pod.IP,
				session.PcapPath(node.Name, uplink.Name)), rerr)

		// The gateway: leaving for the server from the egress IP.
		var gerr error
		// Sent by the gateway: in native routing the pod's packet also arrives on it.
		gout := outgoing(session.Packets(gw.Name, gwUplink.Name, capture.And(func(p gopacket.Packet) bool { return len(ipLayersOf(p)) == 1 }, toServer)))
		if len(gout) == 0 {
			gerr = fmt.Errorf("no %s packet to %s leaves %s/%s natively; seen there:\n%s", proto, serverIP, gw.Name, gwUplink.Name, session.Seen(gw.Name, gwUplink.Name, 10))
		}
		for _, p := range gout {
			src, sport := l4Source(p)
			if src != egressIP || (proto != probe.ICMP && !inRange(sport)) {
				gerr = fmt.Errorf("leaving %s/%s from %s port/id %d, want the egress IP %s (port in [%d, %d]): %s", gw.Name, gwUplink.Name, src, sport, egressIP,
					e.PortMin, e.PortMax, p.Summary())
				break
			}
		}
		s.Check(fmt.Sprintf("%s: on the gateway %s's uplink the source is the egress IP %s", name, gw.Name, egressIP),
			fmt.Sprintf("%s/%s capture: IPv4 source and %s source port of packets to %s (pcap %s)", gw.Name, gwUplink.Name, proto, serverIP,
				session.PcapPath(gw.Name, gwUplink.Name)), gerr)

		serr := worldServerSaw(session, server, sifs[0].Name, serverIP, proto, x, egressIP, func(ap netip.AddrPort) error {
			if ap.Addr() != egressIP {
				return fmt.Errorf("the server's socket saw %s, want the egress IP %s", ap, egressIP)
			}
			return nil
		})
		s.Check(fmt.Sprintf("%s: the server sees the egress IP %s", name, egressIP), fmt.Sprintf("%s: the peer address of its socket, or its capture (pcap %s)",
			server, session.PcapPath(server, sifs[0].Name)), serr)
		s.Check(name+": the pod sees its own tuple in the replies", fmt.Sprintf("%s/eth0 capture: requests out, replies in", pod.Name),
			ownTuple(session, pod, serverIP, proto, x.local))
	}
	return session.Stop()
}

type egwDropWith struct {
	From  scenarios.PodRef    `json:"from" required:"true" doc:"the selected pod"`
	To    scenarios.MemberRef `json:"to" required:"true" doc:"the server outside the cluster"`
	Port  uint16              `json:"port" range:"1..65535" doc:"the server's UDP port"`
	Label string              `json:"label" doc:"prefix of the check names"`
}

type egwDropExpect struct {
	Reason string            `json:"reason" required:"true" oneOf:"DROP_NO_EGRESS_GATEWAY" doc:"the drop reason"`
	Node   scenarios.NodeRef `json:"node" required:"true" doc:"the node whose datapath drops"`
	Hook   string            `json:"hook" required:"true" oneOf:"OBS_FROM_CONTAINER,OBS_TO_NETDEV,OBS_FROM_NETDEV,OBS_FROM_OVERLAY" doc:"the program that drops"`
}

func runEgressGatewayDrop(ctx context.Context, s *scenarios.Stage, w egwDropWith, e egwDropExpect) error {
	t := s.T
	node := string(e.Node)
	u, err := startUDPWorld(s, w.From, w.To, w.Port, node)
	if err != nil {
		return err
	}
	defer u.Close()
	pod, server, serverIP, traces := u.pod, u.server, u.serverIP, u.traces
	prefix := s.Label(w.Label)
	if prefix != "" {
		prefix += ": "
	}
	name := fmt.Sprintf("%s%s -> %s without a gateway node", prefix, pod.Name, server)
	x := askPeer(ctx, t, pod.Name, probe.UDP, netip.AddrPortFrom(serverIP, w.Port))
	out, perr := probe.Exec(ctx, t, 3*time.Second, pod.Name, "ping", "-c", "1", "-W", "1", serverIP.String())
	var aerr error
	switch {
	case x.err == nil:
		aerr = fmt.Errorf("udp answered: the server saw %s", x.seen)
	case perr == nil:
		aerr = fmt.Errorf("ping answered: %s", out)
	}
	s.Check(name+": no answer (udp, ping)", "the pod's UDP socket and ping", aerr)
	if err := traces.Collect(); err != nil {
		return err
	}
	n := traces.Names()
	drops := traces.Find(node, func(r trace.Record) bool {
		return n.Verdict(r.Verdict) == "VERDICT_DROP" && n.DropReason(r.DropReason) == e.Reason && n.ObsPoint(r.ObsPoint) == e.Hook
	})
	var derr error
	if len(drops) < 2 {
		derr = fmt.Errorf("%d %s drops at %s, want at least 2 (the UDP datagram, the echo request); %s's records:\n%s", len(drops), e.Reason, e.Hook, node, traces.Dump(node))
	}
	s.Check(fmt.Sprintf("%s: dropped on %s at %s with %s", name, node, e.Hook, e.Reason), node+"'s trace records", derr)
	return nil
}

type nodeLabelsWith struct {
	Node   scenarios.NodeRef `json:"node" required:"true" doc:"the node"`
	Labels map[string]string `json:"labels" doc:"its new labels (none: every label removed)"`
}

func runNodeLabels(ctx context.Context, s *scenarios.Stage, w nodeLabelsWith, _ none) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	n, err := s.T.Node(string(w.Node))
	if err != nil {
		return err
	}
	for _, on := range s.T.Nodes() {
		an := agent.Node{Name: n.Name, IP: n.InternalIP, PodCIDR: n.PodCIDR, Labels: maps.Clone(w.Labels)}
		if on.Name != n.Name {
			an.Pods = podRefs(s.T, n)
		}
		if err := agents.Client(on.Name).NodeUpsert(ctx, an); err != nil {
			return fmt.Errorf("node-labels: agent on %s: %w", on.Name, err)
		}
	}
	s.Progress("node %s labels now %v on every agent", n.Name, w.Labels)
	return nil
}

func podRefs(t topology.Cluster, n topology.Node) []agent.PodRef {
	var out []agent.PodRef
	for _, p := range n.Pods {
		out = append(out, agent.PodRef{Name: p.Name, IP: p.IP, Labels: agentrun.PodLabels(t.Spec(), p.Name)})
	}
	return out
}

type nodeAddressWith struct {
	Node    scenarios.NodeRef `json:"node" required:"true" doc:"the node"`
	Address string            `json:"address" required:"true" doc:"the address with its prefix length, inside the interface's segment (10.0.0.100/24)"`
}

func runNodeAddress(ctx context.Context, s *scenarios.Stage, w nodeAddressWith, _ none) error {
	n, err := s.T.Node(string(w.Node))
	if err != nil {
		return err
	}
	p, err := netip.ParsePrefix(w.Address)
	if err != nil || !p.Addr().Is4() {
		return fmt.Errorf("node-address: address %q: want an IPv4 address with its prefix length, such as 10.0.0.100/24", w.Address)
	}
	dev := internalIface(n)
	if dev.Address.Masked() != p.Masked() {
		return fmt.Errorf("node-address: %s is outside %s's %s subnet %s", p, n.Name, dev.Name, dev.Address.Masked())
	}
	if out, err := probe.Exec(ctx, s.T, 5*time.Second, n.Name, "ip", "addr", "add", p.String(), "dev", dev.Name); err != nil {
		return fmt.Errorf("node-address: ip addr add %s dev %s in %s: %w: %s", p, dev.Name, n.Name, err, out)
	}
	s.Progress("%s: %s on %s", n.Name, p, dev.Name)
	return nil
}

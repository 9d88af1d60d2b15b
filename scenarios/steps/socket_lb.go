// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/gopacket/layers"

	"podpath/datapath/agent"
	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[socketLBWith, socketLBExpect]{
		Name: "socket-lb",
		Summary: "exchanges from a pod or a node (its own namespace) to a service's ClusterIP from a client process of the node's cgroup: " +
			"where the service is translated (at connect()/sendmsg() by socket-LB, or per packet at tc), seen on the wire from the first packet, " +
			"in the datapath's trace, and in what getpeername()/recvfrom() tell the client",
		Agents: true,
		Run:    runSocketLB,
	})
}

type socketLBWith struct {
	From    scenarios.MemberRef  `json:"from" required:"true" doc:"the pod, or the node (its own namespace: a hostNetwork client), that connects"`
	Service scenarios.ServiceRef `json:"service" required:"true" doc:"a service of the stage with echo servers: TCP (connect), or UDP (connected, and sendto/recvfrom)"`
}

type socketLBExpect struct {
	Translation string `json:"translation" required:"true" oneOf:"socket,tc" doc:"socket: the client's socket is translated (the wire shows a backend from the first packet, no LB translation is traced); tc: the first packet carries the ClusterIP and the tc load balancer translates it"`
}

func (w *socketLBWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && svc.Server != "" && svc.Server != "echo" {
		e.Add("service", "service %s runs server %s: want echo", w.Service, svc.Server)
	}
}

// sockLBClient is where a client sits: its address and the capture points its first
// packet crosses (a pod's host-side veth; a node's NICs and its backend pods' veths).
type sockLBClient struct {
	ip     netip.Addr
	node   string
	points []capture.Point
	hop    string // what the first-packet check looked at
	tcAt   string // the observation point the tc load balancer translates at
}

func sockLBClientOf(t topology.Cluster, from string, svc agent.Service) (sockLBClient, error) {
	var c sockLBClient
	if p, err := t.Pod(from); err == nil {
		mn, err := t.Member(p.Node)
		if err != nil {
			return c, err
		}
		c.ip, c.node, c.tcAt = p.IP, p.Node, "from-container"
		c.points = []capture.Point{{Member: p.Node, Interface: p.HostVeth, NsPath: mn.NsPath}}
		c.hop = fmt.Sprintf("%s/%s (the pod's veth, node side, before tc ingress)", p.Node, p.HostVeth)
		return c, nil
	}
	n, err := t.Node(from)
	if err != nil {
		return c, fmt.Errorf("socket-lb: %s is neither a pod nor a node", from)
	}
	mn, err := t.Member(n.Name)
	if err != nil {
		return c, err
	}
	c.ip, c.node, c.tcAt = n.InternalIP, n.Name, "from-host-svc"
	// pp_svc: where the agent routes ClusterIPs (the tc fallback translates at its
	// peer's ingress); the NICs; the local backends' eth0 (redirect_peer skips their
	// host veths).
	c.points = append(c.points, capture.Point{Member: n.Name, Interface: "pp_svc", NsPath: mn.NsPath})
	for _, i := range n.Interfaces {
		c.points = append(c.points, capture.Point{Member: n.Name, Interface: i.Name, NsPath: mn.NsPath})
	}
	for _, b := range svc.Backends {
		for _, p := range n.Pods {
			if p.IP == b.IP {
				mp, err := t.Member(p.Name)
				if err != nil {
					return c, err
				}
				c.points = append(c.points, capture.Point{Member: p.Name, Interface: "eth0", NsPath: mp.NsPath})
			}
		}
	}
	names := make([]string, len(c.points))
	for i, p := range c.points {
		names[i] = p.String()
	}
	c.hop = strings.Join(names, ", ") + " (pp_svc, where ClusterIPs are routed; the node's NICs; its backend pods)"
	return c, nil
}

// sockLBFlow is the first packet of the client's flow at c's points: sent by the
// client (source = the client's address and port; any source address of the client
// when its socket is not bound to one: an unconnected UDP socket), earliest by
// timestamp.
func sockLBFlow(s *capture.Session, c sockLBClient, local netip.AddrPort) (capture.Packet, netip.AddrPort, bool) {
	var first capture.Packet
	var dst netip.AddrPort
	found := false
	for _, pt := range c.points {
		for _, pk := range s.Packets(pt.Member, pt.Interface, nil) {
			ip, ok := parseIPv4Frame(pk.Data)
			if !ok || (!local.Addr().IsUnspecified() && ip.src != local.Addr()) {
				continue
			}
			sp, dp := ip.ports()
			if sp != local.Port() {
				continue
			}
			if !found || pk.Timestamp.Before(first.Timestamp) {
				first, dst, found = pk, netip.AddrPortFrom(ip.dst, dp), true
			}
		}
	}
	return first, dst, found
}

func runSocketLB(ctx context.Context, s *scenarios.Stage, w socketLBWith, x socketLBExpect) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	fe := netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	var backends []netip.AddrPort
	for _, b := range svc.Backends {
		backends = append(backends, netip.AddrPortFrom(b.IP, b.Port))
	}
	from := string(w.From)
	c, err := sockLBClientOf(t, from, svc)
	if err != nil {
		return err
	}
	protos := []probe.SockProto{probe.SockTCP}
	if strings.EqualFold(svc.Protocol, "UDP") {
		protos = []probe.SockProto{probe.SockUDP, probe.SockUDPSendto}
	}
	var nodes []string
	for _, n := range t.Nodes() {
		nodes = append(nodes, n.Name)
	}
	for _, proto := range protos {
		what := fmt.Sprintf("socket-lb %s: %s %s -> %s", x.Translation, proto, from, fe)
		session, err := capture.Start(filepath.Join(s.Artifacts, "socket-lb", from+"-"+string(proto)+"-"+x.Translation), c.points...)
		if err != nil {
			return err
		}
		traces, err := s.OpenTraces(t, nodes...)
		if err != nil {
			session.Stop()
			return err
		}
		if err := traces.Reset(); err != nil {
			session.Stop()
			traces.Close()
			return err
		}
		r, out, xerr := probe.SockExchange(ctx, t, from, proto, fe)
		time.Sleep(150 * time.Millisecond)
		serr := session.Stop()
		cerr := traces.Collect()
		traces.Close()
		if serr != nil || cerr != nil {
			return fmt.Errorf("%s: capture %v, traces %v", what, serr, cerr)
		}
		if xerr == nil && r.Error != "" {
			xerr = fmt.Errorf("%s", r.Error)
		}
		s.Check(what+": echo answered by a backend", "the client process's JSON line (sockprobe), born in the node's cgroup", wrapOut(xerr, out))
		if xerr != nil {
			continue
		}
		// What the application sees: the service, whoever translated.
		seen, call := r.Peer, "getpeername()"
		if proto == probe.SockUDPSendto {
			seen, call = r.From, "recvfrom()"
		}
		var peerErr error
		if seen != fe.String() {
			peerErr = fmt.Errorf("%s returned %q, want the service %s; client output %s", call, seen, fe, strings.TrimSpace(out))
		}
		s.Check(fmt.Sprintf("%s: %s returns the service address", what, call), "the client process's "+call+" result", peerErr)

		local, err := netip.ParseAddrPort(r.Local)
		if err != nil {
			return fmt.Errorf("%s: client local address %q: %w", what, r.Local, err)
		}
		pk, dst, ok := sockLBFlow(session, c, local)
		// tc: the first packet is captured before tc translates it (a pod's veth
		// before from-container; pp_svc before from-host-svc at its peer).
		wantFE := x.Translation == "tc"
		var wireErr error
		switch {
		case !ok:
			wireErr = fmt.Errorf("no packet from %s seen at %s; seen: %s", local, c.hop, sockLBSeen(session, c))
		case !wantFE && !slices.Contains(backends, dst):
			wireErr = fmt.Errorf("first packet goes to %s, want a backend %v: %s", dst, backends, pk.Summary())
		case wantFE && dst != fe:
			wireErr = fmt.Errorf("first packet goes to %s, want the ClusterIP %s (translated later, at tc): %s", dst, fe, pk.Summary())
		}
		if ok && wireErr == nil && proto == probe.SockTCP {
			if tcp, isTCP := pk.Decode().Layer(layers.LayerTypeTCP).(*layers.TCP); !isTCP || !tcp.SYN || tcp.ACK {
				wireErr = fmt.Errorf("first packet of the flow is not the SYN: %s", pk.Summary())
			}
		}
		if !wantFE {
			s.Check(what+": the first packet carries a backend address on the wire", c.hop, wireErr)
		} else {
			s.Check(what+": the first packet carries the ClusterIP on the wire", c.hop, wireErr)
		}

		// The trace: an LB translation of this flow anywhere (tc) or nowhere (socket).
		n := traces.Names()
		var xl []string
		for _, node := range nodes {
			for _, rec := range traces.Find(node, func(rec trace.Record) bool {
				return rec.LB.Action != 0 && rec.LB.OrigSrc.Port() == local.Port() &&
					(local.Addr().IsUnspecified() || rec.LB.OrigSrc.Addr() == local.Addr())
			}) {
				xl = append(xl, fmt.Sprintf("%s: %s", node, n.Format(rec)))
			}
		}
		sort.Strings(xl)
		var trErr error
		switch {
		case x.Translation == "socket" && len(xl) > 0:
			trErr = fmt.Errorf("the tc load balancer translated the flow from %s:\n  %s", local, strings.Join(xl, "\n  "))
		case x.Translation == "tc" && len(xl) == 0:
			trErr = fmt.Errorf("no LB translation of the flow from %s traced at %s on %s; records there:\n%s", local, c.tcAt, c.node, traces.Dump(c.node))
		}
		look := "trace records of every node: LB action of the flow from the client's address and port"
		if x.Translation == "socket" {
			s.Check(what+": no LB translation at tc", look, trErr)
		} else {
			s.Check(fmt.Sprintf("%s: translated at tc (%s)", what, c.tcAt), look, trErr)
		}
	}
	return nil
}

func wrapOut(err error, out string) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%w; client output: %s", err, strings.TrimSpace(out))
}

func sockLBSeen(s *capture.Session, c sockLBClient) string {
	var b strings.Builder
	for _, pt := range c.points {
		fmt.Fprintf(&b, "\n  %s: %s", pt, s.Seen(pt.Member, pt.Interface, 5))
	}
	return b.String()
}

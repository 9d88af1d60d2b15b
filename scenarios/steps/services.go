// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/google/gopacket/layers"

	"podpath/datapath/agent"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[serviceEchoWith, none]{
		Name:    "service-echo",
		Summary: "one exchange per service through a frontend (ClusterIP, a node's NodePort, or an external IP), answered by an echo server on a backend",
		Agents:  true,
		With:    serviceEchoWith{Frontend: "clusterIP"},
		Run:     runServiceEcho,
	})
	scenarios.RegisterStep(scenarios.StepDef[nodePortSNATWith, none]{
		Name: "nodeport-snat",
		Summary: "TCP connections from a client to a node's NodePort until one lands on a backend of another node: " +
			"the backend sees the entry node's IP as the source, the client sees every reply from the node port",
		Agents: true,
		With:   nodePortSNATWith{Connections: 16},
		Run:    runNodePortSNAT,
	})
}

type serviceEchoWith struct {
	From     scenarios.MemberRef    `json:"from" required:"true" doc:"the pod or client that sends"`
	Services []scenarios.ServiceRef `json:"services" required:"true" doc:"services of the stage, with echo servers (one check each, over the service's protocol)"`
	Frontend string                 `json:"frontend" oneOf:"clusterIP,nodePort,externalIP" doc:"the address dialled: the ClusterIP, node's InternalIP at the NodePort, or the first external IP"`
	Node     scenarios.NodeRef      `json:"node" doc:"with frontend nodePort: the node dialled"`
}

func (w *serviceEchoWith) Validate(e strictyaml.FieldErrors) {
	if (w.Frontend == "nodePort") != (w.Node != "") {
		e.Add("node", "want a node with frontend nodePort, and none with %s", w.Frontend)
	}
	for i, name := range w.Services {
		svc := scenarios.DecodingStage(e).Service(name)
		switch {
		case svc == nil:
		case svc.Server != "" && svc.Server != "echo":
			e.Add(fmt.Sprintf("services[%d]", i), "service %s runs server %s: want echo", name, svc.Server)
		case w.Frontend == "nodePort" && svc.NodePort == 0:
			e.Add(fmt.Sprintf("services[%d]", i), "service %s has no nodePort", name)
		case w.Frontend == "externalIP" && len(svc.ExternalIPs) == 0:
			e.Add(fmt.Sprintf("services[%d]", i), "service %s has no externalIPs", name)
		}
	}
}

// frontend is the address a service is dialled at.
func frontend(t topology.Cluster, svc agent.Service, kind, node string) (netip.AddrPort, error) {
	switch kind {
	case "nodePort":
		n, err := t.Node(node)
		if err != nil {
			return netip.AddrPort{}, err
		}
		return netip.AddrPortFrom(n.InternalIP, svc.NodePort), nil
	case "externalIP":
		if len(svc.ExternalIPs) == 0 {
			return netip.AddrPort{}, fmt.Errorf("service %s has no external IP", svc.Name)
		}
		return netip.AddrPortFrom(svc.ExternalIPs[0], svc.Port), nil
	}
	return netip.AddrPortFrom(svc.ClusterIP, svc.Port), nil
}

func runServiceEcho(ctx context.Context, s *scenarios.Stage, w serviceEchoWith, _ none) error {
	kind := map[string]string{"clusterIP": "ClusterIP", "nodePort": "NodePort", "externalIP": "External IP"}[w.Frontend]
	lookedAt := "the echo from a backend pod, through the service VIP"
	if w.Frontend != "clusterIP" {
		lookedAt = "the echo seen by " + string(w.From)
		if m, err := s.T.Member(string(w.From)); err == nil && m.Kind == topology.KindClient {
			lookedAt = "the echo seen by the external client"
		}
	}
	for _, name := range w.Services {
		svc := s.Services[string(name)]
		dst, err := frontend(s.T, svc, w.Frontend, string(w.Node))
		if err != nil {
			return err
		}
		p := probe.Protocol(strings.ToLower(svc.Protocol))
		s.Check(fmt.Sprintf("%s: %s %s -> %s answered by a backend", kind, p, w.From, dst), lookedAt,
			probe.ExchangeAddr(ctx, s.T, string(w.From), p, dst))
	}
	return nil
}

type nodePortSNATWith struct {
	Client      scenarios.MemberRef  `json:"client" required:"true" doc:"the client outside the cluster that connects"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP NodePort (or LoadBalancer) service of the stage with echo servers"`
	Node        scenarios.NodeRef    `json:"node" required:"true" doc:"the node whose NodePort the client dials"`
	BackendNode scenarios.NodeRef    `json:"backendNode" required:"true" doc:"another node with backends: its NIC is where the source address is checked"`
	Connections int                  `json:"connections" range:"1..1000" doc:"connections tried until one lands on backendNode"`
}

func (w *nodePortSNATWith) Validate(e strictyaml.FieldErrors) {
	if w.Node == w.BackendNode {
		e.Add("backendNode", "%q is the entry node: want another", w.BackendNode)
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.Protocol != "TCP" || svc.NodePort == 0 || svc.Server == "whoami" || svc.Server == "none") {
		e.Add("service", "service %s is %s %s with server %q: want a TCP service with a nodePort and echo servers", w.Service, svc.Protocol, svc.Type, svc.Server)
	}
}

// runNodePortSNAT sends TCP connections from the client to the node port until one
// lands on a backend of the other node, and checks on that node's NIC that the backend
// sees the entry node's IP as the source, and on the client that replies come from
// the node port.
func runNodePortSNAT(ctx context.Context, s *scenarios.Stage, w nodePortSNATWith, _ none) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	n1, err := t.Node(string(w.Node))
	if err != nil {
		return err
	}
	n2, _ := t.Node(string(w.BackendNode))
	nodePort := netip.AddrPortFrom(n1.InternalIP, svc.NodePort)
	client := string(w.Client)
	me, _ := t.Member(client)
	m2, _ := t.Member(n2.Name)
	ifs, err := t.Interfaces(client)
	if err != nil || len(ifs) == 0 {
		return fmt.Errorf("client %s: no interface (%v)", client, err)
	}
	nic := internalIface(n2).Name
	session, err := capture.Start(filepath.Join(s.Artifacts, "nodeport-snat"),
		capture.Point{Member: client, Interface: ifs[0].Name, NsPath: me.NsPath},
		capture.Point{Member: n2.Name, Interface: nic, NsPath: m2.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	for range w.Connections {
		if err := probe.ExchangeAddr(ctx, t, client, probe.TCP, nodePort); err != nil {
			return err
		}
	}
	if err := session.Stop(); err != nil {
		return err
	}
	var ports []uint16
	for _, b := range svc.Backends {
		ports = append(ports, b.Port)
	}
	toBackend := session.Packets(n2.Name, nic, capture.IPv4Flow(nil, nil, layers.IPProtocolTCP))
	var serr error
	seen := 0
	for _, p := range toBackend {
		ip4 := p.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Decode().Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !slices.Contains(ports, uint16(tcp.DstPort)) {
			continue
		}
		seen++
		if ip4.SrcIP.String() != n1.InternalIP.String() {
			serr = fmt.Errorf("backend-bound packet from %s, want %s's %s (SNAT): %s", ip4.SrcIP, n1.Name, n1.InternalIP, p.Summary())
			break
		}
	}
	if seen == 0 {
		serr = fmt.Errorf("no connection reached a backend on %s in %d tries (Maglev sent all elsewhere?)", n2.Name, w.Connections)
	}
	s.Check(fmt.Sprintf("NodePort SNAT: the remote backend sees %s's IP as the source", n1.Name),
		fmt.Sprintf("%s/%s capture: IPv4 source of packets to the backend port", n2.Name, nic), serr)
	var rerr error
	replies := session.Packets(client, ifs[0].Name, capture.TCPPort(svc.NodePort))
	if len(replies) == 0 {
		rerr = errors.New("no packet to or from the node port on " + client)
	}
	for _, p := range replies {
		ip4 := p.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Decode().Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !p.Outgoing && (ip4.SrcIP.String() != nodePort.Addr().String() || uint16(tcp.SrcPort) != nodePort.Port()) {
			rerr = fmt.Errorf("reply from %s:%d, want the node port %s: %s", ip4.SrcIP, tcp.SrcPort, nodePort, p.Summary())
			break
		}
	}
	s.Check("NodePort SNAT: the client sees every reply from "+nodePort.String(),
		fmt.Sprintf("%s/%s capture: IPv4/TCP source of incoming packets", client, ifs[0].Name), rerr)
	checkNATFields(s, session, svc, n1, client, ifs[0].Name, n2.Name, nic)
	return checkHairpin(ctx, s, svc)
}

// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/gopacket/layers"

	"podpath/datapath/agent"
	"podpath/scenarios/capture"
	"podpath/topology"
)

func init() {
	register(&Scenario{
		Name: "services-snat",
		Description: "kube-proxy replacement in SNAT mode with Maglev: ClusterIP from a pod, NodePort from " +
			"an external client entering a node without the backend (the backend sees the node's IP, the " +
			"client sees replies from the node port), TCP and UDP",
		Labels: []string{"services", "snat", "maglev"},
		Run:    runServicesSNAT,
	})
}

var webVIP = netip.MustParseAddr("10.96.0.10")

const (
	webPort     = 80
	webNodePort = 30080
)

// webService balances over every pod but pod1a (the client), on the echo port.
func webService(t *topology.Topology, proto string) agent.Service {
	s := agent.Service{Name: "web-" + strings.ToLower(proto), Type: "NodePort", ClusterIP: webVIP, Port: webPort,
		Protocol: proto, NodePort: webNodePort}
	for _, p := range t.Pods() {
		if p.Name != "pod1a" {
			s.Backends = append(s.Backends, agent.ServiceBackend{IP: p.IP, Port: probePort})
		}
	}
	return s
}

func runServicesSNAT(ctx context.Context, r *Run) error {
	t, agents, err := r.UpWithAgents(ctx, "l2-services-agent", "services-snat")
	if err != nil {
		return err
	}
	for _, proto := range []string{"TCP", "UDP"} {
		if err := agents.ServiceUpsert(ctx, webService(t, proto)); err != nil {
			return err
		}
	}
	servers, err := echoOn(t, backendsOf(t))
	if err != nil {
		return err
	}
	defer servers.Close()
	for _, p := range []Protocol{TCP, UDP} {
		r.Check(fmt.Sprintf("ClusterIP: %s pod1a -> %s:%d answered by a backend", p, webVIP, webPort),
			"the echo from a backend pod, through the service VIP", exchangeAddr(ctx, t, "pod1a", p, netip.AddrPortFrom(webVIP, webPort)))
	}
	n1, _ := t.Node("node1")
	nodePort := netip.AddrPortFrom(n1.InternalIP, webNodePort)
	for _, p := range []Protocol{TCP, UDP} {
		r.Check(fmt.Sprintf("NodePort: %s ext -> %s answered by a backend", p, nodePort),
			"the echo seen by the external client", exchangeAddr(ctx, t, "ext", p, nodePort))
	}
	return snatOnTheWire(ctx, r, t, nodePort)
}

// backendsOf are the pods serving webService.
func backendsOf(t *topology.Topology) []string {
	var out []string
	for _, p := range t.Pods() {
		if p.Name != "pod1a" {
			out = append(out, p.Name)
		}
	}
	return out
}

type closers []io.Closer

func (c closers) Close() error {
	var errs []error
	for _, x := range c {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

// echoOn starts TCP and UDP echo servers in every pod named.
func echoOn(t *topology.Topology, pods []string) (io.Closer, error) {
	var cs closers
	for _, p := range pods {
		for _, proto := range []Protocol{TCP, UDP} {
			c, err := startEcho(t, proto, p)
			if err != nil {
				cs.Close()
				return nil, err
			}
			cs = append(cs, c)
		}
	}
	return cs, nil
}

// exchangeAddr sends one probe from member to dst (a service frontend) and checks the
// echo comes back from dst.
func exchangeAddr(ctx context.Context, t *topology.Topology, member string, proto Protocol, dst netip.AddrPort) error {
	msg := fmt.Sprintf("podpath %s service probe from %s %d", proto, member, time.Now().UnixNano())
	return t.Do(member, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, string(proto)+"4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("%s %s -> %s: %w", proto, member, dst, err)
		}
		if string(buf) != msg {
			return fmt.Errorf("%s %s -> %s: echo %q", proto, member, dst, buf)
		}
		return nil
	})
}

// snatOnTheWire sends TCP connections from ext to the node port until one lands on a
// backend on node2, and checks on node2's NIC that the backend sees node1's IP as the
// source, and on ext that replies come from the node port.
func snatOnTheWire(ctx context.Context, r *Run, t *topology.Topology, nodePort netip.AddrPort) error {
	n1, _ := t.Node("node1")
	n2, _ := t.Node("node2")
	me, _ := t.Member("ext")
	m2, _ := t.Member("node2")
	ifs, _ := t.Interfaces("ext")
	session, err := capture.Start(filepath.Join(r.Artifacts, "nodeport-snat"),
		capture.Point{Member: "ext", Interface: ifs[0].Name, NsPath: me.NsPath},
		capture.Point{Member: "node2", Interface: internalIface(n2).Name, NsPath: m2.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	for range 16 {
		if err := exchangeAddr(ctx, t, "ext", TCP, nodePort); err != nil {
			return err
		}
	}
	if err := session.Stop(); err != nil {
		return err
	}
	toBackend := session.Packets("node2", internalIface(n2).Name, capture.And(capture.TCPPort(probePort), capture.IPv4Flow(nil, nil, layers.IPProtocolTCP)))
	var serr error
	switch {
	case len(toBackend) == 0:
		serr = errors.New("no connection reached a backend on node2 in 16 tries (Maglev sent all to node1's pod1b?)")
	default:
		for _, p := range toBackend {
			ip4 := p.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			tcp := p.Decode().Layer(layers.LayerTypeTCP).(*layers.TCP)
			if uint16(tcp.DstPort) == probePort && ip4.SrcIP.String() != n1.InternalIP.String() {
				serr = fmt.Errorf("backend-bound packet from %s, want node1's %s (SNAT): %s", ip4.SrcIP, n1.InternalIP, p.Summary())
				break
			}
		}
	}
	r.Check("NodePort SNAT: the remote backend sees node1's IP as the source",
		"node2/"+internalIface(n2).Name+" capture: IPv4 source of packets to the backend port", serr)
	var rerr error
	replies := session.Packets("ext", ifs[0].Name, capture.TCPPort(webNodePort))
	if len(replies) == 0 {
		rerr = errors.New("no packet to or from the node port on ext")
	}
	for _, p := range replies {
		ip4 := p.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		tcp := p.Decode().Layer(layers.LayerTypeTCP).(*layers.TCP)
		if !p.Outgoing && (ip4.SrcIP.String() != nodePort.Addr().String() || uint16(tcp.SrcPort) != nodePort.Port()) {
			rerr = fmt.Errorf("reply from %s:%d, want the node port %s: %s", ip4.SrcIP, tcp.SrcPort, nodePort, p.Summary())
			break
		}
	}
	r.Check("NodePort SNAT: the client sees every reply from "+nodePort.String(),
		"ext/"+ifs[0].Name+" capture: IPv4/TCP source of incoming packets", rerr)
	return nil
}

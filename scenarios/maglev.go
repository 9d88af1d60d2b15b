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

	"podpath/datapath/agent"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
	"podpath/topology"
)

func init() {
	register(&Scenario{
		Name: "maglev-consistency",
		Description: "10,000 UDP flows to a shared external IP enter node1, then node2: Maglev sends each to " +
			"the same backend on both; removing one of three backends moves its flows and at most 1% of the " +
			"others; established TCP connections survive the removal of another backend",
		Labels: []string{"services", "maglev"},
		Run:    runMaglev,
	})
}

const (
	maglevFlows    = 10000
	whoamiPort     = 7070
	firstFlowPort  = 20000
	maglevSvcPort  = 80
	maglevUDPName  = "lb-udp"
	maglevTCPName  = "lb-tcp"
	flowTimeout    = 300 * time.Millisecond
	maglevSvcShare = "maglev-consistency"
)

var lbVIP = netip.MustParseAddr("10.96.100.100")

func maglevService(name, proto string, backends []topology.Pod) agent.Service {
	s := agent.Service{Name: name, Type: "LoadBalancer", ClusterIP: netip.MustParseAddr("10.96.0.20"), Port: maglevSvcPort,
		Protocol: proto, NodePort: 30100, ExternalIPs: []netip.Addr{lbVIP}}
	if proto == "TCP" {
		s.ClusterIP, s.NodePort = netip.MustParseAddr("10.96.0.21"), 30101
	}
	for _, p := range backends {
		s.Backends = append(s.Backends, agent.ServiceBackend{IP: p.IP, Port: whoamiPort})
	}
	return s
}

func runMaglev(ctx context.Context, r *Run) error {
	t, agents, err := r.UpWithAgents(ctx, "l2-services-agent", "services-snat")
	if err != nil {
		return err
	}
	var backends []topology.Pod
	for _, p := range t.Pods() {
		if p.Name != "pod1a" {
			backends = append(backends, p)
		}
	}
	servers, err := whoamiOn(t, backends)
	if err != nil {
		return err
	}
	defer servers.Close()
	for _, proto := range []string{"UDP", "TCP"} {
		name := map[string]string{"UDP": maglevUDPName, "TCP": maglevTCPName}[proto]
		if err := agents.ServiceUpsert(ctx, maglevService(name, proto, backends)); err != nil {
			return err
		}
	}
	n1, _ := t.Node("node1")
	n2, _ := t.Node("node2")

	// Balance of the table node1 holds.
	lb, err := maps.OpenPinnedLB(filepath.Join(t.Dir(), "bpffs", "node1", "maps"), uint32(maglev.DefaultTableSize))
	if err != nil {
		return err
	}
	defer lb.Close()
	svcs, _ := lb.ServiceList()
	var balance error
	lookedAt := "node1's Maglev table of " + maglevUDPName
	for _, s := range svcs {
		if s.Addr == lbVIP && s.Proto == maps.ProtoUDP {
			table, err := lb.MaglevLookup(s.ID)
			if err != nil {
				balance = err
				break
			}
			lo, hi, per := maglev.Balance(table)
			lookedAt = fmt.Sprintf("node1's Maglev table (M=%d): entries per backend %v, max/min %d/%d = %.4f", len(table), per, hi, lo, float64(hi)/float64(max(lo, 1)))
			if hi-lo > 1 {
				balance = fmt.Errorf("max %d - min %d > 1 with equal weights", hi, lo)
			}
		}
	}
	r.Check("Maglev table balance: every backend holds floor or ceil of M/N entries", lookedAt, balance)

	r.Progress("sending %d UDP flows to %s through node1", maglevFlows, lbVIP)
	via1, err := flowsThrough(ctx, t, n1.InternalIP)
	if err != nil {
		return err
	}
	r.Progress("sending the same %d flows through node2", maglevFlows)
	via2, err := flowsThrough(ctx, t, n2.InternalIP)
	if err != nil {
		return err
	}
	same, differ, lost := compareFlows(via1, via2)
	var cerr error
	if differ > 0 || lost > maglevFlows/100 {
		cerr = fmt.Errorf("%d of %d flows landed on another backend through node2 (%d unanswered)", differ, maglevFlows, lost)
	}
	r.Check(fmt.Sprintf("cross-node consistency: %d of %d flows land on the same backend through node1 and node2", same, maglevFlows),
		"the backend name each flow's answer carries, per entry node ("+spread(via1)+")", cerr)

	// Established TCP connections, to backends other than the one removed next.
	removed := backends[len(backends)-1]
	conns, err := holdTCP(ctx, t, n1.InternalIP, removed.Name, 4)
	if err != nil {
		return err
	}
	defer conns.Close()

	r.Progress("removing backend %s from both services", removed.Name)
	for _, proto := range []string{"UDP", "TCP"} {
		name := map[string]string{"UDP": maglevUDPName, "TCP": maglevTCPName}[proto]
		if err := agents.ServiceUpsert(ctx, maglevService(name, proto, backends[:len(backends)-1])); err != nil {
			return err
		}
	}
	r.Check("established TCP connections to the remaining backends survive the removal, on the same backend",
		"replies on 4 connections opened through node1 before the removal", conns.stillSame())

	// Disruption: fresh lookups (conntrack flushed) against the table before.
	if err := lb.CTFlush(); err != nil {
		return err
	}
	after, err := flowsThrough(ctx, t, n1.InternalIP)
	if err != nil {
		return err
	}
	var ofRemoved, others, movedOthers int
	for port, b := range via1 {
		a, ok := after[port]
		if !ok || b == "" {
			continue
		}
		if b == removed.Name {
			ofRemoved++
			continue
		}
		others++
		if a != b {
			movedOthers++
		}
	}
	var derr error
	if others == 0 || float64(movedOthers) > 0.01*float64(others) {
		derr = fmt.Errorf("%d of %d flows of the remaining backends moved (limit 1%%)", movedOthers, others)
	}
	r.Check(fmt.Sprintf("removing %s moves its %d flows and %d of the other %d (%.2f%%)", removed.Name, ofRemoved, movedOthers, others, 100*float64(movedOthers)/float64(max(others, 1))),
		"backends of the same flows through node1 before and after, conntrack flushed", derr)
	return nil
}

// whoamiOn starts, in each pod, TCP and UDP servers on whoamiPort that answer every
// message with the pod's name.
func whoamiOn(t *topology.Topology, pods []topology.Pod) (io.Closer, error) {
	var cs closers
	for _, p := range pods {
		name := p.Name
		err := t.Do(name, func() error {
			ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", whoamiPort))
			if err != nil {
				return err
			}
			pc, err := net.ListenPacket("udp4", fmt.Sprintf(":%d", whoamiPort))
			if err != nil {
				ln.Close()
				return err
			}
			cs = append(cs, ln, pc)
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						buf := make([]byte, 64)
						for {
							if _, err := c.Read(buf); err != nil {
								return
							}
							if _, err := c.Write([]byte(name + "\n")); err != nil {
								return
							}
						}
					}()
				}
			}()
			go func() {
				buf := make([]byte, 64)
				for {
					_, from, err := pc.ReadFrom(buf)
					if err != nil {
						return
					}
					_, _ = pc.WriteTo([]byte(name), from)
				}
			}()
			return nil
		})
		if err != nil {
			cs.Close()
			return nil, fmt.Errorf("whoami server in %s: %w", name, err)
		}
	}
	return cs, nil
}

// flowsThrough routes the VIP from ext via entry and sends one UDP datagram from each
// of maglevFlows source ports; it returns which backend answered each (empty: none).
func flowsThrough(ctx context.Context, t *topology.Topology, entry netip.Addr) (map[int]string, error) {
	if out, err := t.Exec(ctx, "ext", "ip", "route", "replace", lbVIP.String()+"/32", "via", entry.String()); err != nil {
		return nil, fmt.Errorf("route the VIP via %s: %w: %s", entry, err, out)
	}
	got := make(map[int]string, maglevFlows)
	err := t.Do("ext", func() error {
		buf := make([]byte, 64)
		dst := &net.UDPAddr{IP: lbVIP.AsSlice(), Port: maglevSvcPort}
		for i := range maglevFlows {
			if err := ctx.Err(); err != nil {
				return err
			}
			port := firstFlowPort + i
			c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
			if err != nil {
				return err
			}
			_ = c.SetDeadline(time.Now().Add(flowTimeout))
			if _, err := c.WriteTo([]byte("who"), dst); err == nil {
				if n, _, err := c.ReadFrom(buf); err == nil {
					got[port] = string(buf[:n])
				}
			}
			c.Close()
		}
		return nil
	})
	return got, err
}

func compareFlows(a, b map[int]string) (same, differ, lost int) {
	for port := firstFlowPort; port < firstFlowPort+maglevFlows; port++ {
		x, y := a[port], b[port]
		switch {
		case x == "" || y == "":
			lost++
		case x == y:
			same++
		default:
			differ++
		}
	}
	return same, differ, lost
}

func spread(flows map[int]string) string {
	count := map[string]int{}
	for _, b := range flows {
		count[b]++
	}
	var parts []string
	for b, n := range count {
		if b == "" {
			b = "unanswered"
		}
		parts = append(parts, fmt.Sprintf("%s %d", b, n))
	}
	return strings.Join(parts, ", ")
}

// heldConns are TCP connections to the VIP with the backend each first reached.
type heldConns struct {
	conns    []net.Conn
	backends []string
}

// holdTCP opens TCP connections from ext to the VIP through entry until n reach backends
// other than avoid.
func holdTCP(ctx context.Context, t *topology.Topology, entry netip.Addr, avoid string, n int) (*heldConns, error) {
	if out, err := t.Exec(ctx, "ext", "ip", "route", "replace", lbVIP.String()+"/32", "via", entry.String()); err != nil {
		return nil, fmt.Errorf("route the VIP via %s: %w: %s", entry, err, out)
	}
	h := &heldConns{}
	err := t.Do("ext", func() error {
		for try := 0; len(h.conns) < n && try < 64; try++ {
			d := net.Dialer{Timeout: time.Second}
			c, err := d.DialContext(ctx, "tcp4", netip.AddrPortFrom(lbVIP, maglevSvcPort).String())
			if err != nil {
				return err
			}
			b, err := ask(c)
			if err != nil || b == avoid {
				c.Close()
				if err != nil {
					return err
				}
				continue
			}
			h.conns, h.backends = append(h.conns, c), append(h.backends, b)
		}
		if len(h.conns) < n {
			return fmt.Errorf("only %d of %d connections reached a backend other than %s", len(h.conns), n, avoid)
		}
		return nil
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func ask(c net.Conn) (string, error) {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("who\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

func (h *heldConns) stillSame() error {
	var errs []error
	for i, c := range h.conns {
		b, err := ask(c)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("connection %d (to %s): %w", i, h.backends[i], err))
		case b != h.backends[i]:
			errs = append(errs, fmt.Errorf("connection %d answered by %s, was %s", i, b, h.backends[i]))
		}
	}
	return errors.Join(errs...)
}

func (h *heldConns) Close() error {
	for _, c := range h.conns {
		c.Close()
	}
	return nil
}

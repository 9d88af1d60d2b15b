// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"podpath/datapath/trace"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/topology"
)

// bgp-ecmp-failover: the load balancer's nodes behind a router that spreads a service
// address over them by ECMP (each node announces it over BGP), as Katran's and Cilium's
// L4 load balancers are deployed. When one node dies its path is withdrawn and the
// router's hash moves that node's established connections to the others. They survive
// only if the new node sends each to the backend the old one chose, and the backend
// cannot tell the difference: both hold for DSR (the backend sees the client's address
// and port, it answers the client itself) with Maglev (every node computes the same
// table from the same backends and seed); with SNAT the backend's socket is bound to
// the dead node's address and port, so a moved connection meets a socket that does not
// exist; with random selection the new node picks any backend.
func init() {
	scenarios.RegisterStep(scenarios.StepDef[bgpFailoverWith, bgpFailoverExpect]{
		Name: "bgp-ecmp-failover",
		Summary: "TCP connections from a client to a service address several nodes announce (ECMP on the router, " +
			"spread by the L4 hash: the nodes' traces say which node each entered); SIGKILL one node's agent: its path " +
			"is withdrawn and its connections move to the others, where they keep their backend (whoami answers on the " +
			"same connection, the backend pod's socket still established with the client's address) or, with " +
			"expect.moved: break (a negative control: random selection), some of them break",
		Agents:  true,
		With:    bgpFailoverWith{Connections: 32},
		Expect:  bgpFailoverExpect{Moved: "survive"},
		Timeout: 2 * time.Minute,
		Run:     runBGPFailover,
	})
}

type bgpFailoverWith struct {
	Router      scenarios.MemberRef  `json:"router" required:"true" doc:"the BGP router that spreads the service address over the nodes"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP service with whoami servers and an external IP the nodes announce (serviceAdvertisements)"`
	Nodes       []scenarios.NodeRef  `json:"nodes" required:"true" doc:"the nodes that announce it"`
	Kill        scenarios.NodeRef    `json:"kill" required:"true" doc:"the node whose agent is SIGKILLed"`
	Client      scenarios.MemberRef  `json:"client" required:"true" doc:"the client outside the cluster, on one of the router's segments"`
	Connections int                  `json:"connections" range:"4..256" doc:"TCP connections held across the failover"`
}

func (w *bgpFailoverWith) Validate(e strictyaml.FieldErrors) {
	checkWhoami(e, "service", w.Service, "TCP")
	if len(w.Nodes) < 2 {
		e.Add("nodes", "want at least two nodes: ECMP needs two paths")
	}
	if !slices.Contains(w.Nodes, w.Kill) {
		e.Add("kill", "%q is not one of nodes %v", w.Kill, w.Nodes)
	}
}

type bgpFailoverExpect struct {
	Moved string `json:"moved" oneOf:"survive,break" doc:"survive: every connection keeps its backend; break (negative control): at least one connection that moved breaks or lands on another backend, none that stayed"`
}

// heldConn is one connection of the client: its source port, the backend that answered
// and the node it entered through.
type heldConn struct {
	c       net.Conn
	port    uint16
	backend string
	entry   string
}

func runBGPFailover(ctx context.Context, s *scenarios.Stage, w bgpFailoverWith, e bgpFailoverExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	spec := s.T.Spec()
	router, client := string(w.Router), string(w.Client)
	dst := vip(s.Services[string(w.Service)])
	prefix := netip.PrefixFrom(dst.Addr(), 32)
	addrOf := map[string]netip.Addr{}
	for _, p := range spec.BGPNeighbors(router) {
		addrOf[p.Name] = p.Address
	}
	var want, rest []netip.Addr
	var nodes []string
	for _, n := range w.Nodes {
		a, ok := addrOf[string(n)]
		if !ok {
			return fmt.Errorf("bgp-ecmp-failover: %s is no BGP neighbour of %s", n, router)
		}
		want = append(want, a)
		if n != w.Kill {
			rest = append(rest, a)
		}
		nodes = append(nodes, string(n))
	}
	sortAddrs := func(a []netip.Addr) { slices.SortFunc(a, func(x, y netip.Addr) int { return x.Compare(y) }) }
	sortAddrs(want)
	sortAddrs(rest)
	waitHops := func(limit time.Duration, hops []netip.Addr) (time.Duration, error) {
		start := time.Now()
		var took time.Duration
		err := waitFor(ctx, limit, func() error {
			got, out, err := kernelNextHops(ctx, s.T, router, prefix)
			if err != nil {
				return err
			}
			if !slices.Equal(got, hops) {
				return fmt.Errorf("next hops %v, want %v: %q", got, hops, strings.TrimSpace(out))
			}
			took = time.Since(start)
			return nil
		})
		return took, err
	}
	_, err = waitHops(bgpConvergeTimeout, want)
	s.Check(fmt.Sprintf("%s: bgp: %s's kernel route to %s is ECMP over %v", s.Label(""), router, prefix, w.Nodes),
		router+": ip route show exact "+prefix.String(), err)
	if err != nil {
		return nil
	}
	if out, err := s.T.Exec(ctx, router, "sysctl", "-n", "net.ipv4.fib_multipath_hash_policy"); err != nil || strings.TrimSpace(string(out)) != "1" {
		return fmt.Errorf("bgp-ecmp-failover: %s's ECMP hash policy is %q, want 1 (L4): %v", router, strings.TrimSpace(string(out)), err)
	}
	gw, err := gatewayFor(spec, router, client)
	if err != nil {
		return err
	}
	if err := routeVia(ctx, s.T, client, dst.Addr(), gw); err != nil {
		return err
	}
	clientAddr, err := clientAddress(s.T, client)
	if err != nil {
		return err
	}
	traces, err := s.OpenTraces(s.T, nodes...)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}

	// The connections, each asked once: the backend it reached.
	var conns []*heldConn
	defer func() {
		for _, c := range conns {
			c.c.Close()
		}
	}()
	err = s.T.Do(client, func() error {
		for range w.Connections {
			d := net.Dialer{Timeout: time.Second}
			c, err := d.DialContext(ctx, "tcp4", dst.String())
			if err != nil {
				return err
			}
			h := &heldConn{c: c, port: uint16(c.LocalAddr().(*net.TCPAddr).Port)}
			conns = append(conns, h)
			if h.backend, err = ask(c); err != nil {
				return fmt.Errorf("connection from port %d: %w", h.port, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("bgp-ecmp-failover: %d connections to %s from %s: %w", w.Connections, dst, client, err)
	}

	// Which node each entered: the node whose load balancer translated client:port ->
	// VIP:port (a DNAT record of the tuple as received; the backend's node records the
	// same tuple only as a learned DSR option, or not at all).
	names := traces.Names()
	entries := func() (map[uint16][]string, error) {
		if err := traces.Collect(); err != nil {
			return nil, err
		}
		out := map[uint16][]string{}
		for _, n := range nodes {
			for _, r := range traces.Find(n, func(r trace.Record) bool {
				a := names.LBAction(r.LB.Action)
				return (a == "TRACE_LB_DNAT" || a == "TRACE_LB_DNAT_DSR" || a == "TRACE_LB_DNAT_SNAT") &&
					r.LB.OrigSrc.Addr() == clientAddr && r.LB.OrigDst == dst
			}) {
				port := r.LB.OrigSrc.Port()
				if !slices.Contains(out[port], n) {
					out[port] = append(out[port], n)
				}
			}
		}
		return out, nil
	}
	before, err := entries()
	if err != nil {
		return err
	}
	perNode := map[string]int{}
	var splitErr []error
	for _, c := range conns {
		if len(before[c.port]) != 1 {
			splitErr = append(splitErr, fmt.Errorf("connection from port %d entered %v", c.port, before[c.port]))
			continue
		}
		c.entry = before[c.port][0]
		perNode[c.entry]++
	}
	for _, n := range nodes {
		if perNode[n] == 0 {
			splitErr = append(splitErr, fmt.Errorf("no connection entered %s", n))
		}
	}
	if len(splitErr) > 0 {
		for _, n := range nodes {
			splitErr = append(splitErr, fmt.Errorf("%s's records:\n%s", n, traces.Dump(n)))
		}
	}
	s.Check(fmt.Sprintf("%s: bgp: %s's ECMP spreads %d connections to %s over the nodes by their ports: %s", s.Label(""), router, len(conns), dst, countsOf(nodes, perNode)),
		"the nodes' trace records: load balancer DNAT of "+clientAddr.String()+":PORT->"+dst.String()+" (each connection entered exactly one node)", errors.Join(splitErr...))
	if len(splitErr) > 0 {
		return nil
	}
	s.Check(fmt.Sprintf("%s: bgp: every backend pod holds its connections established with the client's own address and port (no SNAT: DSR)", s.Label("")),
		"ss -tn state established in the backend pods", backendsSee(ctx, s.T, conns, clientAddr))

	// The failover.
	if err := traces.Reset(); err != nil {
		return err
	}
	if err := agents.Stop(string(w.Kill), true); err != nil {
		return err
	}
	took, err := waitHops(withdrawLimit(spec, true, bgpWithdrawExpect{})+5*time.Second, rest)
	s.Check(fmt.Sprintf("%s: bgp: SIGKILL of %s's agent withdraws its path: %s's route to %s keeps %v (%.2fs)", s.Label(""), w.Kill, router, prefix, rest, took.Seconds()),
		router+": ip route show exact "+prefix.String()+", polled every 50ms", err)
	if err != nil {
		return nil
	}
	type outcome struct {
		backend string
		err     error
	}
	results := make([]outcome, len(conns))
	for i, c := range conns {
		results[i].backend, results[i].err = ask(c.c)
	}
	after, err := entries()
	if err != nil {
		return err
	}
	var moved, movedBroken, stayedBroken []string
	var moveErr []error
	for i, c := range conns {
		now := after[c.port]
		broken := results[i].err != nil || results[i].backend != c.backend
		desc := fmt.Sprintf("port %d (%s, %s -> %v): ", c.port, c.backend, c.entry, now)
		if results[i].err != nil {
			desc += results[i].err.Error()
		} else {
			desc += "answered by " + results[i].backend
		}
		if c.entry != string(w.Kill) {
			if broken {
				stayedBroken = append(stayedBroken, desc)
			}
			continue
		}
		moved = append(moved, desc)
		if broken {
			movedBroken = append(movedBroken, desc)
		}
		if len(now) != 1 || now[0] == string(w.Kill) {
			moveErr = append(moveErr, fmt.Errorf("connection from %s entered %v after the withdrawal, want one surviving node", desc, now))
		}
	}
	s.Check(fmt.Sprintf("%s: bgp: the %d connections that entered %s enter the surviving nodes after the withdrawal", s.Label(""), len(moved), w.Kill),
		"the nodes' trace records of the connections' next exchange", errors.Join(moveErr...))
	var verdict error
	switch e.Moved {
	case "survive":
		if n := len(movedBroken) + len(stayedBroken); n > 0 {
			verdict = fmt.Errorf("%d connections broke or changed backend:\n  %s", n, strings.Join(append(movedBroken, stayedBroken...), "\n  "))
		} else {
			verdict = backendsSee(ctx, s.T, conns, clientAddr)
		}
		s.Check(fmt.Sprintf("%s: bgp: all %d connections keep their backend through the failover (%d moved from %s): the same pod answers on the same connection and still holds it with the client's address", s.Label(""), len(conns), len(moved), w.Kill),
			"whoami answers on each connection after the withdrawal; ss -tn in the backend pods", verdict)
	case "break":
		if len(movedBroken) == 0 {
			verdict = fmt.Errorf("all %d moved connections kept their backend (a negative control expects some to break):\n  %s", len(moved), strings.Join(moved, "\n  "))
		}
		if len(stayedBroken) > 0 {
			verdict = errors.Join(verdict, fmt.Errorf("connections that did not move broke:\n  %s", strings.Join(stayedBroken, "\n  ")))
		}
		s.Check(fmt.Sprintf("%s: bgp: negative control: %d of the %d connections moved from %s break or change backend (the new node chose another backend), none that stayed", s.Label(""), len(movedBroken), len(moved), w.Kill),
			"whoami answers on each connection after the withdrawal", verdict)
		if len(movedBroken) > 0 {
			s.Progress("broken as expected:\n  %s", strings.Join(movedBroken, "\n  "))
		}
	}
	return nil
}

func countsOf(nodes []string, per map[string]int) string {
	var parts []string
	for _, n := range nodes {
		parts = append(parts, fmt.Sprintf("%s %d", n, per[n]))
	}
	return strings.Join(parts, ", ")
}

// clientAddress is the address of client's first interface.
func clientAddress(t topology.Cluster, client string) (netip.Addr, error) {
	for _, c := range t.Spec().Clients {
		if c.Name == client && len(c.Interfaces) > 0 {
			return netip.ParseAddr(c.Interfaces[0].Address)
		}
	}
	return netip.Addr{}, fmt.Errorf("client %s has no interface address", client)
}

// backendsSee checks in each backend pod (by the name its whoami answered) that the
// kernel holds an established TCP socket whose peer is the client's address and the
// connection's source port: the backend sees the client itself, not a node's SNAT.
func backendsSee(ctx context.Context, t topology.Cluster, conns []*heldConn, client netip.Addr) error {
	byPod := map[string][]*heldConn{}
	for _, c := range conns {
		byPod[c.backend] = append(byPod[c.backend], c)
	}
	var errs []error
	for pod, cs := range byPod {
		out, err := t.Exec(ctx, pod, "ss", "-Htn", "state", "established")
		if err != nil {
			errs = append(errs, fmt.Errorf("ss in %s: %w: %s", pod, err, out))
			continue
		}
		peers := map[netip.AddrPort]bool{}
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) < 4 {
				continue
			}
			if ap, err := netip.ParseAddrPort(f[3]); err == nil {
				peers[ap] = true
			}
		}
		for _, c := range cs {
			if !peers[netip.AddrPortFrom(client, c.port)] {
				errs = append(errs, fmt.Errorf("%s has no established socket with peer %s:%d:\n%s", pod, client, c.port, out))
			}
		}
	}
	return errors.Join(errs...)
}

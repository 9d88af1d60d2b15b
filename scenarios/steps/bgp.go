// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"podpath/datapath/agent"
	"podpath/internal/nsutil"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

// The BGP control plane's step kinds. The witnesses are the routers' own daemon (BIRD's
// CLI, birdc, on its control socket, or FRR's vtysh: routerView), the kernels' routing tables (`ip route`) and the
// kernels' TCP sockets (`ss`); the agents' own reports are printed, never trusted alone.
// Expected values come from the topology: who peers with whom (topology.BGPNeighbors),
// and the routes BGP must converge to (the static plan of the same topology).
func init() {
	scenarios.RegisterStep(scenarios.StepDef[bgpPeeringWith, none]{
		Name: "bgp-peering",
		Summary: "give nodes' agents a BGP peering policy (CiliumBGPPeeringPolicy fields) built from the topology: " +
			"their ASN, the BGP routers on their segments (and the other nodes with bgp.nodeMesh), its timers",
		Agents: true,
		With:   bgpPeeringWith{ExportPodCIDR: true},
		Run:    runBGPPeering,
	})
	scenarios.RegisterStep(scenarios.StepDef[none, bgpSessionsExpect]{
		Name: "bgp-sessions",
		Summary: "every BGP session of the topology is Established: the routers' BIRD (birdc show protocols) and " +
			"node-to-node TCP sessions on port 179 (ss); their number is expect.sessions and the topology's",
		Agents: true,
		Run:    runBGPSessions,
	})
	scenarios.RegisterStep(scenarios.StepDef[bgpRoutesWith, none]{
		Name: "bgp-routes",
		Summary: "a BGP router's table (birdc show route) and kernel hold every node's PodCIDR via that node; every " +
			"node's kernel holds the other PodCIDRs as proto bgp routes via the planned next hop, none static",
		Agents: true,
		Run:    runBGPRoutes,
	})
	scenarios.RegisterStep(scenarios.StepDef[bgpWithdrawWith, bgpWithdrawExpect]{
		Name: "bgp-withdraw",
		Summary: "stop (or SIGKILL) a node's agent: the router withdraws its PodCIDR within expect.maxSeconds " +
			"(measured and printed), the other nodes' kernels drop it; the agent restarted, the route comes back",
		Agents:  true,
		With:    bgpWithdrawWith{Restart: true},
		Timeout: 2 * time.Minute,
		Run:     runBGPWithdraw,
	})
	scenarios.RegisterStep(scenarios.StepDef[bgpECMPWith, bgpWithdrawExpect]{
		Name: "bgp-ecmp",
		Summary: "a service address announced by several nodes is one ECMP route on the router (birdc show route all, " +
			"kernel nexthops); killing one node's agent withdraws its path within expect.maxSeconds",
		Agents:  true,
		With:    bgpECMPWith{Restart: true},
		Timeout: 2 * time.Minute,
		Run:     runBGPECMP,
	})
}

// bgpConvergeTimeout bounds every wait for sessions and routes.
const bgpConvergeTimeout = 45 * time.Second

type bgpPeeringWith struct {
	Nodes                 []scenarios.NodeRef `json:"nodes" doc:"whose agents (default: every node with a bgp block)"`
	ExportPodCIDR         bool                `json:"exportPodCIDR" doc:"announce the node's PodCIDR"`
	ServiceAdvertisements []string            `json:"serviceAdvertisements" doc:"LoadBalancerIP and/or ExternalIP: announce the services' addresses"`
}

func (w *bgpPeeringWith) Validate(e strictyaml.FieldErrors) {
	for i, s := range w.ServiceAdvertisements {
		if s != agent.BGPAdvertiseLoadBalancerIP && s != agent.BGPAdvertiseExternalIP {
			e.Add(fmt.Sprintf("serviceAdvertisements[%d]", i), "%q is not one of %s, %s", s, agent.BGPAdvertiseLoadBalancerIP, agent.BGPAdvertiseExternalIP)
		}
	}
}

// bgpNodes are the nodes with a bgp block, or the given ones.
func bgpNodes(spec *topology.Spec, given []scenarios.NodeRef) []topology.NodeSpec {
	var out []topology.NodeSpec
	for _, n := range spec.Nodes {
		if n.BGP != nil && (len(given) == 0 || slices.Contains(given, scenarios.NodeRef(n.Name))) {
			out = append(out, n)
		}
	}
	return out
}

// bgpPolicy is the peering policy of a node, from the topology.
func bgpPolicy(spec *topology.Spec, n topology.NodeSpec, w bgpPeeringWith) agent.BGPPeeringPolicy {
	vr := agent.BGPVirtualRouter{LocalASN: n.BGP.ASN, ExportPodCIDR: w.ExportPodCIDR, ServiceAdvertisements: w.ServiceAdvertisements}
	for _, p := range spec.BGPNeighbors(n.Name) {
		vr.Neighbors = append(vr.Neighbors, agent.BGPNeighbor{
			PeerAddress: p.Address.String() + "/32", PeerASN: p.ASN,
			HoldTimeSeconds: uint64(spec.BGP.HoldTime), KeepAliveTimeSeconds: uint64(spec.BGP.KeepaliveTime),
			ConnectRetryTimeSeconds: 1, Families: []agent.BGPFamily{{Afi: "ipv4", Safi: "unicast"}},
		})
	}
	return agent.BGPPeeringPolicy{VirtualRouters: []agent.BGPVirtualRouter{vr}}
}

func runBGPPeering(ctx context.Context, s *scenarios.Stage, w bgpPeeringWith, _ none) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	spec := s.T.Spec()
	nodes := bgpNodes(spec, w.Nodes)
	if len(nodes) == 0 {
		return fmt.Errorf("bgp-peering: no node of topology %s has a bgp block", spec.Name)
	}
	for _, n := range nodes {
		p := bgpPolicy(spec, n, w)
		var peers []string
		for _, nb := range p.VirtualRouters[0].Neighbors {
			peers = append(peers, fmt.Sprintf("%s AS %d", nb.PeerAddress, nb.PeerASN))
		}
		adv := "PodCIDR"
		if !w.ExportPodCIDR {
			adv = "no PodCIDR"
		}
		if len(w.ServiceAdvertisements) > 0 {
			adv += ", " + strings.Join(w.ServiceAdvertisements, ", ")
		}
		s.Check(fmt.Sprintf("%s: bgp: %s's agent takes the peering policy (AS %d, neighbours %s; announces %s)", s.Label(""), n.Name, n.BGP.ASN, strings.Join(peers, ", "), adv),
			"PUT /v1/bgp/policy on "+n.Name+"'s agent", agents.Client(n.Name).BGPPolicySet(ctx, p))
	}
	return nil
}

// birdc runs BIRD's own CLI on router's control socket.
func birdc(ctx context.Context, t topology.Cluster, router string, args ...string) (string, error) {
	argv := append([]string{"birdc", "-s", topology.BIRDSocket(t.Dir(), router)}, args...)
	out, err := t.Exec(ctx, router, argv...)
	return string(out), err
}

// birdProtocol is one line of `birdc show protocols`.
type birdProtocol struct{ name, proto, state, info string }

func parseBIRDProtocols(out string) map[string]birdProtocol {
	m := map[string]birdProtocol{}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 5 || f[1] != "BGP" {
			continue
		}
		m[f[0]] = birdProtocol{name: f[0], proto: f[1], state: f[3], info: strings.Join(f[5:], " ")}
	}
	return m
}

// birdRoute is one path of `birdc show route`: the prefix, the protocol it came from,
// its gateway.
type birdRoute struct {
	prefix netip.Prefix
	from   string
	via    netip.Addr
}

func parseBIRDRoutes(out string) []birdRoute {
	var (
		routes []birdRoute
		cur    netip.Prefix
		from   string
	)
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if p, err := netip.ParsePrefix(f[0]); err == nil && !strings.HasPrefix(l, " ") && !strings.HasPrefix(l, "\t") {
			cur = p
		}
		if i := strings.Index(l, "["); i >= 0 && strings.Contains(l, "unicast") {
			from = strings.Fields(l[i+1:])[0]
		}
		if f[0] == "via" && len(f) >= 2 && cur.IsValid() {
			if a, err := netip.ParseAddr(f[1]); err == nil {
				routes = append(routes, birdRoute{prefix: cur, from: from, via: a})
			}
		}
	}
	return routes
}

// waitFor polls cond every 50ms until it returns nil or the deadline passes; it returns
// cond's last error.
func waitFor(ctx context.Context, limit time.Duration, cond func() error) error {
	deadline := time.Now().Add(limit)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", limit, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

type bgpSessionsExpect struct {
	Sessions int `json:"sessions" required:"true" range:"1.." doc:"BGP sessions of the whole topology (each counted once), as the topology implies"`
}

// topologySessions counts the sessions the topology implies: every router's
// neighbours, plus node-to-node pairs once.
func topologySessions(spec *topology.Spec) (routers, nodeNode int) {
	for _, r := range spec.Routers {
		routers += len(spec.BGPNeighbors(r.Name))
	}
	for _, n := range spec.Nodes {
		for _, p := range spec.BGPNeighbors(n.Name) {
			if p.Kind == topology.KindNode {
				nodeNode++
			}
		}
	}
	return routers, nodeNode / 2
}

// establishedNodePeers lists the node addresses node has an established TCP
// connection with on port 179, read from the kernel (`ss`).
func establishedNodePeers(ctx context.Context, t topology.Cluster, node string, nodeAddrs map[netip.Addr]string) ([]string, string, error) {
	out, err := t.Exec(ctx, node, "ss", "-Htn", "state", "established", "( sport = :179 or dport = :179 )")
	if err != nil {
		return nil, string(out), err
	}
	var peers []string
	for _, l := range strings.Split(string(out), "\n") {
		f := strings.Fields(l)
		if len(f) < 4 {
			continue
		}
		ap, err := netip.ParseAddrPort(f[3])
		if err != nil {
			continue
		}
		if name, ok := nodeAddrs[ap.Addr()]; ok {
			peers = append(peers, name)
		}
	}
	slices.Sort(peers)
	return slices.Compact(peers), string(out), nil
}

func runBGPSessions(ctx context.Context, s *scenarios.Stage, _ none, e bgpSessionsExpect) error {
	spec := s.T.Spec()
	wantRouters, wantNodeNode := topologySessions(spec)
	total := 0
	for _, r := range spec.Routers {
		if r.BGP == nil {
			continue
		}
		neigh := spec.BGPNeighbors(r.Name)
		v := viewRouter(s.T, r.Name)
		var states map[netip.Addr]string
		start := time.Now()
		err := waitFor(ctx, bgpConvergeTimeout, func() error {
			var err error
			var out string
			if states, out, err = v.sessions(ctx); err != nil {
				return err
			}
			var bad []string
			for _, p := range neigh {
				if st := states[p.Address]; st != "Established" {
					bad = append(bad, fmt.Sprintf("%s (%s): %q", p.Name, p.Address, st))
				}
			}
			if len(bad) > 0 {
				return fmt.Errorf("not Established: %s\n%s", strings.Join(bad, ", "), out)
			}
			return nil
		})
		n := 0
		for _, st := range states {
			if st == "Established" {
				n++
			}
		}
		total += n
		s.Check(fmt.Sprintf("%s: bgp: %s's %s has its %d sessions Established (one per BGP node on its segments; %.1fs)", s.Label(""), r.Name, daemonName(r.BGP.Daemon), len(neigh), time.Since(start).Seconds()),
			v.cli("show protocols"), err)
	}
	nodeAddrs := map[netip.Addr]string{}
	for _, n := range s.T.Nodes() {
		for _, i := range n.Interfaces {
			nodeAddrs[i.Address.Addr()] = n.Name
		}
	}
	pairs := map[string]bool{}
	for _, n := range bgpNodes(spec, nil) {
		var want []string
		for _, p := range spec.BGPNeighbors(n.Name) {
			if p.Kind == topology.KindNode {
				want = append(want, p.Name)
			}
		}
		slices.Sort(want)
		var got []string
		var out string
		err := waitFor(ctx, bgpConvergeTimeout, func() error {
			var err error
			if got, out, err = establishedNodePeers(ctx, s.T, n.Name, nodeAddrs); err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("established BGP connections to nodes %v, want %v:\n%s", got, want, out)
			}
			return nil
		})
		for _, g := range got {
			pairs[strings.Join(slices.Sorted(slices.Values([]string{n.Name, g})), "-")] = true
		}
		if len(want) > 0 || len(got) > 0 {
			s.Check(fmt.Sprintf("%s: bgp: %s has established BGP connections with exactly the nodes %v (node-to-node mesh)", s.Label(""), n.Name, want),
				n.Name+": ss -tn state established port 179", err)
		}
		if peers, err := agentsBGPPeers(ctx, s, n.Name); err == nil {
			s.Progress("%s's agent reports: %s", n.Name, peers)
		}
	}
	total += len(pairs)
	var err error
	if total != e.Sessions || total != wantRouters+wantNodeNode {
		err = fmt.Errorf("counted %d sessions (routers' BIRD Established + node pairs on port 179: %v); expect.sessions %d; the topology implies %d router sessions + %d node-to-node = %d",
			total, slices.Sorted(func(yield func(string) bool) {
				for k := range pairs {
					if !yield(k) {
						return
					}
				}
			}), e.Sessions, wantRouters, wantNodeNode, wantRouters+wantNodeNode)
	}
	perNode := 0
	if n := bgpNodes(spec, nil); len(n) > 0 {
		perNode = len(spec.BGPNeighbors(n[0].Name))
	}
	s.Check(fmt.Sprintf("%s: bgp: %d BGP sessions in the topology (%d at the routers, %d node-to-node; %d per node), as expected", s.Label(""), e.Sessions, wantRouters, wantNodeNode, perNode),
		"the sessions counted above", err)
	return nil
}

// agentsBGPPeers renders what node's agent says of its sessions (information only).
func agentsBGPPeers(ctx context.Context, s *scenarios.Stage, node string) (string, error) {
	agents, err := s.Agents()
	if err != nil {
		return "", err
	}
	peers, err := agents.Client(node).BGPPeers(ctx)
	if err != nil {
		return "", err
	}
	var parts []string
	for _, p := range peers {
		parts = append(parts, fmt.Sprintf("%s AS %d %s (rx %d, tx %d)", p.Peer, p.PeerASN, p.State, p.Received, p.Advertised))
	}
	return strings.Join(parts, "; "), nil
}

type bgpRoutesWith struct {
	Router scenarios.MemberRef `json:"router" required:"true" doc:"the BGP router whose table is read"`
}

// expectedPodRoutes is what BGP must converge to: the static plan of the same topology
// (every PodCIDR via its node, across routers).
func expectedPodRoutes(spec *topology.Spec) (topology.Plan, error) {
	c := spec.WithoutBGP()
	c.PodRoutes = topology.PodRoutesAll
	return topology.PlanRoutes(c)
}

func runBGPRoutes(ctx context.Context, s *scenarios.Stage, w bgpRoutesWith, _ none) error {
	spec := s.T.Spec()
	router := string(w.Router)
	neigh := spec.BGPNeighbors(router)
	if len(neigh) == 0 {
		return fmt.Errorf("bgp-routes: %s is not a BGP router with neighbours", router)
	}
	v := viewRouter(s.T, router)
	daemon := daemonName(spec.RouterBGP(router).Daemon)
	for _, p := range neigh {
		n, err := s.T.Node(p.Name)
		if err != nil {
			return err
		}
		err = waitFor(ctx, bgpConvergeTimeout, func() error {
			paths, out, err := v.paths(ctx, n.PodCIDR)
			if err != nil {
				return err
			}
			if slices.Contains(paths, routerPath{via: p.Address, peer: p.Address}) {
				return nil
			}
			return fmt.Errorf("no path %s via %s from peer %s:\n%s", n.PodCIDR, p.Address, p.Address, out)
		})
		s.Check(fmt.Sprintf("%s: bgp: %s's %s table holds %s's PodCIDR %s via %s, learned from its session", s.Label(""), router, daemon, p.Name, n.PodCIDR, p.Address),
			v.cli("show route for "+n.PodCIDR.String()), err)
		out2, err := s.T.Exec(ctx, router, "ip", "route", "show", "exact", n.PodCIDR.String())
		if err == nil && (!strings.Contains(string(out2), "via "+p.Address.String()+" ") || !strings.Contains(string(out2), "proto "+v.kernelProto())) {
			err = fmt.Errorf("want %s via %s proto %s, have: %q", n.PodCIDR, p.Address, v.kernelProto(), strings.TrimSpace(string(out2)))
		}
		s.Check(fmt.Sprintf("%s: bgp: %s's kernel routes %s via %s (proto %s: installed by %s)", s.Label(""), router, n.PodCIDR, p.Address, v.kernelProto(), daemon),
			router+": ip route show exact "+n.PodCIDR.String(), err)
	}
	plan, err := expectedPodRoutes(spec)
	if err != nil {
		return err
	}
	for _, n := range bgpNodes(spec, nil) {
		for _, o := range s.T.Nodes() {
			if o.Name == n.Name {
				continue
			}
			var via netip.Addr
			for _, r := range plan[n.Name] {
				if r.Dst == o.PodCIDR {
					via = r.NextHops[0].Via
				}
			}
			var out []byte
			err := waitFor(ctx, bgpConvergeTimeout, func() error {
				var err error
				if out, err = s.T.Exec(ctx, n.Name, "ip", "route", "show", "exact", o.PodCIDR.String()); err != nil {
					return err
				}
				lines := strings.Split(strings.TrimSpace(string(out)), "\n")
				if len(lines) != 1 || !strings.Contains(lines[0], "via "+via.String()+" ") || !strings.Contains(lines[0], "proto bgp") {
					return fmt.Errorf("want exactly one route %s via %s proto bgp (none static), have: %q", o.PodCIDR, via, strings.TrimSpace(string(out)))
				}
				return nil
			})
			s.Check(fmt.Sprintf("%s: bgp: %s's kernel routes %s's PodCIDR %s via %s, learned by BGP (proto bgp), no static route", s.Label(""), n.Name, o.Name, o.PodCIDR, via),
				n.Name+": ip route show exact "+o.PodCIDR.String(), err)
		}
	}
	return nil
}

type bgpWithdrawWith struct {
	Node    scenarios.NodeRef   `json:"node" required:"true" doc:"whose agent stops"`
	Router  scenarios.MemberRef `json:"router" required:"true" doc:"the BGP router whose table is watched"`
	Kill    bool                `json:"kill" doc:"SIGKILL (a crash: the kernel closes the agent's TCP sessions) instead of SIGTERM (the agent sends a Cease)"`
	Freeze  bool                `json:"freeze" doc:"SIGSTOP (a hung agent or node: its sessions stay open and silent, only the peers' hold timers notice); the agent is killed afterwards"`
	Restart bool                `json:"restart" doc:"start the agent again and wait for its route to come back"`
}

type bgpWithdrawExpect struct {
	MaxSeconds float64 `json:"maxSeconds" range:"0.." doc:"the longest the withdrawal may take (default: the topology's hold time + 1s when killed, 1s on SIGTERM)"`
}

func withdrawLimit(spec *topology.Spec, kill bool, e bgpWithdrawExpect) time.Duration {
	if e.MaxSeconds > 0 {
		return time.Duration(e.MaxSeconds * float64(time.Second))
	}
	if kill {
		return time.Duration(spec.BGP.HoldTime+1) * time.Second
	}
	return time.Second
}

func stopHow(kill, freeze bool) string {
	switch {
	case freeze:
		return "frozen (SIGSTOP)"
	case kill:
		return "SIGKILLed"
	}
	return "stopped (SIGTERM)"
}

// freezeAgent SIGSTOPs the podpath-agent process inside node's namespace.
func freezeAgent(t topology.Cluster, node string) error {
	m, err := t.Member(node)
	if err != nil {
		return err
	}
	pids, err := nsutil.PIDsIn(m.NsPath)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		if strings.TrimSpace(string(comm)) == "podpath-agent" {
			return syscall.Kill(pid, syscall.SIGSTOP)
		}
	}
	return fmt.Errorf("no podpath-agent process in %s (pids %v)", m.Netns, pids)
}

func runBGPWithdraw(ctx context.Context, s *scenarios.Stage, w bgpWithdrawWith, e bgpWithdrawExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	spec := s.T.Spec()
	node, err := s.T.Node(string(w.Node))
	if err != nil {
		return err
	}
	router := string(w.Router)
	limit := withdrawLimit(spec, w.Kill || w.Freeze, e)
	v := viewRouter(s.T, router)
	present := func() (bool, string, error) {
		paths, out, err := v.paths(ctx, node.PodCIDR)
		return len(paths) > 0, out, err
	}
	if ok, out, err := present(); err != nil || !ok {
		return fmt.Errorf("bgp-withdraw: %s's PodCIDR %s is not in %s's table before the agent stops: %v\n%s", node.Name, node.PodCIDR, router, err, out)
	}
	start := time.Now()
	if w.Freeze {
		err = freezeAgent(s.T, node.Name)
	} else {
		err = agents.Stop(node.Name, w.Kill)
	}
	if err != nil {
		return err
	}
	var took time.Duration
	var last string
	err = waitFor(ctx, limit+5*time.Second, func() error {
		ok, out, err := present()
		last = out
		if err != nil {
			return err
		}
		if ok {
			return fmt.Errorf("still there:\n%s", out)
		}
		took = time.Since(start)
		return nil
	})
	if err == nil && took > limit {
		err = fmt.Errorf("withdrawn after %.2fs, more than %.2fs:\n%s", took.Seconds(), limit.Seconds(), last)
	}
	s.Check(fmt.Sprintf("%s: bgp: %s withdraws %s's PodCIDR %s %.2fs after its agent was %s (hold time %ds; limit %.1fs)",
		s.Label(""), router, node.Name, node.PodCIDR, took.Seconds(), stopHow(w.Kill, w.Freeze), spec.BGP.HoldTime, limit.Seconds()),
		v.cli("show route for "+node.PodCIDR.String())+", polled every 50ms", err)
	if !w.Kill && !w.Freeze {
		// A stopping agent ends its session with a NOTIFICATION (Cease); a dead one's
		// session just closes. BIRD's protocol line says which it got.
		var peer netip.Addr
		for _, p := range spec.BGPNeighbors(router) {
			if p.Name == node.Name {
				peer = p.Address
			}
		}
		ok, out, err := v.closedByNotification(ctx, peer)
		if err == nil && !ok {
			err = fmt.Errorf("want the session closed by a received notification, the daemon says:\n%s", out)
		}
		s.Check(fmt.Sprintf("%s: bgp: %s's agent ends its session with a Cease notification on SIGTERM (the router's daemon says it received one)", s.Label(""), node.Name),
			v.cli("show protocols"), err)
	}
	for _, o := range bgpNodes(spec, nil) {
		if o.Name == node.Name {
			continue
		}
		var out []byte
		err := waitFor(ctx, 3*time.Second, func() error {
			var err error
			if out, err = s.T.Exec(ctx, o.Name, "ip", "route", "show", "exact", node.PodCIDR.String()); err != nil {
				return err
			}
			if strings.TrimSpace(string(out)) != "" {
				return fmt.Errorf("still routed: %s", out)
			}
			return nil
		})
		s.Check(fmt.Sprintf("%s: bgp: %s's kernel drops the route to %s's PodCIDR %s (its agent learned the withdrawal)", s.Label(""), o.Name, node.Name, node.PodCIDR),
			o.Name+": ip route show exact "+node.PodCIDR.String(), err)
	}
	if w.Freeze {
		if err := agents.Stop(node.Name, true); err != nil { // SIGKILL ends a stopped process
			return err
		}
	}
	if !w.Restart {
		return nil
	}
	start = time.Now()
	if err := agents.Start(ctx, node.Name); err != nil {
		return err
	}
	err = waitFor(ctx, bgpConvergeTimeout, func() error {
		ok, out, err := present()
		if err == nil && !ok {
			err = fmt.Errorf("not announced again:\n%s", out)
		}
		return err
	})
	s.Check(fmt.Sprintf("%s: bgp: %s's restarted agent announces its PodCIDR again (%.2fs after the start)", s.Label(""), node.Name, time.Since(start).Seconds()),
		v.cli("show route for "+node.PodCIDR.String()), err)
	return nil
}

type bgpECMPWith struct {
	Router  scenarios.MemberRef `json:"router" required:"true" doc:"the BGP router whose table is read"`
	Address string              `json:"address" required:"true" doc:"the service address (a LoadBalancer or external IP) the nodes announce"`
	Nodes   []scenarios.NodeRef `json:"nodes" required:"true" doc:"the nodes that announce it (their policy's serviceAdvertisements)"`
	Kill    scenarios.NodeRef   `json:"kill" required:"true" doc:"the node whose agent is SIGKILLed"`
	Restart bool                `json:"restart" doc:"start the killed agent again and wait for its path to come back"`
	Client  scenarios.MemberRef `json:"client" doc:"a client on one of the router's segments that dials the address (TCP) through the router, before and after the kill"`
	Port    uint16              `json:"port" doc:"with client: the service's TCP port at the address"`
}

func (w *bgpECMPWith) Validate(e strictyaml.FieldErrors) {
	if (w.Client != "") != (w.Port != 0) {
		e.Add("port", "want a port with a client, and none without")
	}
	if a, err := netip.ParseAddr(w.Address); err != nil || !a.Is4() {
		e.Add("address", "%q is not an IPv4 address", w.Address)
	}
	if len(w.Nodes) < 2 {
		e.Add("nodes", "want at least two nodes: ECMP needs two paths")
	}
	if w.Kill != "" && !slices.Contains(w.Nodes, w.Kill) {
		e.Add("kill", "%q is not one of nodes %v", w.Kill, w.Nodes)
	}
}

// kernelNextHops reads the next hops of the kernel's route to addr/32 (`ip route show
// exact`): one `via` for a plain route, one per `nexthop` for a multipath one.
func kernelNextHops(ctx context.Context, t topology.Cluster, member string, p netip.Prefix) ([]netip.Addr, string, error) {
	out, err := t.Exec(ctx, member, "ip", "route", "show", "exact", p.String())
	if err != nil {
		return nil, string(out), err
	}
	var hops []netip.Addr
	f := strings.Fields(string(out))
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			if a, err := netip.ParseAddr(f[i+1]); err == nil {
				hops = append(hops, a)
			}
		}
	}
	slices.SortFunc(hops, func(a, b netip.Addr) int { return a.Compare(b) })
	return hops, string(out), nil
}

func runBGPECMP(ctx context.Context, s *scenarios.Stage, w bgpECMPWith, e bgpWithdrawExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	spec := s.T.Spec()
	router := string(w.Router)
	prefix := netip.PrefixFrom(netip.MustParseAddr(w.Address), 32)
	addrOf := map[string]netip.Addr{}
	for _, p := range spec.BGPNeighbors(router) {
		addrOf[p.Name] = p.Address
	}
	var want []netip.Addr
	for _, n := range w.Nodes {
		a, ok := addrOf[string(n)]
		if !ok {
			return fmt.Errorf("bgp-ecmp: %s is no BGP neighbour of %s", n, router)
		}
		want = append(want, a)
	}
	slices.SortFunc(want, func(a, b netip.Addr) int { return a.Compare(b) })
	v := viewRouter(s.T, router)
	err = waitFor(ctx, bgpConvergeTimeout, func() error {
		paths, out, err := v.paths(ctx, prefix)
		if err != nil {
			return err
		}
		var from []netip.Addr
		for _, p := range paths {
			from = append(from, p.peer)
		}
		slices.SortFunc(from, func(a, b netip.Addr) int { return a.Compare(b) })
		if !slices.Equal(from, want) {
			return fmt.Errorf("paths from peers %v, want %v:\n%s", from, want, out)
		}
		return nil
	})
	s.Check(fmt.Sprintf("%s: bgp: %s's %s has %d paths to %s, one from each announcing node %v", s.Label(""), router, daemonName(spec.RouterBGP(router).Daemon), len(want), prefix, w.Nodes),
		v.cli("show route all for "+prefix.String()), err)
	var hops []netip.Addr
	var kout string
	err = waitFor(ctx, 5*time.Second, func() error {
		var err error
		if hops, kout, err = kernelNextHops(ctx, s.T, router, prefix); err != nil {
			return err
		}
		if !slices.Equal(hops, want) {
			return fmt.Errorf("next hops %v, want %v: %q", hops, want, strings.TrimSpace(kout))
		}
		return nil
	})
	s.Check(fmt.Sprintf("%s: bgp: %s's kernel route to %s is ECMP with next hops %v", s.Label(""), router, prefix, want),
		router+": ip route show exact "+prefix.String(), err)

	dial := func(when string) error { return nil }
	if w.Client != "" {
		gw, err := gatewayFor(spec, router, string(w.Client))
		if err != nil {
			return err
		}
		// The client's own route to the outside world: via the router.
		if _, err := s.T.Exec(ctx, string(w.Client), "ip", "route", "replace", prefix.String(), "via", gw.String()); err != nil {
			return err
		}
		dial = func(when string) error {
			const n = 10
			var errs []error
			for range n {
				errs = append(errs, probe.ExchangeAddr(ctx, s.T, string(w.Client), probe.TCP, netip.AddrPortFrom(prefix.Addr(), w.Port)))
			}
			err := errors.Join(errs...)
			s.Check(fmt.Sprintf("%s: bgp: %s reaches %s:%d through %s's BGP route, %s (%d TCP exchanges)", s.Label(""), w.Client, prefix.Addr(), w.Port, router, when, n),
				"TCP echo answers in "+string(w.Client), err)
			return nil
		}
	}
	_ = dial("while both nodes announce it")
	killed := addrOf[string(w.Kill)]
	rest := slices.DeleteFunc(slices.Clone(want), func(a netip.Addr) bool { return a == killed })
	limit := withdrawLimit(spec, true, e)
	start := time.Now()
	if err := agents.Stop(string(w.Kill), true); err != nil {
		return err
	}
	var took time.Duration
	err = waitFor(ctx, limit+5*time.Second, func() error {
		var err error
		if hops, kout, err = kernelNextHops(ctx, s.T, router, prefix); err != nil {
			return err
		}
		if !slices.Equal(hops, rest) {
			return fmt.Errorf("next hops %v, want %v: %q", hops, rest, strings.TrimSpace(kout))
		}
		took = time.Since(start)
		return nil
	})
	if err == nil && took > limit {
		err = fmt.Errorf("path withdrawn after %.2fs, more than %.2fs", took.Seconds(), limit.Seconds())
	}
	s.Check(fmt.Sprintf("%s: bgp: SIGKILL of %s's agent withdraws its path to %s: %s's kernel keeps %v (%.2fs; hold time %ds, limit %.1fs)",
		s.Label(""), w.Kill, prefix, router, rest, took.Seconds(), spec.BGP.HoldTime, limit.Seconds()),
		router+": ip route show exact "+prefix.String()+", polled every 50ms", err)
	_ = dial("after " + string(w.Kill) + "'s path was withdrawn")
	if !w.Restart {
		return nil
	}
	start = time.Now()
	if err := agents.Start(ctx, string(w.Kill)); err != nil {
		return err
	}
	err = waitFor(ctx, bgpConvergeTimeout, func() error {
		var err error
		if hops, kout, err = kernelNextHops(ctx, s.T, router, prefix); err != nil {
			return err
		}
		if !slices.Equal(hops, want) {
			return errors.New("next hops " + fmt.Sprint(hops) + ": " + strings.TrimSpace(kout))
		}
		return nil
	})
	s.Check(fmt.Sprintf("%s: bgp: %s's restarted agent brings its path to %s back (%.2fs)", s.Label(""), w.Kill, prefix, time.Since(start).Seconds()),
		router+": ip route show exact "+prefix.String(), err)
	return nil
}

// gatewayFor is router's address on the first segment it shares with member.
func gatewayFor(spec *topology.Spec, router, member string) (netip.Addr, error) {
	var mine []topology.InterfaceSpec
	for _, c := range spec.Clients {
		if c.Name == member {
			mine = c.Interfaces
		}
	}
	for _, r := range spec.Routers {
		if r.Name != router {
			continue
		}
		for _, ri := range r.Interfaces {
			for _, mi := range mine {
				if ri.Segment == mi.Segment {
					return netip.ParseAddr(ri.Address)
				}
			}
		}
	}
	return netip.Addr{}, fmt.Errorf("client %s shares no segment with router %s", member, router)
}

// daemonName is how check names call a router's daemon.
func daemonName(daemon string) string {
	if daemon == topology.BGPDaemonFRR {
		return "FRR"
	}
	return "BIRD"
}

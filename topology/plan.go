// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// NextHop is one gateway of a route: a neighbour's address on a directly attached
// segment, reached through the local device Dev.
type NextHop struct {
	Via netip.Addr `json:"via"`
	Dev string     `json:"dev"`
}

// Route is one route of a host. More than one next hop makes it an ECMP multipath route.
type Route struct {
	Dst      netip.Prefix `json:"dst"`
	NextHops []NextHop    `json:"nextHops"`
}

// String renders the route in `ip route` syntax, e.g. "10.0.2.0/24 via 10.0.1.1 dev eth0"
// or "10.0.2.0/24 nexthop via 10.0.1.1 dev eth0 nexthop via 10.0.1.2 dev eth0".
func (r Route) String() string {
	var b strings.Builder
	b.WriteString(r.Dst.String())
	if len(r.NextHops) == 1 {
		fmt.Fprintf(&b, " via %s dev %s", r.NextHops[0].Via, r.NextHops[0].Dev)
		return b.String()
	}
	for _, nh := range r.NextHops {
		fmt.Fprintf(&b, " nexthop via %s dev %s", nh.Via, nh.Dev)
	}
	return b.String()
}

// Plan holds the routes of every host (node, router, client) by name, each list sorted
// by destination. Connected segments and a node's own pods are not in it.
type Plan map[string][]Route

// planHost is a host as the planner sees it.
type planHost struct {
	name string
	kind Kind
	ifs  []planIf
	// noPodRoutes: a router that knows no PodCIDR (RouterSpec.NoPodRoutes).
	noPodRoutes bool
	// podRoutes: a client that routes the PodCIDRs (ClientSpec.PodRoutes).
	podRoutes bool
}

type planIf struct {
	name    string
	segment string
	addr    netip.Addr
}

func (h *planHost) ifOn(segment string) (planIf, bool) {
	for _, i := range h.ifs {
		if i.segment == segment {
			return i, true
		}
	}
	return planIf{}, false
}

// PlanRoutes computes the routes of every host of the spec (resolved first):
//   - to every segment the host is not attached to, via the router(s) on a shared segment
//     that start a shortest path in router hops; equal-cost next hops make one ECMP route;
//   - to every other node's PodCIDR (as Spec.PodRoutes says; never on clients unless
//     ClientSpec.PodRoutes, nor on routers with NoPodRoutes), via that
//     node's address on the first shared segment, else like a segment route toward the
//     segments of that node.
func PlanRoutes(spec *Spec) (Plan, error) {
	r, err := spec.Resolve()
	if err != nil {
		return nil, fmt.Errorf("plan routes: %w", err)
	}
	segCIDR := map[string]netip.Prefix{}
	for _, sg := range r.Segments {
		segCIDR[sg.Name] = netip.MustParsePrefix(sg.CIDR)
	}
	mk := func(name string, kind Kind, ifs []InterfaceSpec) *planHost {
		h := &planHost{name: name, kind: kind}
		for _, i := range ifs {
			h.ifs = append(h.ifs, planIf{i.Name, i.Segment, netip.MustParseAddr(i.Address)})
		}
		return h
	}
	var hosts, routers, nodes []*planHost
	for _, x := range r.Routers {
		h := mk(x.Name, KindRouter, x.Interfaces)
		h.noPodRoutes = x.NoPodRoutes
		routers = append(routers, h)
		hosts = append(hosts, h)
	}
	for _, x := range r.Nodes {
		h := mk(x.Name, KindNode, x.Interfaces)
		nodes = append(nodes, h)
		hosts = append(hosts, h)
	}
	for _, x := range r.Clients {
		h := mk(x.Name, KindClient, x.Interfaces)
		h.podRoutes = x.PodRoutes
		hosts = append(hosts, h)
	}
	routersOn := map[string][]*planHost{}
	for _, rt := range routers {
		for _, i := range rt.ifs {
			routersOn[i.segment] = append(routersOn[i.segment], rt)
		}
	}

	// nextHops returns the first hops of the shortest paths (in router hops) from h to
	// any of the target segments; nil when h is attached to one or none is reachable.
	nextHops := func(h *planHost, targets []string) []NextHop {
		dist := map[string]int{}
		var queue []string
		for _, t := range targets {
			if _, ok := h.ifOn(t); ok {
				return nil
			}
			if _, seen := dist[t]; !seen {
				dist[t] = 0
				queue = append(queue, t)
			}
		}
		for len(queue) > 0 {
			s := queue[0]
			queue = queue[1:]
			for _, rt := range routersOn[s] {
				for _, i := range rt.ifs {
					if _, seen := dist[i.segment]; !seen {
						dist[i.segment] = dist[s] + 1
						queue = append(queue, i.segment)
					}
				}
			}
		}
		routerDist := func(rt *planHost) (int, bool) {
			best, ok := 0, false
			for _, i := range rt.ifs {
				if d, seen := dist[i.segment]; seen && (!ok || d < best) {
					best, ok = d, true
				}
			}
			return best, ok
		}
		var hops []NextHop
		best := -1
		for _, local := range h.ifs {
			for _, rt := range routersOn[local.segment] {
				if rt == h {
					continue
				}
				d, ok := routerDist(rt)
				if !ok {
					continue
				}
				via, _ := rt.ifOn(local.segment)
				nh := NextHop{Via: via.addr, Dev: local.name}
				switch {
				case best < 0 || d < best:
					best, hops = d, []NextHop{nh}
				case d == best && !slices.Contains(hops, nh):
					hops = append(hops, nh)
				}
			}
		}
		slices.SortFunc(hops, func(a, b NextHop) int {
			return cmp.Or(a.Via.Compare(b.Via), strings.Compare(a.Dev, b.Dev))
		})
		return hops
	}

	plan := Plan{}
	for _, h := range hosts {
		routes := []Route{}
		for _, sg := range r.Segments {
			if hops := nextHops(h, []string{sg.Name}); len(hops) > 0 {
				routes = append(routes, Route{Dst: segCIDR[sg.Name], NextHops: hops})
			}
		}
		if (wantsPodRoutes(r.PodRoutes, h.kind) && !h.noPodRoutes) || h.podRoutes {
			for ni, n := range nodes {
				if n == h {
					continue
				}
				dst := netip.MustParsePrefix(r.Nodes[ni].PodCIDR)
				if hop, ok := sharedHop(h, n); ok {
					routes = append(routes, Route{Dst: dst, NextHops: []NextHop{hop}})
					continue
				}
				var targets []string
				for _, i := range n.ifs {
					targets = append(targets, i.segment)
				}
				if hops := nextHops(h, targets); len(hops) > 0 {
					routes = append(routes, Route{Dst: dst, NextHops: hops})
				}
			}
		}
		slices.SortFunc(routes, func(a, b Route) int {
			return cmp.Or(a.Dst.Addr().Compare(b.Dst.Addr()), cmp.Compare(a.Dst.Bits(), b.Dst.Bits()))
		})
		plan[h.name] = routes
	}
	return plan, nil
}

// sharedHop returns the next hop to node n through the first of h's segments n is on.
func sharedHop(h, n *planHost) (NextHop, bool) {
	for _, local := range h.ifs {
		if remote, ok := n.ifOn(local.segment); ok {
			return NextHop{Via: remote.addr, Dev: local.name}, true
		}
	}
	return NextHop{}, false
}

func wantsPodRoutes(policy string, kind Kind) bool {
	switch policy {
	case PodRoutesAll:
		return kind == KindNode || kind == KindRouter
	case PodRoutesRouters:
		return kind == KindRouter
	}
	return false
}

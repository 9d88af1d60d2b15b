// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"net/netip"
	"reflect"
	"slices"
	"testing"
)

func TestPlanRoutes(t *testing.T) {
	l2 := &Spec{
		Name:     "l2",
		Segments: []SegmentSpec{{Name: "lan", CIDR: "10.0.0.0/24"}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}}},
		},
	}
	routed := &Spec{
		Name:     "routed",
		Segments: []SegmentSpec{{Name: "a", CIDR: "10.0.1.0/24"}, {Name: "b", CIDR: "10.0.2.0/24"}},
		Routers:  []RouterSpec{{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "b"}}},
		},
		Clients: []ClientSpec{{Name: "c1", Interfaces: []InterfaceSpec{{Segment: "b"}}}},
	}
	// r1 (.1) and r2 (.2) both join a and b.
	diamond := &Spec{
		Name:     "diamond",
		Segments: []SegmentSpec{{Name: "a", CIDR: "10.0.1.0/24"}, {Name: "b", CIDR: "10.0.2.0/24"}},
		Routers: []RouterSpec{
			{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}},
			{Name: "r2", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}},
		},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "b"}}},
		},
	}
	// node1 sits on a and b; rA joins a-c, rB joins b-c: two equal paths over two devices.
	// Segment d hangs two router hops away behind c: the longer path must not be used.
	multiDev := &Spec{
		Name: "multidev",
		Segments: []SegmentSpec{
			{Name: "a", CIDR: "10.0.1.0/24"}, {Name: "b", CIDR: "10.0.2.0/24"},
			{Name: "c", CIDR: "10.0.3.0/24"}, {Name: "d", CIDR: "10.0.4.0/24"},
		},
		Routers: []RouterSpec{
			{Name: "ra", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "c"}}},
			{Name: "rb", Interfaces: []InterfaceSpec{{Segment: "b"}, {Segment: "c"}}},
			{Name: "rd", Interfaces: []InterfaceSpec{{Segment: "c"}, {Segment: "d"}}},
		},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "d"}}},
		},
	}
	withPolicy := func(s *Spec, p string) *Spec { c := s.Clone(); c.PodRoutes = p; return c }

	tests := []struct {
		name string
		spec *Spec
		want map[string][]string
	}{
		{"l2 two nodes", l2, map[string][]string{
			"node1": {"10.244.2.0/24 via 10.0.0.2 dev eth0"},
			"node2": {"10.244.1.0/24 via 10.0.0.1 dev eth0"},
		}},
		{"routed", routed, map[string][]string{
			"r1": {"10.244.1.0/24 via 10.0.1.2 dev eth0", "10.244.2.0/24 via 10.0.2.2 dev eth1"},
			"node1": {
				"10.0.2.0/24 via 10.0.1.1 dev eth0",
				"10.244.2.0/24 via 10.0.1.1 dev eth0",
			},
			"node2": {
				"10.0.1.0/24 via 10.0.2.1 dev eth0",
				"10.244.1.0/24 via 10.0.2.1 dev eth0",
			},
			"c1": {"10.0.1.0/24 via 10.0.2.1 dev eth0"}, // clients: segment routes only
		}},
		{"routed, pod routes on routers only", withPolicy(routed, PodRoutesRouters), map[string][]string{
			"r1":    {"10.244.1.0/24 via 10.0.1.2 dev eth0", "10.244.2.0/24 via 10.0.2.2 dev eth1"},
			"node1": {"10.0.2.0/24 via 10.0.1.1 dev eth0"},
			"node2": {"10.0.1.0/24 via 10.0.2.1 dev eth0"},
			"c1":    {"10.0.1.0/24 via 10.0.2.1 dev eth0"},
		}},
		{"routed, no pod routes", withPolicy(routed, PodRoutesNone), map[string][]string{
			"r1":    {},
			"node1": {"10.0.2.0/24 via 10.0.1.1 dev eth0"},
			"node2": {"10.0.1.0/24 via 10.0.2.1 dev eth0"},
			"c1":    {"10.0.1.0/24 via 10.0.2.1 dev eth0"},
		}},
		{"diamond ECMP", diamond, map[string][]string{
			"r1": {"10.244.1.0/24 via 10.0.1.3 dev eth0", "10.244.2.0/24 via 10.0.2.3 dev eth1"},
			"r2": {"10.244.1.0/24 via 10.0.1.3 dev eth0", "10.244.2.0/24 via 10.0.2.3 dev eth1"},
			"node1": {
				"10.0.2.0/24 nexthop via 10.0.1.1 dev eth0 nexthop via 10.0.1.2 dev eth0",
				"10.244.2.0/24 nexthop via 10.0.1.1 dev eth0 nexthop via 10.0.1.2 dev eth0",
			},
			"node2": {
				"10.0.1.0/24 nexthop via 10.0.2.1 dev eth0 nexthop via 10.0.2.2 dev eth0",
				"10.244.1.0/24 nexthop via 10.0.2.1 dev eth0 nexthop via 10.0.2.2 dev eth0",
			},
		}},
		{"ECMP over two devices, shortest path only", multiDev, map[string][]string{
			"ra": {
				"10.0.2.0/24 via 10.0.3.2 dev eth1",
				"10.0.4.0/24 via 10.0.3.3 dev eth1",
				"10.244.1.0/24 via 10.0.1.2 dev eth0",
				"10.244.2.0/24 via 10.0.3.3 dev eth1",
			},
			"rb": {
				"10.0.1.0/24 via 10.0.3.1 dev eth1",
				"10.0.4.0/24 via 10.0.3.3 dev eth1",
				"10.244.1.0/24 via 10.0.2.2 dev eth0",
				"10.244.2.0/24 via 10.0.3.3 dev eth1",
			},
			"rd": {
				"10.0.1.0/24 via 10.0.3.1 dev eth0",
				"10.0.2.0/24 via 10.0.3.2 dev eth0",
				"10.244.1.0/24 nexthop via 10.0.3.1 dev eth0 nexthop via 10.0.3.2 dev eth0",
				"10.244.2.0/24 via 10.0.4.2 dev eth1",
			},
			"node1": {
				"10.0.3.0/24 nexthop via 10.0.1.1 dev eth0 nexthop via 10.0.2.1 dev eth1",
				"10.0.4.0/24 nexthop via 10.0.1.1 dev eth0 nexthop via 10.0.2.1 dev eth1",
				"10.244.2.0/24 nexthop via 10.0.1.1 dev eth0 nexthop via 10.0.2.1 dev eth1",
			},
			"node2": {
				"10.0.1.0/24 via 10.0.4.1 dev eth0",
				"10.0.2.0/24 via 10.0.4.1 dev eth0",
				"10.0.3.0/24 via 10.0.4.1 dev eth0",
				"10.244.1.0/24 via 10.0.4.1 dev eth0",
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plan, err := PlanRoutes(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for host, routes := range plan {
				got[host] = []string{}
				for _, r := range routes {
					got[host] = append(got[host], r.String())
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				for host := range got {
					t.Logf("%s: %q", host, got[host])
				}
				t.Fatalf("plan differs from %v", tt.want)
			}
		})
	}
}

func TestPlanRoutesInvalidSpec(t *testing.T) {
	if _, err := PlanRoutes(&Spec{}); err == nil {
		t.Fatal("want an error for an invalid spec")
	}
}

// TestPlanRoutesWorld: a router with noPodRoutes gets no PodCIDR route whatever the
// policy, while the world server still reaches every segment through it.
func TestPlanRoutesWorld(t *testing.T) {
	spec := &Spec{
		Name:     "world",
		Segments: []SegmentSpec{{Name: "lan", CIDR: "10.0.0.0/24"}, {Name: "wan", CIDR: "192.168.200.0/24"}},
		Routers:  []RouterSpec{{Name: "edge", NoPodRoutes: true, Interfaces: []InterfaceSpec{{Segment: "lan"}, {Segment: "wan"}}}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}}},
		},
		Clients: []ClientSpec{{Name: "world1", World: true, Interfaces: []InterfaceSpec{{Segment: "wan"}}}},
	}
	for _, policy := range []string{PodRoutesAll, PodRoutesRouters} {
		s := spec.Clone()
		s.PodRoutes = policy
		plan, err := PlanRoutes(s)
		if err != nil {
			t.Fatalf("%s: %v", policy, err)
		}
		if got := plan["edge"]; len(got) != 0 {
			t.Errorf("%s: edge routes = %v, want none (noPodRoutes)", policy, got)
		}
		want := []Route{{Dst: netip.MustParsePrefix("10.0.0.0/24"), NextHops: []NextHop{{Via: netip.MustParseAddr("192.168.200.1"), Dev: "eth0"}}}}
		if got := plan["world1"]; !reflect.DeepEqual(got, want) {
			t.Errorf("%s: world1 routes = %v, want %v", policy, got, want)
		}
		wan := Route{Dst: netip.MustParsePrefix("192.168.200.0/24"), NextHops: []NextHop{{Via: netip.MustParseAddr("10.0.0.1"), Dev: "eth0"}}}
		if got := plan["node1"]; !slices.ContainsFunc(got, func(r Route) bool { return reflect.DeepEqual(r, wan) }) {
			t.Errorf("%s: node1 routes = %v, want %v", policy, got, wan)
		}
	}
	dc := spec.Clone()
	dc.Segments = append(dc.Segments, SegmentSpec{Name: "dc", CIDR: "10.100.0.0/24"})
	dc.Routers = append(dc.Routers, RouterSpec{Name: "dcr", Interfaces: []InterfaceSpec{{Segment: "lan"}, {Segment: "dc"}}})
	dc.Clients = append(dc.Clients, ClientSpec{Name: "dc1", PodRoutes: true, Interfaces: []InterfaceSpec{{Segment: "dc"}}})
	plan, err := PlanRoutes(dc)
	if err != nil {
		t.Fatal(err)
	}
	pod1 := Route{Dst: netip.MustParsePrefix("10.244.1.0/24"), NextHops: []NextHop{{Via: netip.MustParseAddr("10.100.0.1"), Dev: "eth0"}}}
	if got := plan["dc1"]; !slices.ContainsFunc(got, func(r Route) bool { return reflect.DeepEqual(r, pod1) }) {
		t.Errorf("dc1 (podRoutes) routes = %v, want %v", got, pod1)
	}
	if got := plan["world1"]; slices.ContainsFunc(got, func(r Route) bool { return r.Dst == pod1.Dst }) {
		t.Errorf("world1 routes = %v: a route to a PodCIDR", got)
	}
	if got := spec.WorldServers(); !reflect.DeepEqual(got, []string{"world1"}) {
		t.Errorf("WorldServers() = %v", got)
	}
}

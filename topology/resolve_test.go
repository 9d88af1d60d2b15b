// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"reflect"
	"testing"
)

func TestResolve(t *testing.T) {
	s := &Spec{
		Name: "res",
		Segments: []SegmentSpec{
			{Name: "a", CIDR: "10.0.1.0/24"},
			{Name: "b", CIDR: "10.0.2.0/24", MTU: 9000},
		},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", InternalInterface: "eth0",
				Interfaces: []InterfaceSpec{{Segment: "a"}, {Name: "data", Segment: "b", MTU: 8000}},
				Pods:       []PodSpec{{Name: "p1"}, {Name: "p2", Address: "10.244.1.11"}, {Name: "p3"}, {Name: "p4", MTU: 1400}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24",
				Interfaces: []InterfaceSpec{{Segment: "b"}},
				Pods:       []PodSpec{{Name: "p5"}}},
		},
		// Routers get addresses first, even though they come later in the file.
		Routers: []RouterSpec{{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "a", Address: "10.0.1.2"}, {Segment: "b"}}}},
		Clients: []ClientSpec{{Name: "c1", Interfaces: []InterfaceSpec{{Segment: "a"}}}},
	}
	orig := s.Clone()
	r, err := s.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(s, orig) {
		t.Fatal("Resolve modified its receiver")
	}
	want := &Spec{
		Name:      "res",
		PodRoutes: PodRoutesAll, PodNetwork: PodNetworkKernel,
		Segments: []SegmentSpec{
			{Name: "a", CIDR: "10.0.1.0/24", MTU: 1500},
			{Name: "b", CIDR: "10.0.2.0/24", MTU: 9000},
		},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", InternalInterface: "eth0",
				Interfaces: []InterfaceSpec{
					{Name: "eth0", Segment: "a", Address: "10.0.1.1", MTU: 1500},
					{Name: "data", Segment: "b", Address: "10.0.2.2", MTU: 8000},
				},
				Pods: []PodSpec{
					{Name: "p1", Address: "10.244.1.10", MTU: 1500},
					{Name: "p2", Address: "10.244.1.11", MTU: 1500},
					{Name: "p3", Address: "10.244.1.12", MTU: 1500},
					{Name: "p4", Address: "10.244.1.13", MTU: 1400},
				}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", InternalInterface: "eth0",
				Interfaces: []InterfaceSpec{{Name: "eth0", Segment: "b", Address: "10.0.2.3", MTU: 9000}},
				Pods:       []PodSpec{{Name: "p5", Address: "10.244.2.10", MTU: 9000}}},
		},
		Routers: []RouterSpec{{Name: "r1", Interfaces: []InterfaceSpec{
			{Name: "eth0", Segment: "a", Address: "10.0.1.2", MTU: 1500},
			{Name: "eth1", Segment: "b", Address: "10.0.2.1", MTU: 9000},
		}}},
		Clients: []ClientSpec{{Name: "c1", Interfaces: []InterfaceSpec{{Name: "eth0", Segment: "a", Address: "10.0.1.3", MTU: 1500}}}},
	}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("resolved spec:\n got %+v\nwant %+v", r, want)
	}
	again, err := r.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(again, r) {
		t.Fatalf("resolving a resolved spec changed it:\n got %+v\nwant %+v", again, r)
	}
}

func TestResolvePodNetworkDefaults(t *testing.T) {
	for _, tc := range []struct{ network, routes, wantNetwork, wantRoutes string }{
		{"", "", PodNetworkKernel, PodRoutesAll},
		{PodNetworkAgent, "", PodNetworkAgent, PodRoutesRouters},
		{PodNetworkAgent, PodRoutesNone, PodNetworkAgent, PodRoutesNone},
	} {
		s := &Spec{Name: "t", Segments: []SegmentSpec{{Name: "lan", CIDR: "10.0.0.0/24"}},
			Nodes:      []NodeSpec{{Name: "n1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}}}},
			PodNetwork: tc.network, PodRoutes: tc.routes}
		r, err := s.Resolve()
		if err != nil {
			t.Fatal(err)
		}
		if r.PodNetwork != tc.wantNetwork || r.PodRoutes != tc.wantRoutes {
			t.Errorf("podNetwork %q podRoutes %q: resolved to %q/%q, want %q/%q",
				tc.network, tc.routes, r.PodNetwork, r.PodRoutes, tc.wantNetwork, tc.wantRoutes)
		}
	}
}

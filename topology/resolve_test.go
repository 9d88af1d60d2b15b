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

func TestTopologyNaming(t *testing.T) {
	tests := []struct {
		name, got, want string
	}{
		{"port fits", portName("node1", "eth0", 3), "node1.eth0"},
		{"port too long", portName("averylongnodename", "eth0", 3), "p3"},
		{"host veth fits", hostVethName("pod1a"), "lxc-pod1a"},
		{"host veth 15 chars", hostVethName("abcdefghijk"), "lxc-abcdefghijk"},
		{"host veth hashed", hostVethName("abcdefghijkl"), hostVethName("abcdefghijkl")},
		{"ns name", nsName("0a1b2c", "node1"), "pp-0a1b2c-node1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.got != tt.want {
				t.Fatalf("got %q, want %q", tt.got, tt.want)
			}
		})
	}
	if h := hostVethName("abcdefghijkl"); len(h) != 11 || h[:3] != "lxc" {
		t.Fatalf("hashed host veth name %q: want lxc + 8 hex", h)
	}
	if m := macFor("x"); len(m) != 6 || m[0] != 0x02 {
		t.Fatalf("macFor: %v is not locally administered unicast", m)
	}
}

// The derived view of a topology (members, interfaces, pods) comes from the resolved spec.
func TestNewTopology(t *testing.T) {
	r, err := validSpec().Resolve()
	if err != nil {
		t.Fatal(err)
	}
	topo := newTopology("netns", "abc123", r)
	if topo.Name != "base-abc123" || topo.Prefix() != "pp-abc123-" {
		t.Fatalf("name %q prefix %q", topo.Name, topo.Prefix())
	}
	var kinds []Kind
	for _, m := range topo.Members() {
		kinds = append(kinds, m.Kind)
		if m.NsPath != "/var/run/netns/pp-abc123-"+m.Name {
			t.Errorf("member %s: ns path %s", m.Name, m.NsPath)
		}
	}
	wantKinds := []Kind{KindSegment, KindSegment, KindRouter, KindNode, KindNode, KindClient, KindPod, KindPod}
	if !reflect.DeepEqual(kinds, wantKinds) {
		t.Fatalf("member kinds %v, want %v", kinds, wantKinds)
	}
	pod, err := topo.Pod("pod2")
	if err != nil {
		t.Fatal(err)
	}
	if pod.Node != "node2" || pod.IP.String() != "10.244.2.10" || pod.Gateway.String() != "10.244.2.1" || pod.HostVeth != "lxc-pod2" || pod.MTU != 9000 {
		t.Fatalf("pod2: %+v", pod)
	}
	ifs, err := topo.Interfaces("r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(ifs) != 2 || ifs[1].Name != "eth1" || ifs[1].Address.String() != "10.0.2.1/24" || ifs[1].Peer != "r1.eth1" || ifs[1].MTU != 9000 {
		t.Fatalf("r1 interfaces: %+v", ifs)
	}
	ports, _ := topo.Interfaces("a")
	if len(ports) != 3 || ports[0].Name != "r1.eth0" || ports[2].Peer != "client/eth0" {
		t.Fatalf("segment a ports: %+v", ports)
	}
	if gw, err := topo.Gateway("node1"); err != nil || gw.String() != "10.244.1.1" {
		t.Fatalf("gateway of node1: %v %v", gw, err)
	}
	if _, err := topo.Member("nope"); err == nil {
		t.Fatal("want an error for an unknown member")
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

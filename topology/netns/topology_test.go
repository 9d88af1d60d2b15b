// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"reflect"
	"testing"

	"podpath/topology"
)

// validSpec is topology's validate_test.go base spec: two segments, a router, two nodes
// with a pod each and a client.
func validSpec() *topology.Spec {
	return &topology.Spec{
		Name: "base",
		Segments: []topology.SegmentSpec{
			{Name: "a", CIDR: "10.0.1.0/24"},
			{Name: "b", CIDR: "10.0.2.0/24", MTU: 9000},
		},
		Routers: []topology.RouterSpec{{Name: "r1", Interfaces: []topology.InterfaceSpec{{Segment: "a"}, {Segment: "b"}}}},
		Nodes: []topology.NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []topology.InterfaceSpec{{Segment: "a"}}, Pods: []topology.PodSpec{{Name: "pod1"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []topology.InterfaceSpec{{Segment: "b"}}, Pods: []topology.PodSpec{{Name: "pod2"}}},
		},
		Clients: []topology.ClientSpec{{Name: "client", Interfaces: []topology.InterfaceSpec{{Segment: "a"}}}},
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
	topo := newTopology("abc123", r)
	if topo.Name() != "base-abc123" || topo.Prefix() != "pp-abc123-" {
		t.Fatalf("name %q prefix %q", topo.Name(), topo.Prefix())
	}
	var kinds []topology.Kind
	for _, m := range topo.Members() {
		kinds = append(kinds, m.Kind)
		if m.NsPath != "/var/run/netns/pp-abc123-"+m.Name {
			t.Errorf("member %s: ns path %s", m.Name, m.NsPath)
		}
	}
	wantKinds := []topology.Kind{topology.KindSegment, topology.KindSegment, topology.KindRouter, topology.KindNode, topology.KindNode, topology.KindClient, topology.KindPod, topology.KindPod}
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
	if n, err := topo.Node("node1"); err != nil || n.Gateway.String() != "10.244.1.1" {
		t.Fatalf("gateway of node1: %v %v", n.Gateway, err)
	}
	if _, err := topo.Member("nope"); err == nil {
		t.Fatal("want an error for an unknown member")
	}
}

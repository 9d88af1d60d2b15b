// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"strings"
	"testing"
)

// meshSpec is two clusters on their own segments joined by a router, each with its
// own etcd; every case breaks it once.
func meshSpec() *Spec {
	return &Spec{
		Name:       "mesh",
		PodNetwork: PodNetworkAgent,
		Segments:   []SegmentSpec{{Name: "lana", CIDR: "10.1.0.0/24"}, {Name: "lanb", CIDR: "10.2.0.0/24"}},
		Routers:    []RouterSpec{{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "lana"}, {Segment: "lanb"}}}},
		Clusters: []ClusterSpec{
			{Name: "east", ID: 1, Etcd: &EtcdSpec{Members: 1, TLS: true, Segment: "lana"}, RoutingMode: "tunnel"},
			{Name: "west", ID: 2, Etcd: &EtcdSpec{Members: 1, TLS: true, Segment: "lanb"}, RoutingMode: "tunnel"},
		},
		Nodes: []NodeSpec{
			{Name: "a1", Cluster: "east", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lana"}}},
			{Name: "b1", Cluster: "west", PodCIDR: "10.245.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lanb"}}},
		},
	}
}

func TestValidateMesh(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Spec)
		want   []string
	}{
		{"valid", func(s *Spec) {}, nil},
		{"three clusters", func(s *Spec) {
			s.Segments = append(s.Segments, SegmentSpec{Name: "lanc", CIDR: "10.3.0.0/24"})
			s.Routers[0].Interfaces = append(s.Routers[0].Interfaces, InterfaceSpec{Segment: "lanc"})
			s.Clusters = append(s.Clusters, ClusterSpec{Name: "north", ID: 255, Etcd: &EtcdSpec{Members: 3, TLS: true, Segment: "lanc"}})
			s.Nodes = append(s.Nodes, NodeSpec{Name: "c1", Cluster: "north", PodCIDR: "10.246.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lanc"}}})
		}, nil},
		{"overlapping podCIDRs", func(s *Spec) { s.Nodes[1].PodCIDR = "10.244.0.0/16" },
			[]string{`nodes[1].podCIDR: 10.244.0.0/16 of cluster "west" overlaps nodes[0].podCIDR 10.244.1.0/24 of cluster "east"`}},
		{"overlapping node CIDRs", func(s *Spec) { s.Nodes[1].Interfaces[0].Segment = "lana" },
			[]string{`nodes[1].interfaces[0].segment: segment "lana" (node CIDR 10.1.0.0/24) already carries nodes of cluster "east"`}},
		{"duplicate cluster ID", func(s *Spec) { s.Clusters[1].ID = 1 },
			[]string{`clusters[1].id: 1 is already the ID of clusters[0] "east"`}},
		{"duplicate cluster name", func(s *Spec) { s.Clusters[1].Name = "east"; s.Nodes[1].Cluster = "east" },
			[]string{`clusters[1].name: "east" is already the name of clusters[0]`}},
		{"cluster ID 0", func(s *Spec) { s.Clusters[0].ID = 0 }, []string{"clusters[0].id: 0 is out of range (want 1..255)"}},
		{"cluster ID 256", func(s *Spec) { s.Clusters[1].ID = 256 }, []string{"clusters[1].id: 256 is out of range (want 1..255)"}},
		{"uppercase cluster name", func(s *Spec) { s.Clusters[0].Name = "East"; s.Nodes[0].Cluster = "East" },
			[]string{`clusters[0].name: "East" has uppercase letters`}},
		{"bad cluster name", func(s *Spec) { s.Clusters[0].Name = "east_1"; s.Nodes[0].Cluster = "east_1" },
			[]string{`clusters[0].name: "east_1" is invalid`}},
		{"mixed routing modes", func(s *Spec) { s.Clusters[1].RoutingMode = "native" },
			[]string{`clusters[1].routingMode: "native" differs from clusters[0].routingMode "tunnel"`}},
		{"unknown routing mode", func(s *Spec) { s.Clusters[1].RoutingMode = "ipip" },
			[]string{`clusters[1].routingMode: "ipip" is not one of tunnel, native`}},
		{"node without cluster", func(s *Spec) { s.Nodes[1].Cluster = "" },
			[]string{`nodes[1].cluster: "" is not a declared cluster (have: east, west)`}},
		{"node in unknown cluster", func(s *Spec) { s.Nodes[1].Cluster = "south" },
			[]string{`nodes[1].cluster: "south" is not a declared cluster`}},
		{"cluster without etcd", func(s *Spec) { s.Clusters[1].Etcd = nil },
			[]string{"clusters[1].etcd: each cluster of a mesh needs its own etcd"}},
		{"top-level etcd beside clusters", func(s *Spec) { s.Etcd = &EtcdSpec{Members: 1, Segment: "lana"} },
			[]string{"etcd: a cluster mesh gives each cluster its own etcd"}},
		{"mixed etcd tls", func(s *Spec) { s.Clusters[1].Etcd.TLS = false },
			[]string{"clusters: etcd tls differs between clusters"}},
		{"cluster etcd on unknown segment", func(s *Spec) { s.Clusters[1].Etcd.Segment = "wan" },
			[]string{`clusters[1].etcd.segment: "wan" is not a segment`}},
		{"cluster without nodes", func(s *Spec) {
			s.Clusters = append(s.Clusters, ClusterSpec{Name: "empty", ID: 9, Etcd: &EtcdSpec{Members: 1, Segment: "lana", TLS: true}})
		}, []string{`clusters[2]: cluster "empty" has no node`}},
		{"node cluster without mesh", func(s *Spec) { s.Clusters = nil },
			[]string{`nodes[0].cluster: "east" names a cluster, but the topology declares no clusters`}},
		{"node named like a cluster etcd member", func(s *Spec) { s.Nodes[1].Name = "etcd1-east" },
			[]string{`nodes[1].name: "etcd1-east" is reserved for an etcd member`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := meshSpec()
			tt.mutate(s)
			err := s.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error containing %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestMeshEtcdGroups(t *testing.T) {
	r, err := meshSpec().Resolve()
	if err != nil {
		t.Fatal(err)
	}
	gs := r.EtcdGroups()
	if len(gs) != 2 || gs[0].Cluster != "east" || gs[1].Members[0] != "etcd1-west" {
		t.Fatalf("groups: %+v", gs)
	}
	for _, m := range []string{"etcd1-east", "etcd1-west"} {
		if _, err := resolvedClient(r, m); err != nil {
			t.Error(err)
		}
	}
	if c := r.ClusterOfNode("b1"); c == nil || c.ID != 2 {
		t.Fatalf("cluster of b1: %+v", c)
	}
}

// resolvedClient finds a resolved client by name (etcd members are clients).
func resolvedClient(s *Spec, name string) (*ClientSpec, error) {
	for i := range s.Clients {
		if s.Clients[i].Name == name {
			return &s.Clients[i], nil
		}
	}
	return nil, &notFound{name}
}

type notFound struct{ name string }

func (n *notFound) Error() string { return n.name + ": no such client" }

// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"strings"
	"testing"
)

func etcdSpec() *Spec {
	return &Spec{
		Name:     "kv",
		Segments: []SegmentSpec{{Name: "lan", CIDR: "10.0.0.0/24"}},
		Etcd:     &EtcdSpec{Members: 3, TLS: true, Segment: "lan"},
		Nodes: []NodeSpec{{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}},
			Pods: []PodSpec{{Name: "web1", Labels: map[string]string{"app": "web"}}}}},
	}
}

func TestEtcdSpec(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*Spec)
		want   []string
	}{
		{"valid", func(*Spec) {}, nil},
		{"two members", func(s *Spec) { s.Etcd.Members = 2 }, []string{"etcd.members: 2 is not one of 1, 3, 5"}},
		{"unknown segment", func(s *Spec) { s.Etcd.Segment = "wan" }, []string{`etcd.segment: "wan" is not a segment`}},
		{"pod named etcd2", func(s *Spec) { s.Nodes[0].Pods[0].Name = "etcd2" }, []string{`nodes[0].pods[0].name: "etcd2" is reserved for an etcd member`}},
		{"client etcd1 elsewhere", func(s *Spec) {
			s.Segments = append(s.Segments, SegmentSpec{Name: "wan", CIDR: "10.1.0.0/24"})
			s.Clients = []ClientSpec{{Name: "etcd1", Interfaces: []InterfaceSpec{{Segment: "wan"}}}}
		}, []string{`clients[0].name: "etcd1" is reserved for an etcd member on segment lan`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := etcdSpec()
			tt.modify(s)
			err := s.Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// TestEtcdResolve: members become clients on the segment, with addresses, once.
func TestEtcdResolve(t *testing.T) {
	r, err := etcdSpec().Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Clients) != 3 || r.Clients[0].Name != "etcd1" || r.Clients[2].Name != "etcd3" {
		t.Fatalf("clients %+v, want etcd1..etcd3", r.Clients)
	}
	if a := r.Clients[0].Interfaces[0].Address; a != "10.0.0.2" {
		t.Errorf("etcd1 address %s, want 10.0.0.2 (after node1)", a)
	}
	again, err := r.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Clients) != 3 {
		t.Errorf("resolving again: %d clients, want 3", len(again.Clients))
	}
	if r.Nodes[0].Pods[0].Labels["app"] != "web" {
		t.Errorf("labels lost: %+v", r.Nodes[0].Pods[0])
	}
}

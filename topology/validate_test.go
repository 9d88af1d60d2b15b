// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// validSpec is a routed topology exercising every member kind; each case breaks it once.
func validSpec() *Spec {
	return &Spec{
		Name: "base",
		Segments: []SegmentSpec{
			{Name: "a", CIDR: "10.0.1.0/24"},
			{Name: "b", CIDR: "10.0.2.0/24", MTU: 9000},
		},
		Routers: []RouterSpec{{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}}, Pods: []PodSpec{{Name: "pod1"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "b"}}, Pods: []PodSpec{{Name: "pod2"}}},
		},
		Clients: []ClientSpec{{Name: "client", Interfaces: []InterfaceSpec{{Segment: "a"}}}},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Spec)
		want   []string // substrings, each must appear in the error; nil = valid
	}{
		{"valid", func(s *Spec) {}, nil},
		{"valid explicit everything", func(s *Spec) {
			s.PodRoutes = PodRoutesRouters
			s.Nodes[0].Interfaces[0] = InterfaceSpec{Name: "ens3", Segment: "a", Address: "10.0.1.50", MTU: 1400}
			s.Nodes[0].Pods[0].Address = "10.244.1.2"
			s.Nodes[0].Pods[0].MTU = 1300
		}, nil},

		// topology name and podRoutes
		{"empty topology name", func(s *Spec) { s.Name = "" }, []string{"name: must not be empty", "lowercase letters"}},
		{"invalid topology name", func(s *Spec) { s.Name = "My_Topo" }, []string{`name: "My_Topo" is invalid`}},
		{"bad podRoutes", func(s *Spec) { s.PodRoutes = "some" }, []string{`podRoutes: "some" is not one of all, routers, none`}},
		{"bad podNetwork", func(s *Spec) { s.PodNetwork = "cni" }, []string{`podNetwork: "cni" is not one of kernel, agent`}},
		{"unknown internalInterface", func(s *Spec) { s.Nodes[0].InternalInterface = "eth7" }, []string{`nodes[0].internalInterface: "eth7" is not an interface of node`}},
		{"unknown device", func(s *Spec) { s.Nodes[0].Devices = []string{"eth0", "eth7"} }, []string{`nodes[0].devices[1]: "eth7" is not an interface of node`}},
		{"devices without the internal interface", func(s *Spec) {
			s.Nodes[0].Interfaces = append(s.Nodes[0].Interfaces, InterfaceSpec{Segment: s.Nodes[0].Interfaces[0].Segment})
			s.Nodes[0].Devices = []string{"eth1"}
		}, []string{`nodes[0].devices: want the internal interface "eth0" among them`}},
		{"bad zone", func(s *Spec) { s.Nodes[0].Zone = "zone a" }, []string{`nodes[0].zone: "zone a" is not a label value`}},
		{"no nodes", func(s *Spec) { s.Nodes = nil }, []string{"nodes: at least one node is required"}},

		// the outside world
		{"valid world server", func(s *Spec) {
			s.Segments = append(s.Segments, SegmentSpec{Name: "wan", CIDR: "192.0.2.0/24"})
			s.Routers = append(s.Routers, RouterSpec{Name: "edge", NoPodRoutes: true, Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "wan"}}})
			s.Clients = append(s.Clients, ClientSpec{Name: "world1", World: true, Interfaces: []InterfaceSpec{{Segment: "wan"}}})
		}, nil},
		{"world server on a node's segment", func(s *Spec) { s.Clients[0].World = true },
			[]string{`clients[0].interfaces[0].segment: world server "client" shares segment "a" with node "node1"`, `reached through router "r1", which knows the PodCIDRs`}},
		{"world server behind a router that knows PodCIDRs", func(s *Spec) {
			s.Segments = append(s.Segments, SegmentSpec{Name: "wan", CIDR: "192.0.2.0/24"})
			s.Routers = append(s.Routers, RouterSpec{Name: "edge", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "wan"}}})
			s.Clients = append(s.Clients, ClientSpec{Name: "world1", World: true, Interfaces: []InterfaceSpec{{Segment: "wan"}}})
		}, []string{`clients[1].interfaces[0].segment: world server "world1" is reached through router "edge", which knows the PodCIDRs (want noPodRoutes: true on it)`}},
		{"world server with pod routes", func(s *Spec) {
			s.Segments = append(s.Segments, SegmentSpec{Name: "wan", CIDR: "192.0.2.0/24"})
			s.Routers = append(s.Routers, RouterSpec{Name: "edge", NoPodRoutes: true, Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "wan"}}})
			s.Clients = append(s.Clients, ClientSpec{Name: "world1", World: true, PodRoutes: true, Interfaces: []InterfaceSpec{{Segment: "wan"}}})
		}, []string{`clients[1].podRoutes: world server "world1" cannot route PodCIDRs`}},
		{"world server without router", func(s *Spec) {
			s.Segments = append(s.Segments, SegmentSpec{Name: "wan", CIDR: "192.0.2.0/24"})
			s.Clients = append(s.Clients, ClientSpec{Name: "world1", World: true, Interfaces: []InterfaceSpec{{Segment: "wan"}}})
		}, []string{`clients[1]: world server "world1" has no router on its segments`}},

		// names
		{"uppercase name", func(s *Spec) { s.Nodes[0].Name = "Node1" }, []string{`nodes[0].name: "Node1" is invalid (want lowercase letters`}},
		{"name starts with digit", func(s *Spec) { s.Segments[0].Name = "1a" }, []string{`segments[0].name: "1a" is invalid`}},
		{"name with underscore", func(s *Spec) { s.Routers[0].Name = "r_1" }, []string{`routers[0].name: "r_1" is invalid`}},
		{"name too long", func(s *Spec) { s.Clients[0].Name = strings.Repeat("c", 25) }, []string{`clients[0].name: "ccccccccccccccccccccccccc" is invalid`, "at most 24"}},
		{"name 24 chars ok", func(s *Spec) { s.Clients[0].Name = strings.Repeat("c", 24) }, nil},
		{"empty pod name", func(s *Spec) { s.Nodes[1].Pods[0].Name = "" }, []string{"nodes[1].pods[0].name: must not be empty"}},
		{"duplicate node names", func(s *Spec) { s.Nodes[1].Name = "node1" }, []string{`nodes[1].name: "node1" is already used by nodes[0]`}},
		{"node named like segment", func(s *Spec) { s.Nodes[0].Name = "a" }, []string{`nodes[0].name: "a" is already used by segments[0]`, "one namespace of names"}},
		{"pod named like router", func(s *Spec) { s.Nodes[0].Pods[0].Name = "r1" }, []string{`routers[0].name: "r1" is already used by nodes[0].pods[0]`}},
		{"pods share name across nodes", func(s *Spec) { s.Nodes[1].Pods[0].Name = "pod1" }, []string{`nodes[1].pods[0].name: "pod1" is already used by nodes[0].pods[0]`}},
		{"client named like pod", func(s *Spec) { s.Clients[0].Name = "pod2" }, []string{`clients[0].name: "pod2" is already used by nodes[1].pods[0]`}},

		// CIDRs
		{"empty segment cidr", func(s *Spec) { s.Segments[0].CIDR = "" }, []string{"segments[0].cidr: must not be empty"}},
		{"bad cidr", func(s *Spec) { s.Segments[0].CIDR = "10.0.1.0/33" }, []string{`segments[0].cidr: "10.0.1.0/33" is not an IPv4 CIDR`}},
		{"ipv6 cidr", func(s *Spec) { s.Segments[0].CIDR = "fd00::/64" }, []string{`segments[0].cidr: "fd00::/64" is not an IPv4 CIDR`}},
		{"cidr host bits", func(s *Spec) { s.Segments[1].CIDR = "10.0.2.1/24" }, []string{"segments[1].cidr: 10.0.2.1/24 has host bits set (want the network address 10.0.2.0/24)"}},
		{"cidr too small", func(s *Spec) { s.Segments[1].CIDR = "10.0.2.0/31" }, []string{"segments[1].cidr: 10.0.2.0/31 is too small"}},
		{"bad podCIDR", func(s *Spec) { s.Nodes[0].PodCIDR = "nope" }, []string{`nodes[0].podCIDR: "nope" is not an IPv4 CIDR`}},
		{"missing podCIDR", func(s *Spec) { s.Nodes[0].PodCIDR = "" }, []string{"nodes[0].podCIDR: must not be empty"}},
		{"segments overlap", func(s *Spec) { s.Segments[1].CIDR = "10.0.0.0/16" }, []string{"segments[1].cidr: 10.0.0.0/16 overlaps segments[0].cidr 10.0.1.0/24"}},
		{"podCIDR overlaps segment", func(s *Spec) { s.Nodes[0].PodCIDR = "10.0.2.0/25" }, []string{"nodes[0].podCIDR: 10.0.2.0/25 overlaps segments[1].cidr 10.0.2.0/24"}},
		{"podCIDRs overlap", func(s *Spec) { s.Nodes[1].PodCIDR = "10.244.0.0/16" }, []string{"nodes[1].podCIDR: 10.244.0.0/16 overlaps nodes[0].podCIDR 10.244.1.0/24"}},

		// MTUs
		{"segment MTU too small", func(s *Spec) { s.Segments[0].MTU = 67 }, []string{"segments[0].mtu: 67 is out of range (want 68..65535"}},
		{"segment MTU 68 ok", func(s *Spec) { s.Segments[0].MTU = 68 }, nil},
		{"interface MTU too large", func(s *Spec) { s.Routers[0].Interfaces[1].MTU = 65536 }, []string{"routers[0].interfaces[1].mtu: 65536 is out of range"}},
		{"interface MTU 65535 ok", func(s *Spec) { s.Routers[0].Interfaces[1].MTU = 65535 }, nil},
		{"pod MTU negative", func(s *Spec) { s.Nodes[0].Pods[0].MTU = -1 }, []string{"nodes[0].pods[0].mtu: -1 is out of range"}},

		// interfaces
		{"node without interface", func(s *Spec) { s.Nodes[1].Interfaces = nil }, []string{`nodes[1].interfaces: node "node2" has no interface`}},
		{"router without interface", func(s *Spec) { s.Routers[0].Interfaces = nil }, []string{`routers[0].interfaces: router "r1" has no interface`}},
		{"client without interface", func(s *Spec) { s.Clients[0].Interfaces = nil }, []string{`clients[0].interfaces: client "client" has no interface`}},
		{"unknown segment", func(s *Spec) { s.Nodes[0].Interfaces[0].Segment = "c" }, []string{`nodes[0].interfaces[0].segment: unknown segment "c" (known: a, b)`}},
		{"interface name too long", func(s *Spec) { s.Nodes[0].Interfaces[0].Name = "averyveryverylong" }, []string{`nodes[0].interfaces[0].name: "averyveryverylong" is 17 characters long (at most 15`}},
		{"interface name 15 chars ok", func(s *Spec) { s.Nodes[0].Interfaces[0].Name = "averyveryverylo" }, nil},
		{"interface name invalid", func(s *Spec) { s.Nodes[0].Interfaces[0].Name = "eth0.100" }, []string{`nodes[0].interfaces[0].name: "eth0.100" is invalid (want letters`}},
		{"interface named lo", func(s *Spec) { s.Clients[0].Interfaces[0].Name = "lo" }, []string{`clients[0].interfaces[0].name: "lo" is the loopback device`}},
		{"node interface named lxc", func(s *Spec) { s.Nodes[0].Interfaces[0].Name = "lxc0" }, []string{`nodes[0].interfaces[0].name: "lxc0" starts with "lxc"`}},
		{"duplicate interface names", func(s *Spec) { s.Routers[0].Interfaces[0].Name = "eth1" }, []string{`routers[0].interfaces[1].name: "eth1" is already used by routers[0].interfaces[0]`}},
		{"segment attached twice", func(s *Spec) { s.Routers[0].Interfaces[1].Segment = "a" }, []string{`routers[0].interfaces[1].segment: "r1" already attaches to segment "a" through routers[0].interfaces[0]`}},

		// addresses
		{"address outside segment", func(s *Spec) { s.Nodes[0].Interfaces[0].Address = "10.0.2.9" }, []string{`nodes[0].interfaces[0].address: 10.0.2.9 is outside segment "a" CIDR 10.0.1.0/24`}},
		{"address with prefix", func(s *Spec) { s.Nodes[0].Interfaces[0].Address = "10.0.1.9/24" }, []string{`nodes[0].interfaces[0].address: "10.0.1.9/24" is not an IPv4 address`}},
		{"address is broadcast", func(s *Spec) { s.Nodes[0].Interfaces[0].Address = "10.0.1.255" }, []string{"nodes[0].interfaces[0].address: 10.0.1.255 is the network or broadcast address"}},
		{"duplicate interface address", func(s *Spec) {
			s.Routers[0].Interfaces[0].Address = "10.0.1.7"
			s.Clients[0].Interfaces[0].Address = "10.0.1.7"
		}, []string{"clients[0].interfaces[0].address: 10.0.1.7 is already used by routers[0].interfaces[0].address"}},
		{"pod address outside podCIDR", func(s *Spec) { s.Nodes[1].Pods[0].Address = "10.1.0.5" }, []string{`nodes[1].pods[0].address: 10.1.0.5 is outside node "node2" podCIDR 10.244.2.0/24`}},
		{"pod address is gateway", func(s *Spec) { s.Nodes[1].Pods[0].Address = "10.244.2.1" }, []string{`nodes[1].pods[0].address: 10.244.2.1 is the pod gateway of node "node2"`}},
		{"pod address invalid", func(s *Spec) { s.Nodes[1].Pods[0].Address = "pod" }, []string{`nodes[1].pods[0].address: "pod" is not an IPv4 address`}},
		{"duplicate pod address", func(s *Spec) {
			s.Nodes[0].Pods = append(s.Nodes[0].Pods, PodSpec{Name: "pod3", Address: "10.244.1.20"}, PodSpec{Name: "pod4", Address: "10.244.1.20"})
		}, []string{"nodes[0].pods[2].address: 10.244.1.20 is already used by nodes[0].pods[1].address"}},
		{"segment addresses exhausted", func(s *Spec) { s.Segments[0].CIDR = "10.0.1.0/30" }, []string{`clients[0].interfaces[0].address: no free address left in segment "a" 10.0.1.0/30`}},
		{"pod addresses exhausted", func(s *Spec) {
			s.Nodes[0].PodCIDR = "10.244.1.0/28" // .10 to .14
			for _, n := range []string{"p2", "p3", "p4", "p5", "p6"} {
				s.Nodes[0].Pods = append(s.Nodes[0].Pods, PodSpec{Name: n})
			}
		}, []string{`nodes[0].pods[5].address: no free address left in node "node1" podCIDR 10.244.1.0/28`}},

		// reachability
		{"unreachable without router", func(s *Spec) { s.Routers = nil }, []string{`nodes[1]: node "node2" is unreachable from node "node1"`}},
		{"nodes do not forward", func(s *Spec) {
			s.Routers = nil
			s.Segments = append(s.Segments, SegmentSpec{Name: "c", CIDR: "10.0.3.0/24"})
			s.Nodes = append(s.Nodes, NodeSpec{Name: "node3", PodCIDR: "10.244.3.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}})
		}, []string{`nodes[1]: node "node2" is unreachable from node "node1"`}},
		{"router chain reaches", func(s *Spec) {
			s.Segments = append(s.Segments, SegmentSpec{Name: "c", CIDR: "10.0.3.0/24"})
			s.Routers = append(s.Routers, RouterSpec{Name: "r2", Interfaces: []InterfaceSpec{{Segment: "b"}, {Segment: "c"}}})
			s.Nodes = append(s.Nodes, NodeSpec{Name: "node3", PodCIDR: "10.244.3.0/24", Interfaces: []InterfaceSpec{{Segment: "c"}}})
		}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := validSpec()
			tt.mutate(s)
			err := s.Validate()
			if tt.want == nil {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("want error containing %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
		})
	}
}

// Every problem is reported at once, not just the first.
func TestValidateCollectsAll(t *testing.T) {
	s := validSpec()
	s.Name = ""
	s.PodRoutes = "x"
	s.Segments[0].MTU = 1
	s.Nodes[1].Pods[0].Address = "10.1.0.5"
	s.Clients[0].Interfaces[0].Segment = "nope"
	err := s.Validate()
	if err == nil {
		t.Fatal("want errors")
	}
	var joined interface{ Unwrap() []error }
	if !errors.As(err, &joined) {
		t.Fatalf("want a joined error, got %T", err)
	}
	if n := len(joined.Unwrap()); n != 5 {
		t.Fatalf("want 5 errors, got %d:\n%v", n, err)
	}
}

func TestParseStrict(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level field", "name: x\nnodez: []\n", `unknown field "nodez"`},
		{"unknown nested field", "name: x\nsegments:\n- name: a\n  cidr: 10.0.0.0/24\n  mtux: 9000\n", `unknown field "mtux"`},
		{"duplicate key", "name: x\nname: y\n", `"name" already set`},
		{"wrong type", "name: x\nsegments: 3\n", "cannot unmarshal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("want error containing %q, got %v", tt.want, err)
			}
		})
	}
}

// The example specs parse and validate, and the copies shipped with the scenarios match.
func TestExampleSpecs(t *testing.T) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("want example specs in testdata, got %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Validate(); err != nil {
				t.Fatal(err)
			}
			if _, err := PlanRoutes(s); err != nil {
				t.Fatal(err)
			}
			want, _ := os.ReadFile(f)
			got, err := os.ReadFile(filepath.Join("catalog", filepath.Base(f)))
			if err != nil || string(got) != string(want) {
				t.Errorf("topology/catalog/%s differs from testdata (%v)", filepath.Base(f), err)
			}
		})
	}
	if _, err := Load("testdata/missing.yaml"); err == nil || !strings.Contains(err.Error(), "load topology spec") {
		t.Errorf("Load of a missing file: got %v", err)
	}
}

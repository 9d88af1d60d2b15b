// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"strings"
	"testing"
)

func bgpSpec() *Spec {
	return &Spec{
		Name: "bgp", PodNetwork: PodNetworkAgent, BGP: &BGPTopologySpec{HoldTime: 3},
		Segments: []SegmentSpec{{Name: "a", CIDR: "10.0.1.0/24"}, {Name: "b", CIDR: "10.0.2.0/24"}},
		Routers: []RouterSpec{{Name: "r1", BGP: &BGPSpec{ASN: 65000, RouteReflector: true},
			Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", BGP: &BGPSpec{ASN: 65000}, Interfaces: []InterfaceSpec{{Segment: "a"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", BGP: &BGPSpec{ASN: 65000}, Interfaces: []InterfaceSpec{{Segment: "b"}}},
		},
	}
}

func TestBGPValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(s *Spec)
		want   string // substring of the error; "" = valid
	}{
		{"valid route reflector", func(s *Spec) {}, ""},
		{"asn missing", func(s *Spec) { s.Nodes[0].BGP.ASN = 0 }, "nodes[0].bgp.asn: 0 is out of range"},
		{"unknown daemon", func(s *Spec) { s.Routers[0].BGP.Daemon = "quagga" }, `routers[0].bgp.daemon: "quagga" is not one of bird`},
		{"node daemon", func(s *Spec) { s.Nodes[1].BGP.Daemon = "bird" }, "nodes[1].bgp.daemon: a node's BGP speaker is its agent"},
		{"static pod routes", func(s *Spec) { s.PodRoutes = PodRoutesAll }, `podRoutes: "all" installs PodCIDR routes statically`},
		{"reflector without clients", func(s *Spec) { s.Nodes[0].BGP.ASN, s.Nodes[1].BGP.ASN = 65001, 65002 }, "routers[0].bgp.routeReflector: no BGP node"},
		{"kernel pod network", func(s *Spec) { s.PodNetwork = PodNetworkKernel }, "nodes[0].bgp: needs podNetwork: agent"},
		{"hold time", func(s *Spec) { s.BGP.HoldTime = 2 }, "bgp.holdTime: 2 is out of range"},
		{"bgp block alone", func(s *Spec) { s.Routers[0].BGP, s.Nodes[0].BGP, s.Nodes[1].BGP = nil, nil, nil }, "bgp: no router or node has a bgp block"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bgpSpec()
			tt.mutate(s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestBGPResolveAndPlan(t *testing.T) {
	r, err := bgpSpec().Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if r.PodRoutes != PodRoutesNone || r.Routers[0].BGP.Daemon != BGPDaemonBIRD || r.BGP.KeepaliveTime != 1 {
		t.Fatalf("resolved podRoutes %q daemon %q keepalive %d, want none, bird, 1", r.PodRoutes, r.Routers[0].BGP.Daemon, r.BGP.KeepaliveTime)
	}
	plan, err := PlanRoutes(r)
	if err != nil {
		t.Fatal(err)
	}
	for host, routes := range plan {
		for _, rt := range routes {
			if strings.HasPrefix(rt.Dst.String(), "10.244.") {
				t.Errorf("%s has a static PodCIDR route %s: BGP distributes them", host, rt)
			}
		}
	}
}

func TestBGPNeighborsAndBIRDConfig(t *testing.T) {
	tests := []struct {
		name     string
		mutate   func(s *Spec)
		member   string
		peers    []string // name@address asn
		confHas  []string
		confLack []string
	}{
		{"reflector: router side", func(s *Spec) {}, "r1", []string{"node1@10.0.1.2", "node2@10.0.2.2"},
			[]string{"local as 65000;", "hold time 3;", "keepalive time 1;", "neighbor 10.0.1.2 as 65000;", "local 10.0.2.1 as 65000;", "rr client;", "merge paths on;"}, nil},
		{"reflector: node side", func(s *Spec) {}, "node1", []string{"r1@10.0.1.1"}, nil, nil},
		{"ebgp: no reflection", func(s *Spec) {
			s.Routers[0].BGP.RouteReflector = false
			s.Nodes[0].BGP.ASN, s.Nodes[1].BGP.ASN = 65001, 65002
		}, "r1", []string{"node1@10.0.1.2", "node2@10.0.2.2"}, []string{"neighbor 10.0.2.2 as 65002;"}, []string{"rr client"}},
		{"node mesh", func(s *Spec) { s.Routers[0].BGP.RouteReflector = false; s.BGP.NodeMesh = true }, "node1",
			[]string{"r1@10.0.1.1", "node2@10.0.2.2"}, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := bgpSpec()
			tt.mutate(s)
			r, err := s.Resolve()
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range r.BGPNeighbors(tt.member) {
				got = append(got, p.Name+"@"+p.Address.String())
			}
			if strings.Join(got, ",") != strings.Join(tt.peers, ",") {
				t.Errorf("BGPNeighbors(%s) = %v, want %v", tt.member, got, tt.peers)
			}
			if tt.member != "r1" {
				return
			}
			conf, err := BIRDConfig(r, "r1")
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.confHas {
				if !strings.Contains(conf, w) {
					t.Errorf("config lacks %q:\n%s", w, conf)
				}
			}
			for _, w := range tt.confLack {
				if strings.Contains(conf, w) {
					t.Errorf("config has %q:\n%s", w, conf)
				}
			}
		})
	}
}

// FRR's configuration: zebra gets only the common head (it refuses bgpd's lines);
// bgpd gets the sessions with the topology's timers, reflector clients, eBGP without a
// policy, and ECMP across neighbour ASes.
func TestFRRConfig(t *testing.T) {
	s := bgpSpec()
	s.Routers[0].BGP.Daemon = BGPDaemonFRR
	r, err := s.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	zebra, bgpd, err := FRRConfig(r, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(zebra, "router bgp") {
		t.Errorf("zebra's config holds bgpd's lines:\n%s", zebra)
	}
	for _, w := range []string{"router bgp 65000\n", "timers bgp 1 3\n", "neighbor 10.0.1.2 remote-as 65000\n", "neighbor 10.0.2.2 update-source 10.0.2.1\n",
		"neighbor 10.0.1.2 route-reflector-client\n", "no bgp ebgp-requires-policy\n", "bgp bestpath as-path multipath-relax\n", "maximum-paths 8\n"} {
		if !strings.Contains(bgpd, w) {
			t.Errorf("bgpd's config lacks %q:\n%s", w, bgpd)
		}
	}
	if _, _, err := FRRConfig(r, "node1"); err == nil {
		t.Error("FRRConfig of a node: no error")
	}
	if RouteProto(BGPDaemonFRR) != "bgp" || RouteProto(BGPDaemonBIRD) != "bird" {
		t.Error("RouteProto")
	}
}

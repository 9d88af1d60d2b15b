// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestBGPPeeringPolicyValidate(t *testing.T) {
	good := func() BGPPeeringPolicy {
		return BGPPeeringPolicy{VirtualRouters: []BGPVirtualRouter{{
			LocalASN: 65001, ExportPodCIDR: true, ServiceAdvertisements: []string{"LoadBalancerIP"},
			Neighbors: []BGPNeighbor{{PeerAddress: "10.0.1.1/32", PeerASN: 65000, HoldTimeSeconds: 3, KeepAliveTimeSeconds: 1,
				Families: []BGPFamily{{Afi: "ipv4", Safi: "unicast"}}}},
		}}}
	}
	tests := []struct {
		name   string
		mutate func(p *BGPPeeringPolicy)
		want   string
	}{
		{"valid", func(p *BGPPeeringPolicy) {}, ""},
		{"no router", func(p *BGPPeeringPolicy) { p.VirtualRouters = nil }, "virtualRouters: 0 given"},
		{"local asn", func(p *BGPPeeringPolicy) { p.VirtualRouters[0].LocalASN = 0 }, "virtualRouters[0].localASN: required"},
		{"peer address", func(p *BGPPeeringPolicy) { p.VirtualRouters[0].Neighbors[0].PeerAddress = "10.0.1.0/24" }, "neighbors[0].peerAddress"},
		{"peer asn", func(p *BGPPeeringPolicy) { p.VirtualRouters[0].Neighbors[0].PeerASN = 0 }, "neighbors[0].peerASN: required"},
		{"hold time", func(p *BGPPeeringPolicy) { p.VirtualRouters[0].Neighbors[0].HoldTimeSeconds = 1 }, "holdTimeSeconds: 1"},
		{"family", func(p *BGPPeeringPolicy) { p.VirtualRouters[0].Neighbors[0].Families[0].Afi = "ipv6" }, "ipv4/unicast only"},
		{"advertisement", func(p *BGPPeeringPolicy) { p.VirtualRouters[0].ServiceAdvertisements = []string{"ClusterIP"} }, `"ClusterIP" is not one of`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := good()
			tt.mutate(&p)
			err := p.Validate()
			if (tt.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestBGPServiceSelection(t *testing.T) {
	lb := Service{Name: "lb", Type: "LoadBalancer"}
	lb.ExternalIPs = append(lb.ExternalIPs, netip.MustParseAddr("10.96.100.100"))
	np := Service{Name: "np", Type: "NodePort"}
	np.ExternalIPs = append(np.ExternalIPs, netip.MustParseAddr("10.96.100.101"))
	tests := []struct {
		adv  []string
		want string
	}{
		{nil, ""},
		{[]string{BGPAdvertiseLoadBalancerIP}, "10.96.100.100/32"},
		{[]string{BGPAdvertiseExternalIP}, "10.96.100.100/32 10.96.100.101/32"},
	}
	for _, tt := range tests {
		var got []string
		for _, p := range servicePrefixes(&BGPPeeringPolicy{VirtualRouters: []BGPVirtualRouter{{ServiceAdvertisements: tt.adv}}}, []Service{lb, np}) {
			got = append(got, p.String())
		}
		if strings.Join(got, " ") != tt.want {
			t.Errorf("advertisements %v: announced %v, want %q", tt.adv, got, tt.want)
		}
	}
}

// TestBGPServicesBeforePolicy: a starting agent hands its services to the speaker while
// the speaker applies its saved policy, in either order. Services handed over first
// (no policy yet) must still be announced once the policy is there: deciding the
// selection when the services arrived left a restarted agent's LoadBalancer IP
// unannounced until the next service change (bgp-native's flaky "restarted agent
// brings its path back").
func TestBGPServicesBeforePolicy(t *testing.T) {
	lb := Service{Name: "lb", Type: "LoadBalancer"}
	lb.ExternalIPs = append(lb.ExternalIPs, netip.MustParseAddr("10.96.100.100"))
	s := &bgpSpeaker{announced: map[netip.Prefix][]byte{}}
	if err := s.setServices(context.Background(), []Service{lb}); err != nil {
		t.Fatal(err)
	}
	s.policy = &BGPPeeringPolicy{VirtualRouters: []BGPVirtualRouter{{ServiceAdvertisements: []string{BGPAdvertiseLoadBalancerIP}}}}
	if got := servicePrefixes(s.policy, s.services); len(got) != 1 || got[0] != netip.MustParsePrefix("10.96.100.100/32") {
		t.Fatalf("services handed over before the policy: selected %v, want [10.96.100.100/32]", got)
	}
}

func TestPrintBGPPeers(t *testing.T) {
	var b strings.Builder
	s := Status{Node: "node1", BGPPeers: []BGPPeerStatus{
		{LocalASN: 65001, Peer: "10.0.1.1", PeerASN: 65000, State: "established", Since: time.Now().Add(-90 * time.Second), Family: "ipv4/unicast", Received: 2, Advertised: 1},
		{LocalASN: 65001, Peer: "10.0.1.9", PeerASN: 65009, State: "active", Family: "ipv4/unicast"},
	}, BGPRoutes: []BGPRoute{{Prefix: netip.MustParsePrefix("10.244.2.0/24"), NextHop: netip.MustParseAddr("10.0.2.2"), Via: netip.MustParseAddr("10.0.1.1"), Peer: "10.0.1.1"}}}
	s.Print(&b)
	for _, want := range []string{
		"Local AS   Peer AS    Peer Address     Session      Uptime     Family         Received  Advertised",
		"65001      65000      10.0.1.1:179     established  1m30s      ipv4/unicast   2         1",
		"65001      65009      10.0.1.9:179     active       -",
		"BGP route:               10.244.2.0/24 via 10.0.1.1 (next hop 10.0.2.2 from 10.0.1.1)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}

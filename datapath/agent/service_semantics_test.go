// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"podpath/datapath/maps"
)

func TestServiceSemanticsValidate(t *testing.T) {
	base := Service{Name: "web", Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: "TCP", NodePort: 30080}
	tests := []struct {
		name   string
		mutate func(s *Service)
		err    string
	}{
		{"defaults", func(*Service) {}, ""},
		{"ETP Local with a health check port", func(s *Service) { s.ExternalTrafficPolicy, s.HealthCheckNodePort = "Local", 32000 }, ""},
		{"health check port without ETP Local", func(s *Service) { s.HealthCheckNodePort = 32000 }, "healthCheckNodePort"},
		{"bad policy", func(s *Service) { s.InternalTrafficPolicy = "local" }, "internalTrafficPolicy"},
		{"bad affinity", func(s *Service) { s.SessionAffinity = "Cookie" }, "sessionAffinity"},
		{"timeout over a day", func(s *Service) { s.SessionAffinity, s.SessionAffinityTimeout = "ClientIP", 86401 }, "TimeoutSeconds"},
		{"IPv6 source range", func(s *Service) { s.LoadBalancerSourceRanges = []netip.Prefix{netip.MustParsePrefix("2001:db8::/32")} }, "loadBalancerSourceRanges[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := base
			tt.mutate(&s)
			err := s.validate()
			if (tt.err == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), tt.err) {
				t.Errorf("validate() = %v, want %q", err, tt.err)
			}
		})
	}
}

func TestBackendSetFor(t *testing.T) {
	cidr := netip.MustParsePrefix("10.244.1.0/24")
	b := func(ip, state string) ServiceBackend {
		return ServiceBackend{IP: netip.MustParseAddr(ip), Port: 80, State: state}
	}
	s := Service{Name: "web", Protocol: "TCP"}
	ids := func(bs ...ServiceBackend) []uint32 {
		var out []uint32
		for _, x := range bs {
			out = append(out, backendID(&s, x))
		}
		return out
	}
	l1, l2, r1 := b("10.244.1.5", ""), b("10.244.1.6", "terminating"), b("10.244.2.5", "")
	tests := []struct {
		name     string
		backends []ServiceBackend
		local    bool
		want     []uint32
		fallback bool
	}{
		{"cluster: the active ones", []ServiceBackend{l1, l2, r1}, false, ids(l1, r1), false},
		{"local: this node's active ones", []ServiceBackend{l1, l2, r1}, true, ids(l1), false},
		{"local, none active here: the terminating one (fallback)", []ServiceBackend{l2, r1}, true, ids(l2), true},
		{"only terminating: fallback", []ServiceBackend{l2}, false, ids(l2), true},
		{"maintenance never", []ServiceBackend{b("10.244.1.7", "maintenance")}, false, nil, false},
		{"local, none here", []ServiceBackend{r1}, true, nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Backends = tt.backends
			set := s.backendSetFor(tt.local, cidr, "")
			if !slices.Equal(set.ids, tt.want) || set.fallback != tt.fallback {
				t.Errorf("set %v fallback %v, want %v %v", set.ids, set.fallback, tt.want, tt.fallback)
			}
			// The Maglev table is built from the same backends, each with a weight.
			var mids []uint32
			for _, m := range set.maglev {
				mids = append(mids, m.ID)
				if m.Weight == 0 {
					t.Errorf("maglev backend %d has weight 0", m.ID)
				}
			}
			if !slices.Equal(mids, tt.want) {
				t.Errorf("maglev backends %v, want %v (a terminating one only as the fallback)", mids, tt.want)
			}
			if tt.local == (set.id == stableID("service web")) {
				t.Errorf("local %v: service id %d", tt.local, set.id)
			}
		})
	}
	if (&Service{SessionAffinity: "ClientIP"}).affinityTimeout() != DefaultAffinityTimeout {
		t.Error("ClientIP without timeoutSeconds: want the default 10800")
	}
	cip := maps.Service{Flags: maps.ServiceClusterIP}
	np := maps.Service{Flags: maps.ServiceNodePort}
	e := Service{ExternalTrafficPolicy: "Local"}
	if e.localFrontend(cip) || !e.localFrontend(np) {
		t.Error("ETP Local: want the NodePort frontend local, the ClusterIP not")
	}
	i := Service{InternalTrafficPolicy: "Local"}
	if !i.localFrontend(cip) || i.localFrontend(np) {
		t.Error("ITP Local: want the ClusterIP frontend local, the NodePort not")
	}
}

func TestHealthSplitName(t *testing.T) {
	for in, want := range map[string][2]string{
		"web.shop.80-tcp": {"shop", "web"}, "etp-local": {"default", "etp-local"}, "a.b.c.kube-system.53-udp": {"kube-system", "a.b.c"},
	} {
		if ns, n := splitName(in); ns != want[0] || n != want[1] {
			t.Errorf("splitName(%q) = %q, %q; want %q", in, ns, n, want)
		}
	}
}

// TestRemovedBackends: a backend a service no longer lists is deleted unless another
// service still has it (backends are shared by address, port and protocol).
func TestRemovedBackends(t *testing.T) {
	be := func(ip string, port uint16) ServiceBackend {
		return ServiceBackend{IP: netip.MustParseAddr(ip), Port: port}
	}
	svc := func(name string, bs ...ServiceBackend) Service {
		return Service{Name: name, Protocol: "UDP", Backends: bs}
	}
	oldPod, newPod, shared := be("10.244.1.11", 8080), be("10.244.2.12", 8080), be("10.244.2.13", 8080)
	id := func(b ServiceBackend) uint32 { s := svc("x"); return backendID(&s, b) }
	for _, tc := range []struct {
		name string
		prev map[string]Service
		all  []Service
		want []uint32
	}{
		{"a new service removes nothing", nil, []Service{svc("a", oldPod)}, nil},
		{"the server pod replaced: the old one goes", map[string]Service{"a": svc("a", oldPod)},
			[]Service{svc("a", newPod)}, []uint32{id(oldPod)}},
		{"unchanged backends stay", map[string]Service{"a": svc("a", oldPod, newPod)},
			[]Service{svc("a", newPod, oldPod)}, nil},
		{"a backend another service still has stays", map[string]Service{"a": svc("a", oldPod, shared)},
			[]Service{svc("a", newPod), svc("b", shared)}, []uint32{id(oldPod)}},
		{"the same address over TCP is another backend", map[string]Service{"a": svc("a", oldPod)},
			[]Service{{Name: "a", Protocol: "TCP", Backends: []ServiceBackend{oldPod}}}, []uint32{id(oldPod)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := removedBackends(tc.prev, tc.all); !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestTopologyBackendSet: enable-service-topology narrows a node's cluster set to
// the backends hinted for its zone, as kube-proxy does: all of them when the node
// has no zone, when any backend lacks hints, or when none is hinted for the zone;
// Local sets are never narrowed; terminating backends follow the same rule.
func TestTopologyBackendSet(t *testing.T) {
	cidr := netip.MustParsePrefix("10.244.1.0/24")
	s := &Service{Name: "web", Protocol: "TCP"}
	b := func(ip string, zones ...string) ServiceBackend {
		return ServiceBackend{IP: netip.MustParseAddr(ip), Port: 80, Zones: zones}
	}
	a1, a2, b1 := b("10.244.1.5", "a"), b("10.244.2.5", "a"), b("10.244.3.5", "b")
	unhinted := b("10.244.3.6")
	ids := func(bs ...ServiceBackend) []uint32 {
		var out []uint32
		for _, x := range bs {
			out = append(out, backendID(s, x))
		}
		return out
	}
	tests := []struct {
		name     string
		backends []ServiceBackend
		zone     string
		local    bool
		want     []uint32
	}{
		{"zone a: the backends hinted for a", []ServiceBackend{a1, a2, b1}, "a", false, ids(a1, a2)},
		{"zone b: the one hinted for b", []ServiceBackend{a1, a2, b1}, "b", false, ids(b1)},
		{"topology off (no zone): all", []ServiceBackend{a1, a2, b1}, "", false, ids(a1, a2, b1)},
		{"zone c has none: all (fallback)", []ServiceBackend{a1, a2, b1}, "c", false, ids(a1, a2, b1)},
		{"one backend without hints: hints ignored", []ServiceBackend{a1, b1, unhinted}, "b", false, ids(a1, b1, unhinted)},
		{"local set: this node's, not narrowed", []ServiceBackend{a1, b1}, "b", true, ids(a1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s.Backends = tt.backends
			if set := s.backendSetFor(tt.local, cidr, tt.zone); !slices.Equal(set.ids, tt.want) {
				t.Errorf("set %v, want %v", set.ids, tt.want)
			}
		})
	}
}

// TestTopologyWarnings: hints a node will not follow are said, not ignored silently.
func TestTopologyWarnings(t *testing.T) {
	hinted := &Service{Name: "web", Backends: []ServiceBackend{{Zones: []string{"a"}}}}
	prefer := &Service{Name: "web", TrafficDistribution: "PreferClose"}
	plain := &Service{Name: "web", Backends: []ServiceBackend{{}}}
	tests := []struct {
		name    string
		s       *Service
		enabled bool
		zone    string
		want    string
	}{
		{"hints, key off", hinted, false, "a", "enable-service-topology is false"},
		{"PreferClose, node without zone", prefer, true, "", "has no zone"},
		{"hints followed", hinted, true, "a", ""},
		{"no hints", plain, false, "", ""},
	}
	for _, tt := range tests {
		got := tt.s.TopologyWarnings(tt.enabled, tt.zone)
		if (tt.want == "") != (len(got) == 0) || (tt.want != "" && !strings.Contains(got[0], tt.want)) {
			t.Errorf("%s: warnings %q, want one containing %q", tt.name, got, tt.want)
		}
	}
	bad := &Service{Name: "web", Type: "ClusterIP", Protocol: "TCP", ClusterIP: netip.MustParseAddr("10.96.0.1"), Port: 80, TrafficDistribution: "PreferSameNode"}
	if err := bad.validate(); err == nil || !strings.Contains(err.Error(), "trafficDistribution") {
		t.Errorf("trafficDistribution PreferSameNode: error %v, want one naming the field", err)
	}
}

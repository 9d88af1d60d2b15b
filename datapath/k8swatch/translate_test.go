// SPDX-License-Identifier: Apache-2.0

package k8swatch

import (
	"net/netip"
	"reflect"
	"regexp"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"podpath/datapath/agent"
	"podpath/datapath/k8swatch/k8stest"
)

func TestNodeFromK8s(t *testing.T) {
	tests := []struct {
		name string
		n    *corev1.Node
		want agent.Node
		err  string
	}{
		{"kind worker", k8stest.Node("c-worker", "10.244.1.0/24", corev1.NodeAddress{Type: corev1.NodeHostName, Address: "c-worker"}, k8stest.InternalIP("172.18.0.3")),
			agent.Node{Name: "c-worker", IP: netip.MustParseAddr("172.18.0.3"), PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}, ""},
		{"IPv4 of a dual-stack node", func() *corev1.Node {
			n := k8stest.Node("ds", "", k8stest.InternalIP("fc00::3"), k8stest.InternalIP("172.18.0.4"))
			n.Spec.PodCIDR, n.Spec.PodCIDRs = "fd00:10:244::/64", []string{"fd00:10:244::/64", "10.244.2.0/24"}
			return n
		}(), agent.Node{Name: "ds", IP: netip.MustParseAddr("172.18.0.4"), PodCIDR: netip.MustParsePrefix("10.244.2.0/24")}, ""},
		{"ExternalIP when no InternalIP", k8stest.Node("e", "10.244.3.0/24", corev1.NodeAddress{Type: corev1.NodeExternalIP, Address: "203.0.113.7"}),
			agent.Node{Name: "e", IP: netip.MustParseAddr("203.0.113.7"), PodCIDR: netip.MustParsePrefix("10.244.3.0/24")}, ""},
		{"no PodCIDR yet", k8stest.Node("p", "", k8stest.InternalIP("172.18.0.5")), agent.Node{}, "no IPv4 spec.podCIDR yet"},
		{"no address", k8stest.Node("a", "10.244.4.0/24"), agent.Node{}, "no IPv4 InternalIP or ExternalIP yet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NodeFromK8s(tt.n)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err = %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("NodeFromK8s = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func backend(ip string, port uint16, state string) agent.ServiceBackend {
	return agent.ServiceBackend{IP: netip.MustParseAddr(ip), Port: port, State: state}
}

func TestServicesFromK8s(t *testing.T) {
	vip := netip.MustParseAddr("10.96.0.10")
	web := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Type: corev1.ServiceTypeNodePort, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			ExternalIPs: []string{"192.0.2.9", "2001:db8::9"},
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, NodePort: 30080},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053},
				{Name: "sctp", Protocol: corev1.ProtocolSCTP, Port: 9, NodePort: 30009},
			},
		},
	}
	slices := []*discoveryv1.EndpointSlice{
		k8stest.Slice("web", []discoveryv1.EndpointPort{k8stest.EndpointPort("http", 8080, corev1.ProtocolTCP), k8stest.EndpointPort("dns", 5353, corev1.ProtocolUDP)},
			k8stest.Endpoint("10.244.1.11", nil, nil, nil),                      // no conditions: ready
			k8stest.Endpoint("10.244.2.10", new(true), new(true), new(false)),   // ready
			k8stest.Endpoint("10.244.2.11", new(false), new(true), new(true)),   // terminating, still serving
			k8stest.Endpoint("10.244.2.12", new(false), new(false), new(true)),  // terminating, not serving
			k8stest.Endpoint("10.244.2.13", new(false), new(false), new(false)), // not ready
		),
		// The same endpoint in a second slice, and an IPv6 slice: counted once, ignored.
		k8stest.Slice("web", []discoveryv1.EndpointPort{k8stest.EndpointPort("http", 8080, corev1.ProtocolTCP)}, k8stest.Endpoint("10.244.1.11", new(true), nil, nil)),
		{AddressType: discoveryv1.AddressTypeIPv6, Ports: []discoveryv1.EndpointPort{k8stest.EndpointPort("http", 8080, corev1.ProtocolTCP)},
			Endpoints: []discoveryv1.Endpoint{k8stest.Endpoint("fd00::1", nil, nil, nil)}},
	}
	got, notes := ServicesFromK8s(web, slices)
	ext := []netip.Addr{netip.MustParseAddr("192.0.2.9")}
	want := []agent.Service{
		{Name: "web.default.80-tcp", Type: "NodePort", ClusterIP: vip, Port: 80, Protocol: "TCP", NodePort: 30080, ExternalIPs: ext,
			Backends:    []agent.ServiceBackend{backend("10.244.1.11", 8080, ""), backend("10.244.2.10", 8080, ""), backend("10.244.2.11", 8080, "terminating")},
			Unsupported: []string{"externalIPs 2001:db8::9 (IPv4 only)"}},
		{Name: "web.default.53-udp", Type: "NodePort", ClusterIP: vip, Port: 53, Protocol: "UDP", NodePort: 30053, ExternalIPs: ext,
			Backends:    []agent.ServiceBackend{backend("10.244.1.11", 5353, ""), backend("10.244.2.10", 5353, ""), backend("10.244.2.11", 5353, "terminating")},
			Unsupported: []string{"externalIPs 2001:db8::9 (IPv4 only)"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ServicesFromK8s =\n%+v\nwant\n%+v", got, want)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], "port 9/SCTP: podpath balances TCP and UDP only") {
		t.Errorf("notes = %q", notes)
	}

	tests := []struct {
		name   string
		mutate func(s *corev1.Service)
		check  func(t *testing.T, got []agent.Service, notes []string)
	}{
		{"ClusterIP, unnamed port, no slices", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalIPs = corev1.ServiceTypeClusterIP, nil
			s.Spec.Ports = []corev1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 443}}
		}, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 1 || got[0].Name != "web.default.443-tcp" || got[0].Type != "ClusterIP" || got[0].NodePort != 0 || len(got[0].Backends) != 0 {
				t.Errorf("got %+v", got)
			}
		}},
		{"LoadBalancer: ingress IPs are external frontends", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.Ports = corev1.ServiceTypeLoadBalancer, s.Spec.Ports[:1]
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1"}, {Hostname: "lb.example"}}
		}, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 1 || got[0].Type != "LoadBalancer" || got[0].NodePort != 30080 ||
				!reflect.DeepEqual(got[0].ExternalIPs, []netip.Addr{netip.MustParseAddr("192.0.2.9"), netip.MustParseAddr("198.51.100.1")}) {
				t.Errorf("got %+v", got)
			}
		}},
		{"LoadBalancer without node ports", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.Ports = corev1.ServiceTypeLoadBalancer, []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80}}
		}, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 1 || got[0].Type != "ClusterIP" || got[0].NodePort != 0 || len(got[0].ExternalIPs) != 1 {
				t.Errorf("got %+v", got)
			}
		}},
		{"headless", func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = corev1.ClusterIPNone, nil }, func(t *testing.T, got []agent.Service, notes []string) {
			if len(got) != 0 || len(notes) != 0 {
				t.Errorf("got %+v %q", got, notes)
			}
		}},
		{"ExternalName", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 0 {
				t.Errorf("got %+v", got)
			}
		}},
		{"IPv6 only", func(s *corev1.Service) { s.Spec.ClusterIP, s.Spec.ClusterIPs = "fd00:96::a", []string{"fd00:96::a"} }, func(t *testing.T, got []agent.Service, notes []string) {
			if len(got) != 0 || len(notes) != 1 || !strings.Contains(notes[0], "no IPv4 cluster IP") {
				t.Errorf("got %+v %q", got, notes)
			}
		}},
		{"service semantics: traffic policies, health check port, affinity, source ranges", func(s *corev1.Service) {
			local, timeout := corev1.ServiceInternalTrafficPolicyLocal, int32(60)
			s.Spec.ExternalIPs = s.Spec.ExternalIPs[:1] // IPv4 only: the warnings here are the ranges'
			s.Spec.Ports = s.Spec.Ports[:1]
			s.Spec.ExternalTrafficPolicy, s.Spec.HealthCheckNodePort = corev1.ServiceExternalTrafficPolicyLocal, 32000
			s.Spec.InternalTrafficPolicy = &local
			s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
			s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: &timeout}}
			s.Spec.LoadBalancerSourceRanges = []string{"10.0.0.0/8", " 192.0.2.1/24", "2001:db8::/32", "bogus"}
		}, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 1 {
				t.Fatalf("got %+v", got)
			}
			g := got[0]
			wantRanges := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("192.0.2.0/24")}
			if g.ExternalTrafficPolicy != "Local" || g.HealthCheckNodePort != 32000 || g.InternalTrafficPolicy != "Local" ||
				g.SessionAffinity != "ClientIP" || g.SessionAffinityTimeout != 60 || !reflect.DeepEqual(g.LoadBalancerSourceRanges, wantRanges) {
				t.Errorf("got %+v", g)
			}
			if len(g.Unsupported) != 2 || len(g.Warnings()) != 2 || !strings.Contains(g.Warnings()[0], "IPv6") {
				t.Errorf("unsupported %q, warnings %q: want the IPv6 and the bogus range", g.Unsupported, g.Warnings())
			}
		}},
		{"unsupported spec fields are warned about, not ignored", func(s *corev1.Service) {
			td, pol := "PreferSameNode", corev1.IPFamilyPolicyRequireDualStack
			s.Spec.ExternalIPs = s.Spec.ExternalIPs[:1] // IPv4 only: the warnings here are the fields'
			s.Spec.Ports = s.Spec.Ports[:1]
			s.Spec.TrafficDistribution, s.Spec.IPFamilyPolicy = &td, &pol
		}, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 1 || len(got[0].Warnings()) != 2 {
				t.Fatalf("got %+v, warnings %q", got, got[0].Warnings())
			}
			for i, w := range []string{"trafficDistribution PreferSameNode", "RequireDualStack"} {
				if !strings.Contains(got[0].Warnings()[i], w) || !strings.Contains(got[0].Warnings()[i], "not implemented by podpath") {
					t.Errorf("warning %d %q: want %q", i, got[0].Warnings()[i], w)
				}
			}
		}},
		{"addresses podpath does not balance are warned about: the IPv6 family, hostname and ipMode Proxy ingress", func(s *corev1.Service) {
			proxy, vip := corev1.LoadBalancerIPModeProxy, corev1.LoadBalancerIPModeVIP
			s.Spec.Type, s.Spec.Ports = corev1.ServiceTypeLoadBalancer, s.Spec.Ports[:1]
			s.Spec.ClusterIPs, s.Spec.ExternalIPs = []string{"10.96.0.10", "fd00::10"}, nil
			s.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "198.51.100.1", IPMode: &vip},
				{IP: "198.51.100.2", IPMode: &proxy}, {Hostname: "lb.example"}, {IP: "2001:db8::1"}}
		}, func(t *testing.T, got []agent.Service, _ []string) {
			want := []string{"clusterIPs fd00::10 (only IPv4 10.96.0.10 is balanced)",
				"status.loadBalancer.ingress 198.51.100.2 ipMode Proxy (balanced here as VIP)",
				"status.loadBalancer.ingress hostname lb.example (no IP to balance)",
				"status.loadBalancer.ingress 2001:db8::1 (IPv4 only)"}
			if len(got) != 1 || !reflect.DeepEqual(got[0].Unsupported, want) {
				t.Fatalf("got %+v\nwant unsupported %q", got, want)
			}
			if w := got[0].Warnings(); len(w) != 4 || !strings.Contains(w[0], "not implemented by podpath") {
				t.Errorf("warnings %q", w)
			}
			wantExt := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2")}
			if !reflect.DeepEqual(got[0].ExternalIPs, wantExt) {
				t.Errorf("external frontends %v, want %v", got[0].ExternalIPs, wantExt)
			}
		}},
		{"trafficDistribution PreferClose is taken, not warned about", func(s *corev1.Service) {
			td := "PreferClose"
			s.Spec.Ports, s.Spec.TrafficDistribution = s.Spec.Ports[:1], &td
			s.Spec.ExternalIPs = s.Spec.ExternalIPs[:1] // IPv4 only: the IPv6 one is warned about
		}, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 1 || got[0].TrafficDistribution != "PreferClose" || len(got[0].Warnings()) != 0 {
				t.Errorf("got %+v, warnings %q", got, got[0].Warnings())
			}
		}},
		{"externalTrafficPolicy is left out of a ClusterIP service", func(s *corev1.Service) {
			s.Spec.Type, s.Spec.ExternalIPs, s.Spec.Ports = corev1.ServiceTypeClusterIP, nil, s.Spec.Ports[:1]
			s.Spec.ExternalTrafficPolicy = corev1.ServiceExternalTrafficPolicyLocal
		}, func(t *testing.T, got []agent.Service, _ []string) {
			if len(got) != 1 || got[0].ExternalTrafficPolicy != "" || got[0].HealthCheckNodePort != 0 {
				t.Errorf("got %+v", got)
			}
		}},
		{"another proxy's", func(s *corev1.Service) { s.Labels = map[string]string{LabelServiceProxyName: "other"} }, func(t *testing.T, got []agent.Service, notes []string) {
			if len(got) != 0 || len(notes) != 1 {
				t.Errorf("got %+v %q", got, notes)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := web.DeepCopy()
			tt.mutate(s)
			got, notes := ServicesFromK8s(s, nil)
			tt.check(t, got, notes)
		})
	}
}

// TestServiceHintsFromK8s: an EndpointSlice's hints.forZones become the backend's
// zones (topology-aware routing); an endpoint without hints has none.
func TestServiceHintsFromK8s(t *testing.T) {
	hinted := k8stest.Endpoint("10.244.1.11", nil, nil, nil)
	hinted.Hints = &discoveryv1.EndpointHints{ForZones: []discoveryv1.ForZone{{Name: "zone-a"}, {Name: "zone-b"}}}
	sl := k8stest.Slice("web", []discoveryv1.EndpointPort{k8stest.EndpointPort("http", 8080, corev1.ProtocolTCP)},
		hinted, k8stest.Endpoint("10.244.2.10", nil, nil, nil))
	svc := k8stest.WebService(80)
	got, _ := ServicesFromK8s(svc, []*discoveryv1.EndpointSlice{sl})
	if len(got) != 1 || len(got[0].Backends) != 2 {
		t.Fatalf("got %+v", got)
	}
	if z := got[0].Backends[0].Zones; !reflect.DeepEqual(z, []string{"zone-a", "zone-b"}) {
		t.Errorf("hinted backend zones %q, want [zone-a zone-b]", z)
	}
	if z := got[0].Backends[1].Zones; z != nil {
		t.Errorf("unhinted backend zones %q, want none", z)
	}
}

func TestServiceName(t *testing.T) {
	if got := ServiceName("default", "web", 80, corev1.ProtocolTCP); got != "web.default.80-tcp" {
		t.Errorf("ServiceName = %q", got)
	}
	long := ServiceName(strings.Repeat("n", 40), strings.Repeat("s", 40), 8080, corev1.ProtocolUDP)
	other := ServiceName(strings.Repeat("n", 40), strings.Repeat("s", 40), 8081, corev1.ProtocolUDP)
	if len(long) > 63 || long == other || !strings.HasPrefix(long, strings.Repeat("s", 40)+".") {
		t.Errorf("long names %q, %q: want distinct, at most 63 characters", long, other)
	}
	// The agent's name rule (agent.Service.validate).
	agentName := regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)
	for _, n := range []string{long, other, ServiceName("kube-system", "kube-dns", 53, corev1.ProtocolUDP)} {
		if !agentName.MatchString(n) {
			t.Errorf("%q is not a valid agent service name", n)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package k8swatch

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"podpath/datapath/agent"
)

// LabelServiceProxyName on a Service hands it to another proxy: kube-proxy, Cilium
// and podpath leave such services alone.
const LabelServiceProxyName = "service.kubernetes.io/service-proxy-name"

// NodeFromK8s translates a Node: its name, its IPv4 InternalIP (else ExternalIP) and
// its IPv4 PodCIDR. A node without one of them is not ready for the agent: the error
// says what is missing (Up sets the PodCIDRs of kind nodes after they register).
func NodeFromK8s(n *corev1.Node) (agent.Node, error) {
	out := agent.Node{Name: n.Name}
	for _, want := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP} {
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); a.Type == want && err == nil && ip.Is4() && !out.IP.IsValid() {
				out.IP = ip
			}
		}
	}
	for _, s := range append([]string{n.Spec.PodCIDR}, n.Spec.PodCIDRs...) {
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr().Is4() && !out.PodCIDR.IsValid() {
			out.PodCIDR = p
		}
	}
	switch {
	case !out.IP.IsValid():
		return out, fmt.Errorf("node %s has no IPv4 InternalIP or ExternalIP yet", n.Name)
	case !out.PodCIDR.IsValid():
		return out, fmt.Errorf("node %s has no IPv4 spec.podCIDR yet", n.Name)
	}
	return out, nil
}

// ServiceName names the agent service of one port of a Kubernetes Service:
// <service>.<namespace>.<port>-<protocol>, e.g. web.default.80-tcp (the agent's
// services have one port each). Names longer than the agent's 63 characters keep
// their start and end in a hash.
func ServiceName(namespace, name string, port int32, protocol corev1.Protocol) string {
	s := fmt.Sprintf("%s.%s.%d-%s", name, namespace, port, strings.ToLower(string(protocol)))
	if len(s) <= 63 {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return strings.TrimRight(s[:54], ".-") + "-" + hex.EncodeToString(sum[:4])
}

// ServicesFromK8s translates a Service and its EndpointSlices into one agent service
// per TCP or UDP port: the IPv4 cluster IP; for NodePort and LoadBalancer the node
// port; spec.externalIPs and the load balancer's ingress IPs as external frontends; as
// backends, the IPv4 endpoints on the slice port of the same name and protocol that
// are ready (active) or terminating but still serving (terminating: they keep their
// flows, take no new ones). ExternalName and headless services, and services for
// another proxy, give none. notes say what was left out and why.
func ServicesFromK8s(svc *corev1.Service, eps []*discoveryv1.EndpointSlice) (out []agent.Service, notes []string) {
	id := svc.Namespace + "/" + svc.Name
	if svc.Labels[LabelServiceProxyName] != "" {
		return nil, []string{fmt.Sprintf("service %s: %s=%s: another proxy serves it", id, LabelServiceProxyName, svc.Labels[LabelServiceProxyName])}
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName || svc.Spec.ClusterIP == corev1.ClusterIPNone || svc.Spec.ClusterIP == "" {
		return nil, nil // nothing to balance: DNS only
	}
	var clusterIP netip.Addr
	for _, s := range append([]string{svc.Spec.ClusterIP}, svc.Spec.ClusterIPs...) {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !clusterIP.IsValid() {
			clusterIP = a
		}
	}
	if !clusterIP.IsValid() {
		return nil, []string{fmt.Sprintf("service %s: no IPv4 cluster IP (podpath balances IPv4 only)", id)}
	}
	var externals []netip.Addr
	addExternal := func(s string) {
		if a, err := netip.ParseAddr(s); err == nil && a.Is4() && !slices.Contains(externals, a) {
			externals = append(externals, a)
		}
	}
	for _, s := range svc.Spec.ExternalIPs {
		addExternal(s)
	}
	if svc.Spec.Type == corev1.ServiceTypeLoadBalancer {
		for _, in := range svc.Status.LoadBalancer.Ingress {
			addExternal(in.IP)
		}
	}
	slices.SortFunc(externals, netip.Addr.Compare)
	for _, p := range svc.Spec.Ports {
		if p.Protocol != corev1.ProtocolTCP && p.Protocol != corev1.ProtocolUDP {
			notes = append(notes, fmt.Sprintf("service %s: port %d/%s: podpath balances TCP and UDP only", id, p.Port, p.Protocol))
			continue
		}
		s := agent.Service{
			Name: ServiceName(svc.Namespace, svc.Name, p.Port, p.Protocol), Type: string(svc.Spec.Type),
			ClusterIP: clusterIP, Port: uint16(p.Port), Protocol: string(p.Protocol), ExternalIPs: externals,
			Backends: backends(p, eps),
		}
		if s.Type != string(corev1.ServiceTypeClusterIP) {
			s.NodePort = uint16(p.NodePort)
		}
		if s.Type == string(corev1.ServiceTypeLoadBalancer) && s.NodePort == 0 {
			// allocateLoadBalancerNodePorts: false: the cluster IP and the external
			// frontends only.
			s.Type = string(corev1.ServiceTypeClusterIP)
		}
		if s.Type == string(corev1.ServiceTypeNodePort) && s.NodePort == 0 {
			notes = append(notes, fmt.Sprintf("service %s: port %d/%s: NodePort service without a node port yet", id, p.Port, p.Protocol))
			continue
		}
		semantics(svc, &s)
		s.Unsupported = append(s.Unsupported, unbalancedAddresses(svc, clusterIP)...)
		out = append(out, s)
	}
	return out, notes
}

// backends are the endpoints of the slices on service port p, sorted; an address that
// is in several slices counts once, active if any says so.
func backends(p corev1.ServicePort, eps []*discoveryv1.EndpointSlice) []agent.ServiceBackend {
	byAddr := map[netip.AddrPort]string{}
	zones := map[netip.AddrPort][]string{}
	for _, sl := range eps {
		if sl.AddressType != discoveryv1.AddressTypeIPv4 {
			continue
		}
		var port int32
		for _, sp := range sl.Ports {
			if sp.Port != nil && ptrOr(sp.Name, "") == p.Name && ptrOr(sp.Protocol, corev1.ProtocolTCP) == p.Protocol {
				port = *sp.Port
			}
		}
		if port == 0 {
			continue
		}
		for _, e := range sl.Endpoints {
			ready, serving, terminating := ptrOr(e.Conditions.Ready, true), ptrOr(e.Conditions.Serving, ptrOr(e.Conditions.Ready, true)), ptrOr(e.Conditions.Terminating, false)
			state := ""
			switch {
			case ready && !terminating:
				state = "active"
			case terminating && serving:
				state = "terminating"
			default:
				continue
			}
			for _, s := range e.Addresses {
				a, err := netip.ParseAddr(s)
				if err != nil || !a.Is4() {
					continue
				}
				ap := netip.AddrPortFrom(a, uint16(port))
				if byAddr[ap] != "active" {
					byAddr[ap] = state
				}
				// hints.forZones (topology-aware routing): the agent follows them
				// with enable-service-topology.
				if e.Hints != nil {
					for _, z := range e.Hints.ForZones {
						if z.Name != "" && !slices.Contains(zones[ap], z.Name) {
							zones[ap] = append(zones[ap], z.Name)
						}
					}
				}
			}
		}
	}
	out := make([]agent.ServiceBackend, 0, len(byAddr))
	for ap, st := range byAddr {
		b := agent.ServiceBackend{IP: ap.Addr(), Port: ap.Port(), Zones: zones[ap]}
		if st == "terminating" {
			b.State = st
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b agent.ServiceBackend) int {
		return cmp.Or(a.IP.Compare(b.IP), cmp.Compare(a.Port, b.Port))
	})
	return out
}

func ptrOr[T any](p *T, def T) T {
	if p == nil {
		return def
	}
	return *p
}

// semantics translates the Service's traffic policies, health check node port,
// session affinity and source ranges into s (issue 12), and lists in s.Unsupported
// what of the spec podpath does not do, so that the watcher and the agent warn about
// it instead of ignoring it silently.
func semantics(svc *corev1.Service, s *agent.Service) {
	spec := &svc.Spec
	if s.Type != string(corev1.ServiceTypeClusterIP) || len(s.ExternalIPs) > 0 {
		// Kubernetes applies externalTrafficPolicy to NodePort/LoadBalancer services
		// and external IPs.
		s.ExternalTrafficPolicy = string(spec.ExternalTrafficPolicy)
		if spec.ExternalTrafficPolicy == corev1.ServiceExternalTrafficPolicyLocal && s.Type != string(corev1.ServiceTypeClusterIP) {
			s.HealthCheckNodePort = uint16(spec.HealthCheckNodePort)
		}
	}
	if spec.InternalTrafficPolicy != nil {
		s.InternalTrafficPolicy = string(*spec.InternalTrafficPolicy)
	}
	if spec.SessionAffinity == corev1.ServiceAffinityClientIP {
		s.SessionAffinity = agent.AffinityClientIP
		if c := spec.SessionAffinityConfig; c != nil && c.ClientIP != nil && c.ClientIP.TimeoutSeconds != nil {
			s.SessionAffinityTimeout = uint32(*c.ClientIP.TimeoutSeconds)
		}
	}
	for _, r := range spec.LoadBalancerSourceRanges {
		pf, err := netip.ParsePrefix(strings.TrimSpace(r))
		switch {
		case err != nil:
			s.Unsupported = append(s.Unsupported, fmt.Sprintf("loadBalancerSourceRanges %q (not a CIDR)", r))
		case !pf.Addr().Is4():
			s.Unsupported = append(s.Unsupported, fmt.Sprintf("loadBalancerSourceRanges %s (IPv6)", r))
		default:
			s.LoadBalancerSourceRanges = append(s.LoadBalancerSourceRanges, pf.Masked())
		}
	}
	// Topology-aware routing: the EndpointSlice controller turns trafficDistribution
	// (or the topology-mode annotation) into hints.forZones, which backends() reads;
	// PreferSameNode has no zone hint podpath follows.
	if td := ptrOr(spec.TrafficDistribution, ""); td == "PreferClose" || td == "PreferSameZone" {
		s.TrafficDistribution = td
	} else if td != "" {
		s.Unsupported = append(s.Unsupported, "trafficDistribution "+td+" (only PreferClose/PreferSameZone zone hints are followed)")
	}
	if p := spec.IPFamilyPolicy; p != nil && *p == corev1.IPFamilyPolicyRequireDualStack {
		s.Unsupported = append(s.Unsupported, "ipFamilyPolicy RequireDualStack (IPv4 only is balanced)")
	}
}

// unbalancedAddresses names the addresses of the Service that podpath does not
// balance, so that they are warned about rather than dropped silently: cluster IPs
// besides the one balanced (the IPv6 family of a dual-stack service), IPv6 external
// and load-balancer IPs, load-balancer ingress given by hostname only, and ingress
// IPs with ipMode Proxy (KEP-1860: kube-proxy leaves those to the load balancer,
// podpath balances them like VIP ones).
func unbalancedAddresses(svc *corev1.Service, balanced netip.Addr) []string {
	var out []string
	for _, c := range svc.Spec.ClusterIPs {
		if a, err := netip.ParseAddr(c); err == nil && a != balanced {
			out = append(out, fmt.Sprintf("clusterIPs %s (only IPv4 %s is balanced)", c, balanced))
		}
	}
	for _, e := range svc.Spec.ExternalIPs {
		if a, err := netip.ParseAddr(e); err != nil || !a.Is4() {
			out = append(out, fmt.Sprintf("externalIPs %s (IPv4 only)", e))
		}
	}
	if svc.Spec.Type != corev1.ServiceTypeLoadBalancer {
		return out
	}
	for _, in := range svc.Status.LoadBalancer.Ingress {
		a, err := netip.ParseAddr(in.IP)
		switch {
		case in.IP == "" && in.Hostname != "":
			out = append(out, fmt.Sprintf("status.loadBalancer.ingress hostname %s (no IP to balance)", in.Hostname))
		case err != nil || !a.Is4():
			out = append(out, fmt.Sprintf("status.loadBalancer.ingress %s (IPv4 only)", in.IP))
		case in.IPMode != nil && *in.IPMode == corev1.LoadBalancerIPModeProxy:
			out = append(out, fmt.Sprintf("status.loadBalancer.ingress %s ipMode Proxy (balanced here as VIP)", in.IP))
		}
	}
	return out
}

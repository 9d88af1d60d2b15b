// SPDX-License-Identifier: Apache-2.0

package egressgw

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// NamespaceLabel is the label a pod's namespace is known by (as Cilium adds it).
const NamespaceLabel = "io.kubernetes.pod.namespace"

// namespaceNameLabel is the label Kubernetes gives every namespace: the only one a
// namespaceSelector may use here (podpath knows no other namespace labels).
const namespaceNameLabel = "kubernetes.io/metadata.name"

// CiliumEgressGatewayPolicy is the cilium.io/v2 CRD with its field names.
type CiliumEgressGatewayPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       Spec              `json:"spec"`
}

// Spec is the policy's spec.
type Spec struct {
	Selectors        []Selector    `json:"selectors"`
	DestinationCIDRs []string      `json:"destinationCIDRs"`
	ExcludedCIDRs    []string      `json:"excludedCIDRs,omitempty"`
	EgressGateway    EgressGateway `json:"egressGateway"`
}

// Selector picks the source pods: podSelector, and optionally namespaceSelector.
type Selector struct {
	PodSelector       *metav1.LabelSelector `json:"podSelector,omitempty"`
	NamespaceSelector *metav1.LabelSelector `json:"namespaceSelector,omitempty"`
}

// EgressGateway names the gateway node and the address it SNATs to.
type EgressGateway struct {
	NodeSelector *metav1.LabelSelector `json:"nodeSelector"`
	EgressIP     string                `json:"egressIP,omitempty"`
	Interface    string                `json:"interface,omitempty"`
}

// Policy is a validated policy.
type Policy struct {
	Name      string
	selectors []labels.Selector
	Dests     []netip.Prefix
	Excluded  []netip.Prefix
	nodes     labels.Selector
	EgressIP  netip.Addr // zero: Interface's address, or the gateway's node IP
	Interface string
}

// Parse reads one CiliumEgressGatewayPolicy (YAML or JSON). Errors name the field
// path and the accepted values.
func Parse(doc []byte) (Policy, error) {
	var c CiliumEgressGatewayPolicy
	if err := yaml.UnmarshalStrict(doc, &c); err != nil {
		return Policy{}, fmt.Errorf("parse CiliumEgressGatewayPolicy: %w", err)
	}
	return FromCRD(&c)
}

// FromCRD validates the object.
func FromCRD(c *CiliumEgressGatewayPolicy) (Policy, error) {
	var errs []error
	bad := func(path, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
	}
	if c.APIVersion != "cilium.io/v2" {
		bad("apiVersion", "%q: want cilium.io/v2", c.APIVersion)
	}
	if c.Kind != "CiliumEgressGatewayPolicy" {
		bad("kind", "%q: want CiliumEgressGatewayPolicy", c.Kind)
	}
	p := Policy{Name: c.Metadata.Name}
	if p.Name == "" {
		bad("metadata.name", "required")
	}
	if len(c.Spec.Selectors) == 0 {
		bad("spec.selectors", "required: at least one podSelector")
	}
	for i, s := range c.Spec.Selectors {
		path := fmt.Sprintf("spec.selectors[%d]", i)
		if s.PodSelector == nil && s.NamespaceSelector == nil {
			bad(path, "want podSelector and/or namespaceSelector")
			continue
		}
		ls := s.PodSelector.DeepCopy()
		if ls == nil {
			ls = &metav1.LabelSelector{}
		}
		if ls.MatchLabels == nil {
			ls.MatchLabels = map[string]string{}
		}
		for k, v := range ls.MatchLabels {
			if k2 := strings.TrimPrefix(k, "k8s:"); k2 != k {
				delete(ls.MatchLabels, k)
				ls.MatchLabels[k2] = v
			}
		}
		if ns := s.NamespaceSelector; ns != nil {
			if len(ns.MatchExpressions) > 0 {
				bad(path+".namespaceSelector.matchExpressions", "not supported: want matchLabels with %s only", namespaceNameLabel)
			}
			for k, v := range ns.MatchLabels {
				if k != namespaceNameLabel {
					bad(path+".namespaceSelector.matchLabels."+k, "not supported: podpath knows namespaces by name only: want %s", namespaceNameLabel)
					continue
				}
				ls.MatchLabels[NamespaceLabel] = v
			}
		}
		sel, err := metav1.LabelSelectorAsSelector(ls)
		if err != nil {
			bad(path+".podSelector", "%v (operators: In, NotIn, Exists, DoesNotExist)", err)
			continue
		}
		p.selectors = append(p.selectors, sel)
	}
	cidrs := func(path string, in []string) []netip.Prefix {
		var out []netip.Prefix
		for i, s := range in {
			pr, err := netip.ParsePrefix(s)
			if err != nil || !pr.Addr().Is4() {
				bad(fmt.Sprintf("%s[%d]", path, i), "%q: want an IPv4 CIDR such as 192.168.200.0/24", s)
				continue
			}
			out = append(out, pr.Masked())
		}
		return out
	}
	if len(c.Spec.DestinationCIDRs) == 0 {
		bad("spec.destinationCIDRs", "required: at least one IPv4 CIDR (0.0.0.0/0 for everything)")
	}
	p.Dests = cidrs("spec.destinationCIDRs", c.Spec.DestinationCIDRs)
	p.Excluded = cidrs("spec.excludedCIDRs", c.Spec.ExcludedCIDRs)
	gw := c.Spec.EgressGateway
	if gw.NodeSelector == nil {
		bad("spec.egressGateway.nodeSelector", "required: a label selector of the gateway node")
	} else if sel, err := metav1.LabelSelectorAsSelector(gw.NodeSelector); err != nil {
		bad("spec.egressGateway.nodeSelector", "%v (operators: In, NotIn, Exists, DoesNotExist)", err)
	} else {
		p.nodes = sel
	}
	switch {
	case gw.EgressIP != "" && gw.Interface != "":
		bad("spec.egressGateway", "egressIP and interface both given: want one of them (or neither: the gateway's node IP)")
	case gw.EgressIP != "":
		a, err := netip.ParseAddr(gw.EgressIP)
		if err != nil || !a.Is4() || a.IsUnspecified() {
			bad("spec.egressGateway.egressIP", "%q: want an IPv4 address assigned to the gateway node", gw.EgressIP)
		}
		p.EgressIP = a
	case gw.Interface != "":
		if len(gw.Interface) > 15 || strings.ContainsAny(gw.Interface, "/ ") {
			bad("spec.egressGateway.interface", "%q: want a network interface name of the gateway node", gw.Interface)
		}
		p.Interface = gw.Interface
	}
	if err := errors.Join(errs...); err != nil {
		return Policy{}, fmt.Errorf("CiliumEgressGatewayPolicy %s: %w", p.Name, err)
	}
	return p, nil
}

// Pod is a pod of the cluster: its address and labels (with NamespaceLabel).
type Pod struct {
	IP     netip.Addr
	Labels map[string]string
}

// Node is a node of the cluster: its name, IP and labels.
type Node struct {
	Name   string
	IP     netip.Addr
	Labels map[string]string
}

// Gateway values with a meaning of their own (bpf/lib/egressgw.h).
var (
	NoGateway    = netip.AddrFrom4([4]byte{0, 0, 0, 0}) // no node matches: DROP_NO_EGRESS_GATEWAY
	ExcludedCIDR = netip.AddrFrom4([4]byte{0, 0, 0, 1}) // inside an excludedCIDR: masqueraded as usual
)

// Entry is one entry of the egress gateway map: a pod's traffic to Dest goes through
// Gateway, which SNATs it to EgressIP.
type Entry struct {
	Pod      netip.Addr
	Dest     netip.Prefix
	Gateway  netip.Addr
	EgressIP netip.Addr
}

// Gateway is the node a policy sends its traffic through: the first (by name) whose
// labels match the nodeSelector; ok false when none does.
func (p *Policy) Gateway(nodes []Node) (Node, bool) {
	var match []Node
	for _, n := range nodes {
		if p.nodes != nil && p.nodes.Matches(labels.Set(n.Labels)) {
			match = append(match, n)
		}
	}
	if len(match) == 0 {
		return Node{}, false
	}
	return slices.MinFunc(match, func(a, b Node) int { return cmp.Compare(a.Name, b.Name) }), true
}

// Selects says whether the policy selects a pod of these labels.
func (p *Policy) Selects(l map[string]string) bool {
	for _, s := range p.selectors {
		if s.Matches(labels.Set(l)) {
			return true
		}
	}
	return false
}

// Compute gives every entry of the map for the policies (in name order: the first
// policy that claims a pod's destination CIDR keeps it), the cluster's pods and
// nodes. egressIP says the address a policy SNATs to when its gateway is gw (only
// the gateway itself needs it right). Warnings say what was left out.
func Compute(pols []Policy, pods []Pod, nodes []Node, egressIP func(p *Policy, gw Node) netip.Addr) ([]Entry, []string) {
	pols = slices.Clone(pols)
	slices.SortFunc(pols, func(a, b Policy) int { return cmp.Compare(a.Name, b.Name) })
	type key struct {
		pod  netip.Addr
		dest netip.Prefix
	}
	seen := map[key]string{}
	var out []Entry
	var warns []string
	for i := range pols {
		p := &pols[i]
		gw, ok := p.Gateway(nodes)
		gateway, eip := NoGateway, netip.Addr{}
		if ok {
			gateway, eip = gw.IP, egressIP(p, gw)
		} else {
			warns = append(warns, fmt.Sprintf("egress gateway policy %s: no node matches its nodeSelector: its traffic is dropped (DROP_NO_EGRESS_GATEWAY)", p.Name))
		}
		if !eip.IsValid() {
			eip = netip.IPv4Unspecified()
		}
		for _, pod := range pods {
			if !p.Selects(pod.Labels) {
				continue
			}
			add := func(dest netip.Prefix, gwIP, ip netip.Addr) {
				k := key{pod.IP, dest}
				if other, dup := seen[k]; dup {
					if other != p.Name {
						warns = append(warns, fmt.Sprintf("egress gateway policy %s: %s to %s is already %s's", p.Name, pod.IP, dest, other))
					}
					return
				}
				seen[k] = p.Name
				out = append(out, Entry{Pod: pod.IP, Dest: dest, Gateway: gwIP, EgressIP: ip})
			}
			for _, d := range p.Dests {
				add(d, gateway, eip)
			}
			for _, x := range p.Excluded {
				add(x, ExcludedCIDR, netip.IPv4Unspecified())
			}
		}
	}
	return out, warns
}

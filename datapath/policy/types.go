// SPDX-License-Identifier: Apache-2.0

package policy

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// CiliumNetworkPolicy is the cilium.io/v2 CiliumNetworkPolicy (and, with Kind
// CiliumClusterwideNetworkPolicy, the clusterwide one) with the CRD's field names.
// L7 rules, ICMP rules, named ports, FQDN, services and node selectors are not read.
type CiliumNetworkPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   metav1.ObjectMeta `json:"metadata"`
	Spec       *Rule             `json:"spec,omitempty"`
	Specs      []Rule            `json:"specs,omitempty"`
}

// Rule is api.Rule: the endpoints it selects and what they may send and receive.
type Rule struct {
	EndpointSelector *metav1.LabelSelector `json:"endpointSelector,omitempty"`
	Ingress          []IngressRule         `json:"ingress,omitempty"`
	IngressDeny      []IngressRule         `json:"ingressDeny,omitempty"`
	Egress           []EgressRule          `json:"egress,omitempty"`
	EgressDeny       []EgressRule          `json:"egressDeny,omitempty"`
	Description      string                `json:"description,omitempty"`
}

// IngressRule is api.IngressRule (and IngressDenyRule): peers it admits, on which ports.
type IngressRule struct {
	FromEndpoints []metav1.LabelSelector `json:"fromEndpoints,omitempty"`
	FromEntities  []string               `json:"fromEntities,omitempty"`
	FromCIDR      []string               `json:"fromCIDR,omitempty"`
	FromCIDRSet   []CIDRRule             `json:"fromCIDRSet,omitempty"`
	ToPorts       []PortRule             `json:"toPorts,omitempty"`
}

// EgressRule is api.EgressRule (and EgressDenyRule).
type EgressRule struct {
	ToEndpoints []metav1.LabelSelector `json:"toEndpoints,omitempty"`
	ToEntities  []string               `json:"toEntities,omitempty"`
	ToCIDR      []string               `json:"toCIDR,omitempty"`
	ToCIDRSet   []CIDRRule             `json:"toCIDRSet,omitempty"`
	ToPorts     []PortRule             `json:"toPorts,omitempty"`
}

// CIDRRule is api.CIDRRule: a prefix less its exceptions.
type CIDRRule struct {
	Cidr   string   `json:"cidr"`
	Except []string `json:"except,omitempty"`
}

// PortRule is api.PortRule (its rules: L7 field is not read).
type PortRule struct {
	Ports []PortProtocol `json:"ports,omitempty"`
}

// PortProtocol is api.PortProtocol: a port, up to EndPort, of a protocol (TCP, UDP,
// SCTP or ANY, the default).
type PortProtocol struct {
	Port     string `json:"port"`
	EndPort  int32  `json:"endPort,omitempty"`
	Protocol string `json:"protocol,omitempty"`
}

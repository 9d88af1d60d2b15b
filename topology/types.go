// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"errors"
	"net"
	"net/netip"
)

// Kind is the role of a topology member.
type Kind string

// Member kinds.
const (
	KindNode    Kind = "node"
	KindPod     Kind = "pod"
	KindRouter  Kind = "router"
	KindClient  Kind = "client"
	KindSegment Kind = "segment"
)

var (
	// ErrNotFound is returned when a member or a running topology does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNotSupported is returned by a Cluster for an operation its backend cannot do
	// (a network namespace of a kind node, say).
	ErrNotSupported = errors.New("not supported by this backend")
)

// Member is one member of a running topology: a network namespace with the netns
// backend, a node container or Kubernetes Pod with kind.
type Member struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Netns is the name of the member's network namespace (as `ip netns` lists it);
	// empty where the backend makes none on this machine (kind).
	Netns string `json:"netns"`
	// NsPath is the path of that namespace, usable with setns or `nsenter --net=`.
	NsPath string `json:"nsPath"`
}

// Interface is one network interface of a member.
type Interface struct {
	Name string `json:"name"`
	// Segment the interface is attached to; empty for a pod's eth0.
	Segment string `json:"segment,omitempty"`
	// Address with the segment's prefix length (/32 for a pod); invalid for a bridge port.
	Address netip.Prefix     `json:"address"`
	MTU     int              `json:"mtu"`
	MAC     net.HardwareAddr `json:"mac,omitempty"`
	// Peer is the other end of the veth: the bridge port in the segment namespace for a
	// member interface, the host veth in the node for a pod, "<member>/<ifname>" for a
	// bridge port.
	Peer string `json:"peer"`
}

// Pod is a resolved pod.
type Pod struct {
	Name string     `json:"name"`
	Node string     `json:"node"`
	IP   netip.Addr `json:"ip"`
	MTU  int        `json:"mtu"`
	// MAC of the pod's eth0.
	MAC net.HardwareAddr `json:"mac"`
	// HostVeth is the node-side end of the pod's veth, HostMAC its address.
	HostVeth string           `json:"hostVeth"`
	HostMAC  net.HardwareAddr `json:"hostMAC"`
	// Gateway is the pod's default gateway: the first host address of the PodCIDR.
	Gateway netip.Addr `json:"gateway"`
}

// Node is a resolved node.
type Node struct {
	Name string `json:"name"`
	// InternalIP is the address of the node's internal interface: node-to-node traffic
	// and tunnels use it.
	InternalIP netip.Addr   `json:"internalIP"`
	PodCIDR    netip.Prefix `json:"podCIDR"`
	Gateway    netip.Addr   `json:"gateway"`
	Interfaces []Interface  `json:"interfaces"`
	Pods       []Pod        `json:"pods"`
	// Devices are the interfaces the node's agent attaches to (all when empty).
	Devices []string `json:"devices,omitempty"`
	// Zone is the node's topology.kubernetes.io/zone label ("" = none).
	Zone string `json:"zone,omitempty"`
}

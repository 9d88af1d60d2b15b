// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"

	"net/netip"
	"podpath/datapath/kvstore"
	"podpath/datapath/maps"
	"regexp"
)

// Endpoint is a pod on this node, as the API receives it (CNI ADD).
type Endpoint struct {
	Name string `json:"name"`
	// Netns is the path of the pod's network namespace (/var/run/netns/NAME).
	Netns string     `json:"netns"`
	IP    netip.Addr `json:"ip"`
	// HostVeth names the node end of the pod's veth; default lxc-<name> or a hash.
	HostVeth string `json:"hostVeth,omitempty"`
	HostMAC  string `json:"hostMAC,omitempty"`
	PodMAC   string `json:"podMAC,omitempty"`
	// MTU of the pod's interface; 0: the agent's route MTU.
	MTU int `json:"mtu,omitempty"`
	// Identity is the security identity; 0: allocated from Labels (one identity per
	// distinct label set, the same on every node).
	Identity uint32 `json:"identity,omitempty"`
	// Labels are the pod's labels; the namespace is io.kubernetes.pod.namespace
	// ("default" when absent).
	Labels map[string]string `json:"labels,omitempty"`
}

// PodRef is a pod of another node as this node's ipcache needs it: its address and
// labels (the identity follows from them).
type PodRef struct {
	Name   string            `json:"name"`
	IP     netip.Addr        `json:"ip"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Policy is a network policy as the API receives it: YAML of one
// CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or NetworkPolicy.
type Policy struct {
	Name string `json:"name"`
	YAML string `json:"yaml"`
}

// Node is a node of the cluster (this one included), as the API receives it.
type Node struct {
	Name    string       `json:"name"`
	IP      netip.Addr   `json:"ip"`
	PodCIDR netip.Prefix `json:"podCIDR"`
	// ID numbers the node in trace records; 0: assigned by the agent.
	ID uint32 `json:"id,omitempty"`
	// Pods are the node's pods, for the ipcache (identity per address); the
	// agent's own node lists none (its endpoints say it).
	Pods []PodRef `json:"pods,omitempty"`
	// Labels are the node's labels (an egress gateway policy's nodeSelector).
	Labels map[string]string `json:"labels,omitempty"`
}

var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9.-]{0,61}[a-z0-9])?$`)

func (e *Endpoint) validate(podCIDR netip.Prefix) error {
	switch {
	case !nameRE.MatchString(e.Name):
		return fmt.Errorf("endpoint name %q: want lowercase letters, digits, '-' or '.', at most 63", e.Name)
	case e.Netns == "":
		return fmt.Errorf("endpoint %s: netns: the pod's namespace path is required", e.Name)
	case !e.IP.Is4():
		return fmt.Errorf("endpoint %s: ip: %v is not an IPv4 address", e.Name, e.IP)
	case podCIDR.IsValid() && !podCIDR.Contains(e.IP):
		return fmt.Errorf("endpoint %s: ip: %s is outside this node's PodCIDR %s", e.Name, e.IP, podCIDR)
	case e.IP == podCIDR.Addr().Next():
		return fmt.Errorf("endpoint %s: ip: %s is the node's pod gateway", e.Name, e.IP)
	case len(e.HostVeth) > 15:
		return fmt.Errorf("endpoint %s: hostVeth: %q is longer than 15 characters", e.Name, e.HostVeth)
	case e.MTU != 0 && (e.MTU < 68 || e.MTU > 65535):
		return fmt.Errorf("endpoint %s: mtu: %d is outside 68..65535", e.Name, e.MTU)
	}
	return nil
}

func (n *Node) validate() error {
	switch {
	case !nameRE.MatchString(n.Name):
		return fmt.Errorf("node name %q: want lowercase letters, digits, '-' or '.', at most 63", n.Name)
	case !n.IP.Is4():
		return fmt.Errorf("node %s: ip: %v is not an IPv4 address", n.Name, n.IP)
	case !n.PodCIDR.IsValid() || !n.PodCIDR.Addr().Is4() || n.PodCIDR.Masked() != n.PodCIDR:
		return fmt.Errorf("node %s: podCIDR: %v is not an IPv4 network prefix", n.Name, n.PodCIDR)
	}
	return nil
}

// Generations are the datapath's generation numbers (dp_gen): what the BPF programs
// remember per flow is valid only while its generation matches.
type Generations struct {
	FIB      uint32 `json:"fib"`      // bumped on route, neighbour and link changes
	Backends uint32 `json:"backends"` // bumped when a backend is deleted or changed
}

// Status is what `podpath-agent status` prints, like `cilium status`.
type Status struct {
	Node                 string   `json:"node"`
	HostRouting          string   `json:"hostRouting"` // "BPF" or "Legacy"
	HostRoutingReason    string   `json:"hostRoutingReason,omitempty"`
	RoutingMode          string   `json:"routingMode"` // "native" or "tunnel [vxlan]"
	NativeRoutingCIDR    string   `json:"nativeRoutingCIDR,omitempty"`
	AutoDirectNodeRoutes bool     `json:"autoDirectNodeRoutes"`
	MonitorAggregation   string   `json:"monitorAggregation"`
	Devices              []string `json:"devices"`
	NodeIP               string   `json:"nodeIP"`
	// KVStore is the etcd connection with kvstore: etcd (nil otherwise).
	KVStore *kvstore.Status `json:"kvstore,omitempty"`
	// ClusterMesh lists the remote clusters watched (clustermesh-config).
	ClusterMesh []MeshStatus `json:"clusterMesh,omitempty"`
	MTU         MTUs         `json:"mtu"`
	// Peers is the per-peer tunnel MTU table (tunnel mode): the underlay path MTU to
	// each other node and the route MTU installed for its PodCIDR.
	Peers     []PeerMTU `json:"peers,omitempty"`
	Endpoints int       `json:"endpoints"`
	Nodes     int       `json:"nodes"`
	Attached  []string  `json:"attached"` // program@device/direction
	// XDPAcceleration is bpf-lb-acceleration as in effect: the devices served at XDP,
	// and those best-effort left without (with the reason).
	XDPAcceleration string `json:"xdpAcceleration,omitempty"`
	// Generations is dp_gen as read now (nil: not open).
	Generations *Generations `json:"generations,omitempty"`
	BPFFS       string       `json:"bpffs"`
	// Hubble is the Observer API socket and Metrics the Prometheus address (empty: off).
	Hubble   string   `json:"hubble,omitempty"`
	Metrics  string   `json:"metrics,omitempty"`
	Adopted  bool     `json:"adopted"` // programs were already attached at start
	Problems []string `json:"problems,omitempty"`
	// Features are the `cilium status` feature lines, read from what the agent
	// loaded (the BPF configuration, the maps' sizes, the MTU plan), not from the
	// config text.
	Features []Feature `json:"features"`
	// Masquerade are the BPF masquerading counters (nil without BPF masquerading):
	// DROP_MASQ_NO_PORT drops are NoPort.
	Masquerade *maps.MasqStats `json:"masquerade,omitempty"`
	// ConfigWarnings are the settings of the agent's cilium-config that podpath
	// ignores, does differently or only partly (config.Report.Warnings).
	ConfigWarnings []ConfigWarning `json:"configWarnings,omitempty"`
	// BGPPeers are the BGP sessions (enable-bgp-control-plane), as `cilium bgp peers`
	// lists them; BGPRoutes the routes BGP installed into the node's table.
	BGPPeers  []BGPPeerStatus `json:"bgpPeers,omitempty"`
	BGPRoutes []BGPRoute      `json:"bgpRoutes,omitempty"`
}

// Feature is one feature line of the status: KubeProxyReplacement, Host Routing, ...
type Feature struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// ConfigWarning is one warning about the agent's cilium-config.
type ConfigWarning struct {
	Key     string `json:"key"`
	Message string `json:"message"`
}

func (w ConfigWarning) String() string {
	if w.Key == "" {
		return w.Message
	}
	return w.Key + ": " + w.Message
}

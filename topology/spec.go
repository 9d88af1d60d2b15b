// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"fmt"
	"net/netip"
	"os"
	"slices"

	"sigs.k8s.io/yaml"
)

// Spec is a declarative topology: L2 segments, the nodes, routers and clients attached
// to them, and the pods of every node.
type Spec struct {
	// Name of the topology; a running instance is called <name>-<runid>.
	Name     string        `json:"name"`
	Segments []SegmentSpec `json:"segments"`
	Nodes    []NodeSpec    `json:"nodes"`
	Routers  []RouterSpec  `json:"routers,omitempty"`
	// Clients are namespaces outside the cluster (traffic sources for NodePort, DSR...).
	Clients []ClientSpec `json:"clients,omitempty"`
	// PodRoutes says who gets routes to the nodes' PodCIDRs: PodRoutesAll (default),
	// PodRoutesRouters or PodRoutesNone.
	PodRoutes string `json:"podRoutes,omitempty"`
	// PodNetwork says who plumbs pods into nodes: PodNetworkKernel (default: the harness,
	// with plain kernel forwarding) or PodNetworkAgent (the node's agent, through its API).
	PodNetwork string `json:"podNetwork,omitempty"`
	// BGP holds topology-wide BGP settings (bgp.go); per-member ASNs are on the
	// routers and nodes.
	BGP *BGPTopologySpec `json:"bgp,omitempty"`
	// Etcd, when set, runs a real etcd cluster on the underlay (see EtcdSpec).
	Etcd *EtcdSpec `json:"etcd,omitempty"`
	// Clusters, when set, makes the topology a cluster mesh: every node names its
	// cluster, and each cluster runs its own etcd (mesh.go).
	Clusters []ClusterSpec `json:"clusters,omitempty"`
}

// Values of Spec.PodRoutes.
const (
	// PodRoutesAll installs PodCIDR routes on nodes and routers: plain kernel routing.
	PodRoutesAll = "all"
	// PodRoutesRouters installs PodCIDR routes on routers only; an agent programs nodes.
	PodRoutesRouters = "routers"
	// PodRoutesNone installs no PodCIDR routes at all.
	PodRoutesNone = "none"
)

// Values of Spec.PodNetwork.
const (
	// PodNetworkKernel: the harness plumbs each pod's veth; nodes forward with the kernel.
	PodNetworkKernel = "kernel"
	// PodNetworkAgent: the harness creates empty pod namespaces; the agent plumbs them.
	PodNetworkAgent = "agent"
)

// Defaults applied by Resolve.
const (
	DefaultMTU = 1500
	// podFirstHost is the host number of the first auto-assigned pod address (.10).
	podFirstHost = 10
)

// SegmentSpec is one L2 segment (a Linux bridge in the netns backend).
type SegmentSpec struct {
	Name string `json:"name"`
	// CIDR is the IPv4 subnet of the segment, e.g. 10.0.1.0/24.
	CIDR string `json:"cidr"`
	// MTU of the segment; DefaultMTU when zero.
	MTU int `json:"mtu,omitempty"`
}

// InterfaceSpec attaches a member to a segment.
type InterfaceSpec struct {
	// Name of the interface inside the member; eth0, eth1... by position when empty.
	Name    string `json:"name,omitempty"`
	Segment string `json:"segment"`
	// Address is an IPv4 address inside the segment CIDR; the next free one when empty.
	Address string `json:"address,omitempty"`
	// MTU of the interface; the segment MTU when zero.
	MTU int `json:"mtu,omitempty"`
}

// NodeSpec is a cluster node: it forwards for its own pods only.
type NodeSpec struct {
	Name       string          `json:"name"`
	PodCIDR    string          `json:"podCIDR"`
	Interfaces []InterfaceSpec `json:"interfaces"`
	// InternalInterface names the interface whose address is the node's InternalIP:
	// node-to-node traffic and tunnels use it. Default: the first interface.
	InternalInterface string `json:"internalInterface,omitempty"`
	// Devices name the interfaces the node's agent attaches to (its --devices,
	// Cilium's `devices`): NodePort answers on their addresses only. Default: every
	// interface.
	Devices []string `json:"devices,omitempty"`
	// Zone is the node's topology.kubernetes.io/zone label (topology-aware routing).
	Zone string    `json:"zone,omitempty"`
	Pods []PodSpec `json:"pods,omitempty"`
	// BGP makes the node a BGP speaker (its agent's BGP control plane) with this ASN.
	BGP *BGPSpec `json:"bgp,omitempty"`
	// Labels are the node's Kubernetes labels (an egress gateway policy's
	// nodeSelector reads them).
	Labels map[string]string `json:"labels,omitempty"`
	// Cluster names the node's cluster (one of Spec.Clusters); empty without a mesh.
	Cluster string `json:"cluster,omitempty"`
	// NICModel makes the wire of the node's devices behave like a physical NIC's where
	// XDP needs it (nicmodel.go); WithDatapath sets it from the cilium-config.
	NICModel bool `json:"nicModel,omitempty"`
}

// PodSpec is a pod: a namespace with one veth to its node.
type PodSpec struct {
	Name string `json:"name"`
	// Address inside the node's PodCIDR; auto-assigned from .10 on when empty.
	Address string `json:"address,omitempty"`
	// MTU of the pod's eth0; the MTU of the node's first interface when zero.
	MTU int `json:"mtu,omitempty"`
	// Labels are the pod's Kubernetes labels: identities are allocated from them.
	Labels map[string]string `yaml:"labels" json:"labels,omitempty"`
}

// RouterSpec is a router between segments: it forwards for everybody.
type RouterSpec struct {
	Name       string          `json:"name"`
	Interfaces []InterfaceSpec `json:"interfaces"`
	// NoPodRoutes makes the router know no PodCIDR whatever Spec.PodRoutes says: the
	// edge between the cluster and the outside world, where a packet from a pod address
	// that was not masqueraded gets no answer (the world's replies to a pod address are
	// unroutable).
	NoPodRoutes bool `json:"noPodRoutes,omitempty"`
	// BGP runs a routing daemon in the router (bgp.go) peering with the nodes on its
	// segments; without it the router forwards by the planned static routes alone.
	BGP *BGPSpec `json:"bgp,omitempty"`
}

// ClientSpec is a host outside the cluster; it does not forward.
type ClientSpec struct {
	Name       string          `json:"name"`
	Interfaces []InterfaceSpec `json:"interfaces"`
	// World marks a server of the outside world: it shares no segment with a node, and
	// every router on its segments has NoPodRoutes, so it reaches the cluster only
	// through routers that know no PodCIDR (it can answer a node's address, never a
	// pod's).
	World bool `json:"world,omitempty"`
	// PodRoutes gives the client routes to every node's PodCIDR, through the routers
	// towards the nodes (clients get none otherwise): a host of a datacenter network
	// that answers pod addresses, beside a world that cannot.
	PodRoutes bool `json:"podRoutes,omitempty"`
}

// WorldServers returns the names of the clients marked World, in spec order.
func (s *Spec) WorldServers() []string {
	var out []string
	for _, c := range s.Clients {
		if c.World {
			out = append(out, c.Name)
		}
	}
	return out
}

// Parse decodes a YAML (or JSON) topology spec strictly: an unknown field is an error
// naming that field. The spec is not validated; call Validate or Resolve.
func Parse(data []byte) (*Spec, error) {
	var s Spec
	if err := yaml.UnmarshalStrict(data, &s); err != nil {
		return nil, fmt.Errorf("parse topology spec: %w", err)
	}
	return &s, nil
}

// Load reads and parses the topology spec at path.
func Load(path string) (*Spec, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load topology spec: %w", err)
	}
	s, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}

// Clone returns a deep copy of the spec.
func (s *Spec) Clone() *Spec {
	c := *s
	c.Segments = slices.Clone(s.Segments)
	c.Nodes = slices.Clone(s.Nodes)
	for i := range c.Nodes {
		c.Nodes[i].Interfaces = slices.Clone(c.Nodes[i].Interfaces)
		c.Nodes[i].Devices = slices.Clone(c.Nodes[i].Devices)
		c.Nodes[i].Pods = slices.Clone(c.Nodes[i].Pods)
		c.Nodes[i].BGP = cloneBGP(c.Nodes[i].BGP)
	}
	c.Routers = slices.Clone(s.Routers)
	for i := range c.Routers {
		c.Routers[i].Interfaces = slices.Clone(c.Routers[i].Interfaces)
		c.Routers[i].BGP = cloneBGP(c.Routers[i].BGP)
	}
	if s.BGP != nil {
		b := *s.BGP
		c.BGP = &b
	}
	if s.Etcd != nil {
		e := *s.Etcd
		c.Etcd = &e
	}
	c.Clusters = slices.Clone(s.Clusters)
	for i := range c.Clusters {
		if e := c.Clusters[i].Etcd; e != nil {
			ec := *e
			c.Clusters[i].Etcd = &ec
		}
	}
	c.Clients = slices.Clone(s.Clients)
	for i := range c.Clients {
		c.Clients[i].Interfaces = slices.Clone(c.Clients[i].Interfaces)
	}
	return &c
}

// Resolve validates the spec and returns a copy with every default filled in: segment
// and interface MTUs, interface names, PodRoutes, and the auto-assigned addresses.
// Interface addresses are handed out per segment, lowest free host address first, to
// routers, then nodes, then clients, in spec order, skipping explicit addresses; pod
// addresses per node from host .10 of the PodCIDR on. The result is deterministic and
// resolving it again changes nothing.
func (s *Spec) Resolve() (*Spec, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return s.resolve()
}

// resolve fills in defaults; it assumes checkRules passed and reports only exhaustion of
// an address range.
func (s *Spec) resolve() (*Spec, error) {
	r := s.Clone()
	if r.PodNetwork == "" {
		r.PodNetwork = PodNetworkKernel
	}
	if r.PodRoutes == "" {
		// An agent programs its own node's PodCIDR routes (auto-direct-node-routes).
		r.PodRoutes = PodRoutesAll
		if r.PodNetwork == PodNetworkAgent {
			r.PodRoutes = PodRoutesRouters
		}
		if r.HasBGP() {
			// BGP distributes the PodCIDRs: nothing is installed statically.
			r.PodRoutes = PodRoutesNone
		}
	}
	r.resolveBGP()
	r.expandEtcd()
	segIdx := map[string]int{}
	for i := range r.Segments {
		if r.Segments[i].MTU == 0 {
			r.Segments[i].MTU = DefaultMTU
		}
		segIdx[r.Segments[i].Name] = i
	}

	// Every explicit address is taken before any is handed out.
	used := map[netip.Addr]bool{}
	r.EachInterface(func(_ string, _ string, ifc *InterfaceSpec) {
		if a, err := netip.ParseAddr(ifc.Address); err == nil {
			used[a] = true
		}
	})
	next := map[string]netip.Addr{} // segment -> next candidate
	var errs []error
	r.EachInterface(func(path, _ string, ifc *InterfaceSpec) {
		seg := r.Segments[segIdx[ifc.Segment]]
		if ifc.MTU == 0 {
			ifc.MTU = seg.MTU
		}
		if ifc.Address != "" {
			return
		}
		p := netip.MustParsePrefix(seg.CIDR)
		cand, ok := next[seg.Name]
		if !ok {
			cand = p.Addr().Next()
		}
		for ; p.Contains(cand) && used[cand]; cand = cand.Next() {
		}
		if !p.Contains(cand) || cand == lastAddr(p) {
			errs = append(errs, fmt.Errorf("%s.address: no free address left in segment %q %s", path, seg.Name, seg.CIDR))
			next[seg.Name] = cand
			return
		}
		used[cand] = true
		ifc.Address = cand.String()
		next[seg.Name] = cand.Next()
	})
	for ni := range r.Nodes {
		n := &r.Nodes[ni]
		defaultIfNames(n.Interfaces)
		if n.InternalInterface == "" {
			n.InternalInterface = n.Interfaces[0].Name
		}
		p := netip.MustParsePrefix(n.PodCIDR)
		podUsed := map[netip.Addr]bool{}
		for _, pod := range n.Pods {
			if a, err := netip.ParseAddr(pod.Address); err == nil {
				podUsed[a] = true
			}
		}
		cand := p.Addr()
		for range podFirstHost {
			cand = cand.Next()
		}
		for pi := range n.Pods {
			pod := &n.Pods[pi]
			if pod.MTU == 0 && len(n.Interfaces) > 0 {
				pod.MTU = n.Interfaces[0].MTU
			}
			if pod.Address != "" {
				continue
			}
			for ; p.Contains(cand) && podUsed[cand]; cand = cand.Next() {
			}
			if !p.Contains(cand) || cand == lastAddr(p) {
				errs = append(errs, fmt.Errorf("nodes[%d].pods[%d].address: no free address left in node %q podCIDR %s (auto addresses start at .%d)", ni, pi, n.Name, n.PodCIDR, podFirstHost))
				continue
			}
			podUsed[cand] = true
			pod.Address = cand.String()
			cand = cand.Next()
		}
	}
	for i := range r.Routers {
		defaultIfNames(r.Routers[i].Interfaces)
	}
	for i := range r.Clients {
		defaultIfNames(r.Clients[i].Interfaces)
	}
	if len(errs) > 0 {
		return nil, joinErrors(errs)
	}
	return r, nil
}

func defaultIfNames(ifs []InterfaceSpec) {
	for i := range ifs {
		if ifs[i].Name == "" {
			ifs[i].Name = fmt.Sprintf("eth%d", i)
		}
	}
}

// EachInterface calls fn for every interface in address-allocation order: routers,
// nodes, clients; path is the field path of the interface, e.g. nodes[1].interfaces[0].
func (s *Spec) EachInterface(fn func(path, member string, ifc *InterfaceSpec)) {
	for i := range s.Routers {
		for j := range s.Routers[i].Interfaces {
			fn(fmt.Sprintf("routers[%d].interfaces[%d]", i, j), s.Routers[i].Name, &s.Routers[i].Interfaces[j])
		}
	}
	for i := range s.Nodes {
		for j := range s.Nodes[i].Interfaces {
			fn(fmt.Sprintf("nodes[%d].interfaces[%d]", i, j), s.Nodes[i].Name, &s.Nodes[i].Interfaces[j])
		}
	}
	for i := range s.Clients {
		for j := range s.Clients[i].Interfaces {
			fn(fmt.Sprintf("clients[%d].interfaces[%d]", i, j), s.Clients[i].Name, &s.Clients[i].Interfaces[j])
		}
	}
}

// lastAddr returns the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	bits := p.Bits()
	for i := 0; i < 4; i++ {
		for b := 0; b < 8; b++ {
			if i*8+b >= bits {
				a[i] |= 0x80 >> b
			}
		}
	}
	return netip.AddrFrom4(a)
}

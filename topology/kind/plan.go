// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"

	"podpath/topology"
)

// Roles of kind nodes.
const (
	RoleControlPlane = "control-plane"
	RoleWorker       = "worker"
)

// Plan is everything the kind backend derives from a spec before anything runs: the
// node mapping, the pod and service subnets, and from them the kind config (KindConfig)
// and the manifests (Manifests). It is deterministic: the same spec and options give
// the same bytes.
type Plan struct {
	// Spec is the resolved spec: every default and pod address filled in.
	Spec *topology.Spec
	// Options with every default filled in.
	Options Options
	// ControlPlane is the kind control-plane node; it has no podpath node (Node is
	// empty) but runs an agent too, so it gets a PodCIDR of its own.
	ControlPlane NodeMapping
	// Nodes map the spec's nodes, in spec order, onto kind workers.
	Nodes []NodeMapping
	// PodSubnet is the cluster's pod CIDR (kubeadm networking.podSubnet).
	PodSubnet netip.Prefix
	// ServiceSubnet is the cluster's service CIDR.
	ServiceSubnet netip.Prefix
}

// NodeMapping is one kind node and the podpath node it stands for.
type NodeMapping struct {
	// Node is the podpath node name; empty for the control plane.
	Node string
	// KindNode is the name of the node container, which is also the Kubernetes node
	// name: <cluster>-worker, <cluster>-worker2, ... in spec order.
	KindNode string
	// Role is RoleControlPlane or RoleWorker.
	Role string
	// PodCIDR is the node's PodCIDR: the spec's for a worker, a free one of the same
	// size inside PodSubnet for the control plane.
	PodCIDR netip.Prefix
}

// clusterNameRE is what kind accepts as a cluster name.
var clusterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// NewPlan resolves spec, checks that kind can model it (an *UnsupportedError lists what
// it cannot), validates the options, and maps the spec's nodes onto kind nodes.
func NewPlan(spec *topology.Spec, opts Options) (*Plan, error) {
	if spec == nil {
		return nil, errors.New("kind plan: nil spec")
	}
	r, err := spec.Resolve()
	if err != nil {
		return nil, fmt.Errorf("kind plan: %w", err)
	}
	opts = opts.withDefaults(r.Name)
	if f := unsupported(spec, r, opts.NetworkMTU); len(f) > 0 {
		return nil, &UnsupportedError{Topology: r.Name, Features: f}
	}
	p := &Plan{Spec: r, Options: opts}
	var errs []error
	if !clusterNameRE.MatchString(opts.ClusterName) || len(opts.ClusterName) > 40 {
		errs = append(errs, fmt.Errorf("cluster name %q: want lowercase letters, digits, '.' and '-', at most 40 characters", opts.ClusterName))
	}
	cidrs := make([]netip.Prefix, len(r.Nodes))
	for i, n := range r.Nodes {
		cidrs[i] = netip.MustParsePrefix(n.PodCIDR).Masked()
		p.Nodes = append(p.Nodes, NodeMapping{Node: n.Name, KindNode: kindNodeName(opts.ClusterName, RoleWorker, i+1), Role: RoleWorker, PodCIDR: cidrs[i]})
	}
	p.ControlPlane = NodeMapping{KindNode: kindNodeName(opts.ClusterName, RoleControlPlane, 1), Role: RoleControlPlane}
	p.PodSubnet, p.ControlPlane.PodCIDR, err = podSubnet(cidrs, opts.PodSubnet)
	if err != nil {
		errs = append(errs, err)
	}
	p.ServiceSubnet, err = netip.ParsePrefix(opts.ServiceSubnet)
	switch {
	case err != nil || !p.ServiceSubnet.Addr().Is4():
		errs = append(errs, fmt.Errorf("service subnet %q: want an IPv4 prefix such as %s", opts.ServiceSubnet, DefaultServiceSubnet))
	case p.PodSubnet.IsValid() && p.PodSubnet.Overlaps(p.ServiceSubnet):
		errs = append(errs, fmt.Errorf("service subnet %s overlaps the pod subnet %s", p.ServiceSubnet, p.PodSubnet))
	default:
		p.ServiceSubnet = p.ServiceSubnet.Masked()
		pods := map[string]bool{}
		for _, n := range r.Nodes {
			for _, pod := range n.Pods {
				pods[pod.Name] = true
			}
		}
		errs = append(errs, validateServices(opts.Services, pods, p.ServiceSubnet)...)
	}
	if err := validateCiliumConfig(opts.CiliumConfig); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("kind plan %s: %w", r.Name, err)
	}
	return p, nil
}

// kindNodeName is the name kind gives the n-th (from 1) node of a role, in config order:
// <cluster>-worker, <cluster>-worker2, ...
func kindNodeName(cluster, role string, n int) string {
	if n == 1 {
		return cluster + "-" + role
	}
	return fmt.Sprintf("%s-%s%d", cluster, role, n)
}

// Node returns the mapping of the podpath node called name.
func (p *Plan) Node(name string) (NodeMapping, bool) {
	for _, m := range p.Nodes {
		if m.Node == name {
			return m, true
		}
	}
	return NodeMapping{}, false
}

// AllNodes returns the control plane, then the workers in spec order.
func (p *Plan) AllNodes() []NodeMapping {
	return append([]NodeMapping{p.ControlPlane}, p.Nodes...)
}

// podSubnet returns the pod subnet (explicit, or the smallest prefix covering every node
// PodCIDR with room for one more) and the control plane's PodCIDR: the lowest free prefix
// of the first node's size inside it.
func podSubnet(nodes []netip.Prefix, explicit string) (subnet, controlPlane netip.Prefix, err error) {
	size := nodes[0].Bits()
	if explicit != "" {
		subnet, err = netip.ParsePrefix(explicit)
		if err != nil || !subnet.Addr().Is4() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("pod subnet %q: want an IPv4 prefix", explicit)
		}
		subnet = subnet.Masked()
		for _, n := range nodes {
			if !contains(subnet, n) {
				return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("pod subnet %s does not contain node PodCIDR %s", subnet, n)
			}
		}
		cp, ok := firstFree(subnet, size, nodes)
		if !ok {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("pod subnet %s has no free /%d left for the control-plane node's PodCIDR", subnet, size)
		}
		return subnet, cp, nil
	}
	subnet = cover(nodes)
	for {
		if cp, ok := firstFree(subnet, size, nodes); ok {
			return subnet, cp, nil
		}
		if subnet.Bits() == 0 {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("no room for a /%d control-plane PodCIDR beside the nodes' PodCIDRs", size)
		}
		subnet = netip.PrefixFrom(subnet.Addr(), subnet.Bits()-1).Masked()
	}
}

// cover returns the smallest prefix that contains every prefix of ps (not empty).
func cover(ps []netip.Prefix) netip.Prefix {
	bits := 32
	for _, p := range ps {
		bits = min(bits, p.Bits())
	}
	c := netip.PrefixFrom(ps[0].Addr(), bits).Masked()
	for {
		all := true
		for _, p := range ps {
			all = all && contains(c, p)
		}
		if all || c.Bits() == 0 {
			return c
		}
		c = netip.PrefixFrom(c.Addr(), c.Bits()-1).Masked()
	}
}

// contains reports whether q lies entirely inside p.
func contains(p, q netip.Prefix) bool { return p.Bits() <= q.Bits() && p.Contains(q.Addr()) }

// firstFree returns the lowest prefix of the given size inside within that overlaps none
// of used.
func firstFree(within netip.Prefix, size int, used []netip.Prefix) (netip.Prefix, bool) {
	if size < within.Bits() {
		return netip.Prefix{}, false
	}
	start := u32(within.Addr())
	end := start + uint64(1)<<(32-within.Bits()) // exclusive
	step := uint64(1) << (32 - size)
	for v := start; v < end; {
		cand := netip.PrefixFrom(addr4(v), size)
		if !overlapsAny(cand, used) {
			return cand, true
		}
		// Skip past every used prefix the candidate overlaps: one may be larger than a
		// candidate. Prefix ends are aligned, so the next candidate is too.
		next := v + step
		for _, u := range used {
			if cand.Overlaps(u) {
				next = max(next, u32(u.Masked().Addr())+uint64(1)<<(32-u.Bits()))
			}
		}
		v = next
	}
	return netip.Prefix{}, false
}

func overlapsAny(p netip.Prefix, ps []netip.Prefix) bool {
	for _, q := range ps {
		if p.Overlaps(q) {
			return true
		}
	}
	return false
}

func u32(a netip.Addr) uint64 {
	b := a.As4()
	return uint64(b[0])<<24 | uint64(b[1])<<16 | uint64(b[2])<<8 | uint64(b[3])
}

func addr4(v uint64) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

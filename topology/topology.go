// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
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

// ErrNotFound is returned when a member or a running topology does not exist.
var ErrNotFound = errors.New("not found")

// Backend brings a spec up as a running topology (netns here; kind later).
type Backend interface {
	Up(ctx context.Context, spec *Spec) (*Topology, error)
	Name() string
}

// Member is one namespace of a running topology.
type Member struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Netns is the name of the member's network namespace (as `ip netns` lists it).
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
}

// Topology is a running topology. Its data (members, nodes, pods, interfaces) derives
// from the resolved spec and the run ID alone, so any process can reattach with Open.
type Topology struct {
	// Name is <spec.name>-<runid>.
	Name  string
	RunID string
	// Backend that brought the topology up ("netns").
	Backend string
	// Spec is the resolved spec: every default and address filled in.
	Spec *Spec
	// Progress, when set, receives one line per teardown step (never concurrently).
	Progress func(string)

	progressMu sync.Mutex
	members    map[string]Member
	order      []string
	ifaces     map[string][]Interface
	nodes      []Node
	pods       map[string]Pod
}

// newTopology derives every member, interface and pod of a resolved spec.
func newTopology(backend, runID string, r *Spec) *Topology {
	t := &Topology{
		Name: r.Name + "-" + runID, RunID: runID, Backend: backend, Spec: r,
		members: map[string]Member{}, ifaces: map[string][]Interface{}, pods: map[string]Pod{},
	}
	add := func(name string, kind Kind) {
		ns := nsName(runID, name)
		t.members[name] = Member{Name: name, Kind: kind, Netns: ns, NsPath: nsPathOf(ns)}
		t.order = append(t.order, name)
	}
	segPrefix := map[string]netip.Prefix{}
	for _, sg := range r.Segments {
		add(sg.Name, KindSegment)
		segPrefix[sg.Name] = netip.MustParsePrefix(sg.CIDR)
	}
	for _, x := range r.Routers {
		add(x.Name, KindRouter)
	}
	for _, x := range r.Nodes {
		add(x.Name, KindNode)
	}
	for _, x := range r.Clients {
		add(x.Name, KindClient)
	}
	for _, n := range r.Nodes {
		for _, p := range n.Pods {
			add(p.Name, KindPod)
		}
	}
	ports := map[string]int{}
	r.eachInterface(func(_, member string, ifc *InterfaceSpec) {
		port := portName(member, ifc.Name, ports[ifc.Segment])
		ports[ifc.Segment]++
		p := segPrefix[ifc.Segment]
		t.ifaces[member] = append(t.ifaces[member], Interface{
			Name: ifc.Name, Segment: ifc.Segment, MTU: ifc.MTU, Peer: port,
			Address: netip.PrefixFrom(netip.MustParseAddr(ifc.Address), p.Bits()),
			MAC:     macFor(member + "/" + ifc.Name),
		})
		t.ifaces[ifc.Segment] = append(t.ifaces[ifc.Segment], Interface{
			Name: port, Segment: ifc.Segment, MTU: ifc.MTU, Peer: member + "/" + ifc.Name,
		})
	})
	for _, n := range r.Nodes {
		cidr := netip.MustParsePrefix(n.PodCIDR)
		node := Node{Name: n.Name, PodCIDR: cidr, Gateway: cidr.Addr().Next(), Interfaces: t.ifaces[n.Name]}
		for _, i := range node.Interfaces {
			if i.Name == n.InternalInterface {
				node.InternalIP = i.Address.Addr()
			}
		}
		for _, ps := range n.Pods {
			veth := hostVethName(ps.Name)
			pod := Pod{
				Name: ps.Name, Node: n.Name, IP: netip.MustParseAddr(ps.Address), MTU: ps.MTU,
				MAC: macFor(ps.Name + "/eth0"), HostVeth: veth, HostMAC: macFor(n.Name + "/" + veth),
				Gateway: node.Gateway,
			}
			node.Pods = append(node.Pods, pod)
			t.pods[ps.Name] = pod
			t.ifaces[ps.Name] = []Interface{{
				Name: "eth0", Address: netip.PrefixFrom(pod.IP, 32), MTU: pod.MTU, MAC: pod.MAC, Peer: veth,
			}}
		}
		t.nodes = append(t.nodes, node)
	}
	return t
}

// Prefix is the namespace-name prefix of every namespace of the run: pp-<runid>-.
func (t *Topology) Prefix() string { return nsPrefix(t.RunID) }

// Member returns the member (segment, node, router, client or pod) called name.
func (t *Topology) Member(name string) (Member, error) {
	m, ok := t.members[name]
	if !ok {
		return Member{}, fmt.Errorf("topology %s: member %q: %w", t.Name, name, ErrNotFound)
	}
	return m, nil
}

// Members returns every member: segments, routers, nodes, clients, then pods.
func (t *Topology) Members() []Member {
	out := make([]Member, 0, len(t.order))
	for _, n := range t.order {
		out = append(out, t.members[n])
	}
	return out
}

// Nodes returns the resolved nodes in spec order.
func (t *Topology) Nodes() []Node { return slices.Clone(t.nodes) }

// Node returns the node called name.
func (t *Topology) Node(name string) (Node, error) {
	for _, n := range t.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return Node{}, fmt.Errorf("topology %s: node %q: %w", t.Name, name, ErrNotFound)
}

// Pods returns every pod, node by node, in spec order.
func (t *Topology) Pods() []Pod {
	var out []Pod
	for _, n := range t.nodes {
		out = append(out, n.Pods...)
	}
	return out
}

// Pod returns the pod called name.
func (t *Topology) Pod(name string) (Pod, error) {
	p, ok := t.pods[name]
	if !ok {
		return Pod{}, fmt.Errorf("topology %s: pod %q: %w", t.Name, name, ErrNotFound)
	}
	return p, nil
}

// Gateway returns the pod gateway of a node: the first host address of its PodCIDR.
func (t *Topology) Gateway(node string) (netip.Addr, error) {
	n, err := t.Node(node)
	if err != nil {
		return netip.Addr{}, err
	}
	return n.Gateway, nil
}

// Interfaces returns the interfaces of a member: its veths to segments for a node, router
// or client (pod veths of a node are in Pods), eth0 for a pod, the bridge ports for a
// segment.
func (t *Topology) Interfaces(member string) ([]Interface, error) {
	if _, err := t.Member(member); err != nil {
		return nil, err
	}
	return slices.Clone(t.ifaces[member]), nil
}

// Routes returns the routes the harness installs (see PlanRoutes).
func (t *Topology) Routes() (Plan, error) { return PlanRoutes(t.Spec) }

func (t *Topology) progress(format string, args ...any) {
	if t.Progress != nil {
		t.progressMu.Lock()
		defer t.progressMu.Unlock()
		t.Progress(fmt.Sprintf(format, args...))
	}
}

// portName names the bridge port of member's interface: <member>.<ifname>, or p<N> when
// that exceeds 15 characters.
func portName(member, ifname string, n int) string {
	if p := member + "." + ifname; len(p) <= MaxIfNameLen {
		return p
	}
	return fmt.Sprintf("p%d", n)
}

// hostVethName names the node side of a pod's veth: lxc-<pod>, or lxc + 8 hex digits of
// a hash of the pod name when that exceeds 15 characters.
func hostVethName(pod string) string {
	if n := "lxc-" + pod; len(n) <= MaxIfNameLen {
		return n
	}
	sum := sha256.Sum256([]byte(pod))
	return "lxc" + hex.EncodeToString(sum[:4])
}

// macFor derives a stable locally administered unicast MAC from a key.
func macFor(key string) net.HardwareAddr {
	sum := sha256.Sum256([]byte(key))
	mac := net.HardwareAddr(slices.Clone(sum[:6]))
	mac[0] = 0x02
	return mac
}

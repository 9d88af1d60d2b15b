// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
)

// Topology is a running topology. Its data (members, nodes, pods, interfaces) derives
// from the resolved spec and the run ID alone, so any process can reattach with Open.
type Topology struct {
	// Progress, when set, receives one line per teardown step (never concurrently).
	Progress func(string)

	name       string // <spec.name>-<runid>
	runID      string
	spec       *topology.Spec // resolved
	progressMu sync.Mutex
	members    map[string]topology.Member
	order      []string
	ifaces     map[string][]topology.Interface
	nodes      []topology.Node
	pods       map[string]topology.Pod
}

// newTopology derives every member, interface and pod of a resolved spec.
func newTopology(runID string, r *topology.Spec) *Topology {
	t := &Topology{
		name: r.Name + "-" + runID, runID: runID, spec: r,
		members: map[string]topology.Member{}, ifaces: map[string][]topology.Interface{}, pods: map[string]topology.Pod{},
	}
	add := func(name string, kind topology.Kind) {
		ns := nsName(runID, name)
		t.members[name] = topology.Member{Name: name, Kind: kind, Netns: ns, NsPath: nsPathOf(ns)}
		t.order = append(t.order, name)
	}
	segPrefix := map[string]netip.Prefix{}
	for _, sg := range r.Segments {
		add(sg.Name, topology.KindSegment)
		segPrefix[sg.Name] = netip.MustParsePrefix(sg.CIDR)
	}
	for _, x := range r.Routers {
		add(x.Name, topology.KindRouter)
	}
	for _, x := range r.Nodes {
		add(x.Name, topology.KindNode)
	}
	for _, x := range r.Clients {
		add(x.Name, topology.KindClient)
	}
	for _, n := range r.Nodes {
		for _, p := range n.Pods {
			add(p.Name, topology.KindPod)
		}
	}
	ports := map[string]int{}
	r.EachInterface(func(_, member string, ifc *topology.InterfaceSpec) {
		port := portName(member, ifc.Name, ports[ifc.Segment])
		ports[ifc.Segment]++
		p := segPrefix[ifc.Segment]
		t.ifaces[member] = append(t.ifaces[member], topology.Interface{
			Name: ifc.Name, Segment: ifc.Segment, MTU: ifc.MTU, Peer: port,
			Address: netip.PrefixFrom(netip.MustParseAddr(ifc.Address), p.Bits()),
			MAC:     macFor(member + "/" + ifc.Name),
		})
		t.ifaces[ifc.Segment] = append(t.ifaces[ifc.Segment], topology.Interface{
			Name: port, Segment: ifc.Segment, MTU: ifc.MTU, Peer: member + "/" + ifc.Name,
		})
	})
	for _, n := range r.Nodes {
		cidr := netip.MustParsePrefix(n.PodCIDR)
		node := topology.Node{Name: n.Name, PodCIDR: cidr, Gateway: cidr.Addr().Next(), Interfaces: t.ifaces[n.Name],
			Devices: slices.Clone(n.Devices), Zone: n.Zone}
		for _, i := range node.Interfaces {
			if i.Name == n.InternalInterface {
				node.InternalIP = i.Address.Addr()
			}
		}
		for _, ps := range n.Pods {
			veth := hostVethName(ps.Name)
			pod := topology.Pod{
				Name: ps.Name, Node: n.Name, IP: netip.MustParseAddr(ps.Address), MTU: ps.MTU,
				MAC: macFor(ps.Name + "/eth0"), HostVeth: veth, HostMAC: macFor(n.Name + "/" + veth),
				Gateway: node.Gateway,
			}
			node.Pods = append(node.Pods, pod)
			t.pods[ps.Name] = pod
			t.ifaces[ps.Name] = []topology.Interface{{
				Name: "eth0", Address: netip.PrefixFrom(pod.IP, 32), MTU: pod.MTU, MAC: pod.MAC, Peer: veth,
			}}
		}
		t.nodes = append(t.nodes, node)
	}
	return t
}

// Name is <spec.name>-<runid>: `podpath down NAME` takes it.
func (t *Topology) Name() string { return t.name }

// RunID is the run's ID: its namespaces are pp-<runid>-*, its folder /run/podpath/<runid>.
func (t *Topology) RunID() string { return t.runID }

// Backend returns "netns".
func (t *Topology) Backend() string { return BackendName }

// Spec is the resolved spec: every default and address filled in.
func (t *Topology) Spec() *topology.Spec { return t.spec }

// Prefix is the namespace-name prefix of every namespace of the run: pp-<runid>-.
func (t *Topology) Prefix() string { return nsPrefix(t.runID) }

// Member returns the member (segment, node, router, client or pod) called name.
func (t *Topology) Member(name string) (topology.Member, error) {
	m, ok := t.members[name]
	if !ok {
		return topology.Member{}, fmt.Errorf("topology %s: member %q: %w", t.name, name, topology.ErrNotFound)
	}
	return m, nil
}

// Members returns every member: segments, routers, nodes, clients, then pods.
func (t *Topology) Members() []topology.Member {
	out := make([]topology.Member, 0, len(t.order))
	for _, n := range t.order {
		out = append(out, t.members[n])
	}
	return out
}

// Nodes returns the resolved nodes in spec order.
func (t *Topology) Nodes() []topology.Node { return slices.Clone(t.nodes) }

// Node returns the node called name.
func (t *Topology) Node(name string) (topology.Node, error) {
	for _, n := range t.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return topology.Node{}, fmt.Errorf("topology %s: node %q: %w", t.name, name, topology.ErrNotFound)
}

// Pods returns every pod, node by node, in spec order.
func (t *Topology) Pods() []topology.Pod {
	var out []topology.Pod
	for _, n := range t.nodes {
		out = append(out, n.Pods...)
	}
	return out
}

// Pod returns the pod called name.
func (t *Topology) Pod(name string) (topology.Pod, error) {
	p, ok := t.pods[name]
	if !ok {
		return topology.Pod{}, fmt.Errorf("topology %s: pod %q: %w", t.name, name, topology.ErrNotFound)
	}
	return p, nil
}

// Interfaces returns the interfaces of a member: its veths to segments for a node, router
// or client (pod veths of a node are in Pods), eth0 for a pod, the bridge ports for a
// segment.
func (t *Topology) Interfaces(member string) ([]topology.Interface, error) {
	if _, err := t.Member(member); err != nil {
		return nil, err
	}
	return slices.Clone(t.ifaces[member]), nil
}

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
	if p := member + "." + ifname; len(p) <= topology.MaxIfNameLen {
		return p
	}
	return fmt.Sprintf("p%d", n)
}

// hostVethName names the node side of a pod's veth: lxc-<pod>, or lxc + 8 hex digits of
// a hash of the pod name when that exceeds 15 characters.
func hostVethName(pod string) string {
	if n := "lxc-" + pod; len(n) <= topology.MaxIfNameLen {
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

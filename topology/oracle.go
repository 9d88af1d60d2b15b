// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
)

// The oracle predicts, from the spec alone, what a packet between two members of a
// topology crosses: the hosts and links on the way, each link's MTU, the IPv4 TTL and
// the MACs on every link, and whether the packet is encapsulated. Checks take their
// expected values from it, never from what the datapath under test reports.

// InitialTTL is the TTL Linux puts in the packets it originates (net.ipv4.ip_default_ttl),
// and the outer TTL of podpath's tunnels.
const InitialTTL = 64

// Encapsulation header sizes on an IPv4 underlay: what a tunnel adds to an inner IPv4
// packet is the outer IPv4, UDP and tunnel headers plus the inner Ethernet header.
const (
	outerIPv4Len     = 20
	outerUDPLen      = 8
	vxlanHeaderLen   = 8
	geneveHeaderLen  = 8 // without options
	innerEthernetLen = 14
)

// TunnelOverhead returns the bytes a tunnel adds to an inner IPv4 packet on an IPv4
// underlay: 50 for "vxlan" and for "geneve" without options, plus optBytes of Geneve
// options; 20 for "ipip" (the outer IPv4 header). It is computed from the header sizes, not asked of the datapath.
func TunnelOverhead(tunnel string, optBytes int) (int, error) {
	switch tunnel {
	case "vxlan":
		return outerIPv4Len + outerUDPLen + vxlanHeaderLen + innerEthernetLen, nil
	case "geneve":
		return outerIPv4Len + outerUDPLen + geneveHeaderLen + optBytes + innerEthernetLen, nil
	case "ipip":
		return outerIPv4Len, nil
	}
	return 0, fmt.Errorf("tunnel overhead: unknown tunnel %q (want vxlan, geneve or ipip)", tunnel)
}

// OracleOptions says how the nodes carry pod traffic, which the spec alone does not.
type OracleOptions struct {
	// Tunnel is the encapsulation of pod traffic between nodes: "vxlan" or "geneve";
	// empty for native routing.
	Tunnel string
	// TunnelOverhead is what the encapsulation adds to an inner packet; 0: the default
	// of Tunnel (TunnelOverhead(Tunnel, 0), 50 on an IPv4 underlay).
	TunnelOverhead int
	// DirectNodeRoutes: every node routes another node's PodCIDR straight to that node's
	// InternalIP when it is on a segment they share (auto-direct-node-routes in native
	// routing). Such a route takes the place of a planned one.
	DirectNodeRoutes bool
	// CrossSubnet (tunnel-mode cross-subnet, Calico's CrossSubnet): a node reaches a
	// peer whose InternalIP lies in the subnet of its own InternalIP's interface
	// natively, by a route to the peer's PodCIDR via the peer; only other peers
	// through the Tunnel.
	CrossSubnet bool
	// Wiring names what the backend, not the spec, decides; optional.
	Wiring Wiring
}

// Wiring names what a backend chooses and the spec does not fix: the node side of each
// pod's veth and every interface's MAC. A nil function leaves names empty and MACs nil.
type Wiring struct {
	// HostVeth returns the name of the node-side veth of pod.
	HostVeth func(pod string) string
	// MAC returns the MAC of member's interface iface (a pod's is "eth0"; a pod's host
	// veth is an interface of its node).
	MAC func(member, iface string) net.HardwareAddr
}

// ClusterWiring reads the wiring of a running cluster: its pods' host veths and every
// interface's MAC (the netns backend derives them from the member and interface names).
func ClusterWiring(c Cluster) Wiring {
	pods := map[string]Pod{}
	for _, p := range c.Pods() {
		pods[p.Name] = p
	}
	return Wiring{
		HostVeth: func(pod string) string { return pods[pod].HostVeth },
		MAC: func(member, iface string) net.HardwareAddr {
			if p, ok := pods[member]; ok && iface == "eth0" {
				return p.MAC
			}
			for _, p := range pods {
				if p.Node == member && p.HostVeth == iface {
					return p.HostMAC
				}
			}
			ifs, _ := c.Interfaces(member)
			for _, i := range ifs {
				if i.Name == iface {
					return i.MAC
				}
			}
			return nil
		},
	}
}

// Link is one wire a packet crosses: from one host's interface to the next host's.
type Link struct {
	From, FromIf string
	To, ToIf     string
	// Segment is the segment the link crosses; empty for a pod's veth and a tunnel.
	Segment string `json:"segment,omitempty"`
	// Tunnel is the encapsulation when the link is a tunnel between two nodes: the
	// packet crosses Underlay inside outer headers.
	Tunnel string `json:"tunnel,omitempty"`
	// MTU is the largest IPv4 packet that crosses the link: the smaller of the two ends'
	// MTUs, for a tunnel the underlay path MTU less the overhead. 0: not counted (a pod's
	// veth whose MTU the agent under test decides).
	MTU int `json:"mtu"`
	// Silent: the receiving end's MTU is the smaller one, so a larger frame is dropped
	// on arrival without an ICMP error (a black hole, not path MTU discovery).
	Silent bool `json:"silent,omitempty"`
	// TTL is the IPv4 TTL of the packet on this link (the inner one on a tunnel).
	TTL int `json:"ttl"`
	// SrcMAC and DstMAC are the frame's addresses on the link, where the wiring names
	// them (nil on a tunnel: see Underlay).
	SrcMAC net.HardwareAddr `json:"srcMAC,omitempty"`
	DstMAC net.HardwareAddr `json:"dstMAC,omitempty"`
	// Underlay is the path of the outer packets of a tunnel link.
	Underlay *Path `json:"underlay,omitempty"`
}

func (l Link) String() string {
	s := fmt.Sprintf("%s/%s -> %s/%s", l.From, l.FromIf, l.To, l.ToIf)
	switch {
	case l.Tunnel != "":
		under := "?"
		if l.Underlay != nil {
			under = l.Underlay.Hops()
		}
		s += fmt.Sprintf(" (%s over %s", l.Tunnel, under)
	case l.Segment != "":
		s += " (segment " + l.Segment
	default:
		s += " (veth"
	}
	if l.MTU > 0 {
		s += fmt.Sprintf(", MTU %d", l.MTU)
	}
	if l.Silent {
		s += ", receiver's MTU smaller: silent drop"
	}
	return s + fmt.Sprintf(", TTL %d)", l.TTL)
}

// Path is one way a packet goes from a member to an address.
type Path struct {
	From string     `json:"from"`
	Dst  netip.Addr `json:"dst"`
	// To is the member that owns Dst.
	To    string `json:"to"`
	Links []Link `json:"links"`
}

// Hosts returns the members the packet visits, source and destination included.
func (p Path) Hosts() []string {
	hosts := []string{p.From}
	for _, l := range p.Links {
		hosts = append(hosts, l.To)
	}
	return hosts
}

// Hops renders the hosts as "a -> b -> c".
func (p Path) Hops() string { return strings.Join(p.Hosts(), " -> ") }

// Routers returns the members between source and destination that forward the packet
// (nodes and routers): each takes one off its TTL.
func (p Path) Routers() []string {
	h := p.Hosts()
	return h[1 : len(h)-1]
}

// MTU is the path MTU: the smallest counted link MTU (0 when no link is counted).
func (p Path) MTU() int {
	mtu := 0
	for _, l := range p.Links {
		if l.MTU > 0 && (mtu == 0 || l.MTU < mtu) {
			mtu = l.MTU
		}
	}
	return mtu
}

// Bottleneck returns the first link of the smallest MTU: the host at its From end
// refuses a larger DF packet (a node or router with ICMP frag-needed carrying the MTU,
// the source itself with EMSGSIZE), unless the link is Silent.
func (p Path) Bottleneck() (Link, bool) {
	mtu := p.MTU()
	for _, l := range p.Links {
		if l.MTU == mtu && mtu > 0 {
			return l, true
		}
	}
	return Link{}, false
}

// Encapsulated says whether a link of the path is a tunnel.
func (p Path) Encapsulated() bool {
	return slices.ContainsFunc(p.Links, func(l Link) bool { return l.Tunnel != "" })
}

// ArrivalTTL is the TTL the packet has when it reaches the destination.
func (p Path) ArrivalTTL() int {
	if len(p.Links) == 0 {
		return InitialTTL
	}
	return p.Links[len(p.Links)-1].TTL
}

func (p Path) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s (%s): path MTU %d", p.From, p.To, p.Dst, p.MTU())
	for _, l := range p.Links {
		b.WriteString("\n  " + l.String())
		if l.Underlay != nil {
			for _, u := range l.Underlay.Links {
				b.WriteString("\n    underlay: " + u.String())
			}
		}
	}
	return b.String()
}

// Paths is every way (ECMP alternatives) from a member to an address.
type Paths []Path

// MTU is the MTU every alternative carries: the smallest path MTU (a "must fit" value).
func (ps Paths) MTU() int {
	mtu := 0
	for _, p := range ps {
		if m := p.MTU(); m > 0 && (mtu == 0 || m < mtu) {
			mtu = m
		}
	}
	return mtu
}

// MaxMTU is the largest path MTU of an alternative: a DF packet over it is refused
// whichever way it goes.
func (ps Paths) MaxMTU() int {
	mtu := 0
	for _, p := range ps {
		mtu = max(mtu, p.MTU())
	}
	return mtu
}

// MTUs is the set of path MTUs of the alternatives, ascending.
func (ps Paths) MTUs() []int {
	var out []int
	for _, p := range ps {
		if m := p.MTU(); !slices.Contains(out, m) {
			out = append(out, m)
		}
	}
	slices.Sort(out)
	return out
}

// Refusers returns the members that may refuse a DF packet of the given size, one per
// alternative where it does not fit: the From end of the first link it does not fit.
func (ps Paths) Refusers(size int) []string {
	var out []string
	for _, p := range ps {
		for _, l := range p.Links {
			if l.MTU > 0 && size > l.MTU {
				if !slices.Contains(out, l.From) {
					out = append(out, l.From)
				}
				break
			}
		}
	}
	return out
}

// Silent says whether a DF packet of size is dropped without any ICMP error on every
// alternative that refuses it: where it first does not fit, the receiving end's MTU is
// the small one.
func (ps Paths) Silent(size int) bool {
	silent := false
	for _, p := range ps {
		for _, l := range p.Links {
			if l.MTU > 0 && size > l.MTU {
				if !l.Silent {
					return false
				}
				silent = true
				break
			}
		}
	}
	return silent
}

// Encapsulated says whether every alternative is encapsulated.
func (ps Paths) Encapsulated() bool {
	return len(ps) > 0 && !slices.ContainsFunc(ps, func(p Path) bool { return !p.Encapsulated() })
}

func (ps Paths) String() string {
	var parts []string
	for i, p := range ps {
		s := p.String()
		if len(ps) > 1 {
			s = fmt.Sprintf("alternative %d: %s", i+1, s)
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, "\n")
}

// Oracle answers path questions about one topology.
type Oracle struct {
	spec   *Spec // resolved
	opts   OracleOptions
	routes Plan
	hosts  map[string]*oracleHost
	owners map[netip.Addr]string // address -> member (interfaces and pods)
	pods   map[string]oraclePod
}

type oracleHost struct {
	name string
	kind Kind
	ifs  []oracleIf
	// podCIDR and pods: nodes only.
	podCIDR netip.Prefix
	pods    []string
	// internal is the node's InternalIP.
	internal netip.Addr
}

type oracleIf struct {
	name    string
	segment string
	prefix  netip.Prefix // address with the segment's prefix length
	mtu     int
}

type oraclePod struct {
	name, node string
	ip         netip.Addr
	mtu        int // 0: not counted
}

// maxAlternatives bounds the ECMP alternatives of one path.
const maxAlternatives = 64

// NewOracle builds the oracle of a spec (resolved first) with the routes PlanRoutes
// plans. A pod's own veth counts toward the path MTU only where the spec sets the pod's
// MTU, that is with podNetwork: kernel (the harness applies the spec's pod MTU, its
// node's first interface MTU by default); with podNetwork: agent the agent under test
// decides it, so the oracle does not take it as given.
func NewOracle(spec *Spec, opts OracleOptions) (*Oracle, error) {
	r, err := spec.Resolve()
	if err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	if opts.Tunnel != "" && opts.TunnelOverhead == 0 {
		if opts.TunnelOverhead, err = TunnelOverhead(opts.Tunnel, 0); err != nil {
			return nil, fmt.Errorf("oracle: %w", err)
		}
	}
	planned := r
	if r.HasBGP() {
		// BGP converges to the planned PodCIDR routes (bgp.go WithoutBGP).
		planned = r.WithoutBGP()
		planned.PodRoutes = PodRoutesAll
	}
	plan, err := PlanRoutes(planned)
	if err != nil {
		return nil, fmt.Errorf("oracle: %w", err)
	}
	o := &Oracle{spec: r, opts: opts, routes: plan, hosts: map[string]*oracleHost{},
		owners: map[netip.Addr]string{}, pods: map[string]oraclePod{}}
	segBits := map[string]int{}
	for _, sg := range r.Segments {
		segBits[sg.Name] = netip.MustParsePrefix(sg.CIDR).Bits()
	}
	add := func(name string, kind Kind, ifs []InterfaceSpec) *oracleHost {
		h := &oracleHost{name: name, kind: kind}
		for _, i := range ifs {
			a := netip.MustParseAddr(i.Address)
			h.ifs = append(h.ifs, oracleIf{i.Name, i.Segment, netip.PrefixFrom(a, segBits[i.Segment]), i.MTU})
			o.owners[a] = name
		}
		o.hosts[name] = h
		return h
	}
	for _, x := range r.Routers {
		add(x.Name, KindRouter, x.Interfaces)
	}
	for _, x := range r.Clients {
		add(x.Name, KindClient, x.Interfaces)
	}
	for _, n := range r.Nodes {
		h := add(n.Name, KindNode, n.Interfaces)
		h.podCIDR = netip.MustParsePrefix(n.PodCIDR)
		for _, i := range h.ifs {
			if i.name == n.InternalInterface {
				h.internal = i.prefix.Addr()
			}
		}
		for _, p := range n.Pods {
			op := oraclePod{name: p.Name, node: n.Name, ip: netip.MustParseAddr(p.Address)}
			if r.PodNetwork == PodNetworkKernel {
				op.mtu = p.MTU
			}
			o.pods[p.Name] = op
			o.owners[op.ip] = p.Name
			h.pods = append(h.pods, p.Name)
		}
	}
	if opts.DirectNodeRoutes || (opts.CrossSubnet && opts.Tunnel != "") {
		o.addDirectNodeRoutes(r)
	}
	return o, nil
}

// addDirectNodeRoutes puts in each node a route to every other node's PodCIDR via that
// node's InternalIP, where a segment of the node holds it, replacing a planned one.
func (o *Oracle) addDirectNodeRoutes(r *Spec) {
	for _, a := range r.Nodes {
		h := o.hosts[a.Name]
		for _, b := range r.Nodes {
			peer := o.hosts[b.Name]
			if a.Name == b.Name {
				continue
			}
			for _, i := range h.ifs {
				if !i.prefix.Masked().Contains(peer.internal) {
					continue
				}
				routes := slices.DeleteFunc(slices.Clone(o.routes[a.Name]), func(rt Route) bool { return rt.Dst == peer.podCIDR })
				o.routes[a.Name] = append(routes, Route{Dst: peer.podCIDR, NextHops: []NextHop{{Via: peer.internal, Dev: i.name}}})
				break
			}
		}
	}
}

// sameSubnet says whether peer's InternalIP lies in the subnet of the interface that
// holds host's InternalIP (the cross-subnet rule).
func (o *Oracle) sameSubnet(host, peer *oracleHost) bool {
	for _, i := range host.ifs {
		if i.prefix.Addr() == host.internal {
			return i.prefix.Masked().Contains(peer.internal)
		}
	}
	return false
}

// Spec is the resolved spec the oracle answers for.
func (o *Oracle) Spec() *Spec { return o.spec }

// Options are the options the oracle was built with (the tunnel overhead filled in).
func (o *Oracle) Options() OracleOptions { return o.opts }

// PodToPod returns the paths of a packet from pod src to pod dst.
func (o *Oracle) PodToPod(src, dst string) (Paths, error) {
	to, ok := o.pods[dst]
	if !ok {
		return nil, fmt.Errorf("oracle: pod %q: %w", dst, ErrNotFound)
	}
	return o.PathTo(src, to.ip)
}

// PodToNode returns the paths of a packet from a pod to a node's InternalIP.
func (o *Oracle) PodToNode(pod, node string) (Paths, error) {
	n, ok := o.hosts[node]
	if !ok || n.kind != KindNode {
		return nil, fmt.Errorf("oracle: node %q: %w", node, ErrNotFound)
	}
	return o.PathTo(pod, n.internal)
}

// NodeToNode returns the paths between two nodes' InternalIPs: the underlay path the
// tunnel between them takes.
func (o *Oracle) NodeToNode(a, b string) (Paths, error) {
	n, ok := o.hosts[b]
	if !ok || n.kind != KindNode {
		return nil, fmt.Errorf("oracle: node %q: %w", b, ErrNotFound)
	}
	return o.PathTo(a, n.internal)
}

// PairPaths are the paths of one ordered pair of pods.
type PairPaths struct {
	From, To string
	Paths    Paths
}

// PodPairs returns the paths of every ordered pair of distinct pods, in spec order.
func (o *Oracle) PodPairs() ([]PairPaths, error) {
	var names []string
	for _, n := range o.spec.Nodes {
		for _, p := range n.Pods {
			names = append(names, p.Name)
		}
	}
	var out []PairPaths
	for _, a := range names {
		for _, b := range names {
			if a == b {
				continue
			}
			ps, err := o.PodToPod(a, b)
			if err != nil {
				return nil, err
			}
			out = append(out, PairPaths{a, b, ps})
		}
	}
	return out, nil
}

// PathTo returns every path (ECMP alternatives) of a packet that member from (a pod,
// node, router or client) originates to dst, forwarding as the hosts' tables say:
// local addresses, connected segments, a node's own pods, then the longest matching
// planned route. A node sends pod traffic for another node's PodCIDR through the tunnel
// to that node when OracleOptions.Tunnel is set.
func (o *Oracle) PathTo(from string, dst netip.Addr) (Paths, error) {
	to, ok := o.owners[dst]
	if !ok {
		return nil, fmt.Errorf("oracle: %s belongs to no member of topology %s", dst, o.spec.Name)
	}
	var out Paths
	emit := func(links []Link) error {
		if len(out) >= maxAlternatives {
			return fmt.Errorf("oracle: more than %d paths from %s to %s", maxAlternatives, from, dst)
		}
		out = append(out, Path{From: from, Dst: dst, To: to, Links: slices.Clone(links)})
		return nil
	}
	if p, ok := o.pods[from]; ok {
		if p.ip == dst {
			return Paths{{From: from, Dst: dst, To: to}}, nil
		}
		// A pod has one route: the default one via its node.
		first := o.podLink(p, true, InitialTTL)
		err := o.walk(p.node, dst, InitialTTL, false, []Link{first}, map[string]bool{from: true}, emit)
		return out, err
	}
	if _, ok := o.hosts[from]; !ok {
		return nil, fmt.Errorf("oracle: member %q: %w", from, ErrNotFound)
	}
	err := o.walk(from, dst, InitialTTL, true, nil, map[string]bool{}, emit)
	return out, err
}

// podLink is the veth between a pod and its node, in the direction up (pod -> node) or
// down, with the TTL the packet has on it.
func (o *Oracle) podLink(p oraclePod, up bool, ttl int) Link {
	veth := ""
	if o.opts.Wiring.HostVeth != nil {
		veth = o.opts.Wiring.HostVeth(p.name)
	}
	l := Link{From: p.name, FromIf: "eth0", To: p.node, ToIf: veth, MTU: p.mtu, TTL: ttl}
	if !up {
		l.From, l.FromIf, l.To, l.ToIf = p.node, veth, p.name, "eth0"
	}
	l.SrcMAC, l.DstMAC = o.mac(l.From, l.FromIf), o.mac(l.To, l.ToIf)
	return l
}

func (o *Oracle) mac(member, iface string) net.HardwareAddr {
	if o.opts.Wiring.MAC == nil || iface == "" {
		return nil
	}
	return o.opts.Wiring.MAC(member, iface)
}

// walk forwards a packet that arrives at host h with the given TTL (origin: h sends it)
// toward dst, appending links, and calls emit with every complete path.
func (o *Oracle) walk(h string, dst netip.Addr, ttl int, origin bool, links []Link, seen map[string]bool, emit func([]Link) error) error {
	host := o.hosts[h]
	for _, i := range host.ifs {
		if i.prefix.Addr() == dst {
			return emit(links)
		}
	}
	if seen[h] {
		return fmt.Errorf("oracle: routing loop at %s toward %s: %s", h, dst, Path{Links: links}.Hops())
	}
	seen = withSeen(seen, h)
	if !origin {
		if ttl <= 1 {
			return fmt.Errorf("oracle: TTL expires at %s toward %s", h, dst)
		}
		ttl--
	}
	if host.kind == KindNode {
		if host.podCIDR.Contains(dst) {
			pod, ok := o.owners[dst]
			if !ok {
				return fmt.Errorf("oracle: %s in %s's podCIDR is no pod", dst, h)
			}
			return emit(append(links, o.podLink(o.pods[pod], false, ttl)))
		}
		if peer := o.nodeOfPodIP(dst); peer != nil && o.opts.Tunnel != "" && !(o.opts.CrossSubnet && o.sameSubnet(host, peer)) {
			return o.tunnel(host, peer, dst, ttl, links, seen, emit)
		}
	}
	for _, i := range host.ifs {
		if !i.prefix.Masked().Contains(dst) {
			continue
		}
		next := o.owners[dst]
		l, err := o.segmentLink(host, i, next, dst, ttl)
		if err != nil {
			return err
		}
		return o.walk(next, dst, ttl, false, append(links, l), seen, emit)
	}
	rt, ok := longestMatch(o.routes[h], dst)
	if !ok {
		return fmt.Errorf("oracle: %s has no route to %s (after %s)", h, dst, Path{From: h, Links: links}.Hops())
	}
	for _, nh := range rt.NextHops {
		i, ok := host.ifNamed(nh.Dev)
		if !ok {
			return fmt.Errorf("oracle: %s route %s: no interface %s", h, rt, nh.Dev)
		}
		next, ok := o.owners[nh.Via]
		if !ok {
			return fmt.Errorf("oracle: %s route %s: next hop %s belongs to no member", h, rt, nh.Via)
		}
		l, err := o.segmentLink(host, i, next, nh.Via, ttl)
		if err != nil {
			return err
		}
		if err := o.walk(next, dst, ttl, false, append(slices.Clone(links), l), seen, emit); err != nil {
			return err
		}
	}
	return nil
}

// tunnel carries a packet for peer's pod dst from node host to peer encapsulated: one
// tunnel link per underlay path between the InternalIPs, then peer delivers it.
func (o *Oracle) tunnel(host, peer *oracleHost, dst netip.Addr, ttl int, links []Link, seen map[string]bool, emit func([]Link) error) error {
	var under Paths
	err := o.walk(host.name, peer.internal, InitialTTL, true, nil, map[string]bool{}, func(ls []Link) error {
		under = append(under, Path{From: host.name, Dst: peer.internal, To: peer.name, Links: slices.Clone(ls)})
		return nil
	})
	if err != nil {
		return fmt.Errorf("oracle: tunnel %s -> %s: %w", host.name, peer.name, err)
	}
	for _, u := range under {
		l := Link{From: host.name, To: peer.name, Tunnel: o.opts.Tunnel, TTL: ttl, Underlay: &u}
		if len(u.Links) > 0 {
			l.FromIf, l.ToIf = u.Links[0].FromIf, u.Links[len(u.Links)-1].ToIf
		}
		if m := u.MTU(); m > 0 {
			l.MTU = m - o.opts.TunnelOverhead
		}
		// The peer decapsulates and forwards the inner packet: walk takes one off its TTL.
		if err := o.walk(peer.name, dst, ttl, false, append(slices.Clone(links), l), seen, emit); err != nil {
			return err
		}
	}
	return nil
}

// segmentLink is the link from host's interface i to member next's interface holding via.
func (o *Oracle) segmentLink(host *oracleHost, i oracleIf, next string, via netip.Addr, ttl int) (Link, error) {
	nh, ok := o.hosts[next]
	if !ok {
		return Link{}, fmt.Errorf("oracle: %s on segment %s belongs to no host", via, i.segment)
	}
	for _, j := range nh.ifs {
		if j.prefix.Addr() != via {
			continue
		}
		if j.segment != i.segment {
			return Link{}, fmt.Errorf("oracle: %s/%s and %s/%s are on different segments", host.name, i.name, next, j.name)
		}
		l := Link{From: host.name, FromIf: i.name, To: next, ToIf: j.name, Segment: i.segment,
			MTU: min(i.mtu, j.mtu), Silent: j.mtu < i.mtu, TTL: ttl}
		l.SrcMAC, l.DstMAC = o.mac(l.From, l.FromIf), o.mac(l.To, l.ToIf)
		return l, nil
	}
	return Link{}, fmt.Errorf("oracle: %s has no interface with %s", next, via)
}

// nodeOfPodIP returns the node whose PodCIDR holds a, or nil.
func (o *Oracle) nodeOfPodIP(a netip.Addr) *oracleHost {
	for _, n := range o.spec.Nodes {
		if h := o.hosts[n.Name]; h.podCIDR.Contains(a) {
			return h
		}
	}
	return nil
}

func (h *oracleHost) ifNamed(name string) (oracleIf, bool) {
	for _, i := range h.ifs {
		if i.name == name {
			return i, true
		}
	}
	return oracleIf{}, false
}

// longestMatch returns the route with the longest prefix holding dst.
func longestMatch(routes []Route, dst netip.Addr) (Route, bool) {
	best, ok := Route{}, false
	for _, r := range routes {
		if r.Dst.Contains(dst) && len(r.NextHops) > 0 && (!ok || r.Dst.Bits() > best.Dst.Bits()) {
			best, ok = r, true
		}
	}
	return best, ok
}

// withSeen returns a copy of seen with k added: every ECMP branch has its own.
func withSeen(seen map[string]bool, k string) map[string]bool {
	c := make(map[string]bool, len(seen)+1)
	for s := range seen {
		c[s] = true
	}
	c[k] = true
	return c
}

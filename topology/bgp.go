// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
)

// BGPSpec makes a router or a node a BGP speaker:
//
//	routers: [{name: r1, bgp: {asn: 65000, daemon: bird, routeReflector: true}, ...}]
//	nodes:   [{name: node1, bgp: {asn: 65000}, ...}]
//
// A router runs the daemon inside its namespace with a configuration generated from the
// topology (BIRDConfig): one session with every BGP node on its segments. A node's BGP
// speaker is its agent (enable-bgp-control-plane); its peers are BGPNeighbors.
type BGPSpec struct {
	// ASN is the autonomous system number (1..4294967294). Equal ASNs make iBGP
	// sessions, different ones eBGP.
	ASN uint32 `json:"asn"`
	// Daemon is the routing daemon of a router: BGPDaemonBIRD (the default) or
	// BGPDaemonFRR. Nodes leave it empty: their speaker is the agent.
	Daemon string `json:"daemon,omitempty"`
	// RouteReflector makes a router reflect the routes of its iBGP clients (the
	// nodes of its own ASN) to each other: one session per node instead of a full mesh.
	RouteReflector bool `json:"routeReflector,omitempty"`
}

// BGPTopologySpec holds the settings every BGP speaker of the topology shares.
type BGPTopologySpec struct {
	// NodeMesh peers every BGP node with every other one as well (a full mesh, as
	// Calico's default node-to-node mesh); without it nodes peer with routers only.
	NodeMesh bool `json:"nodeMesh,omitempty"`
	// HoldTime in seconds (3..65535); DefaultBGPHoldTime when zero. A peer that
	// stops sending for this long is declared down and its routes withdrawn.
	HoldTime int `json:"holdTime,omitempty"`
	// KeepaliveTime in seconds, less than HoldTime; HoldTime/3 when zero.
	KeepaliveTime int `json:"keepaliveTime,omitempty"`
}

// BGP daemons a router can run, and their Debian packages.
const (
	BGPDaemonBIRD = "bird"
	// BIRDPackage is the Debian package that ships bird and birdc (BIRD 2).
	BIRDPackage = "bird2"
	// BGPDaemonFRR is FRRouting: zebra (the kernel routes) and bgpd, vtysh as the CLI.
	BGPDaemonFRR = "frr"
	// FRRPackage is the Debian package that ships zebra, bgpd and vtysh.
	FRRPackage = "frr"
	// DefaultBGPHoldTime is BGP's customary hold time (RFC 4271 suggests 90 s).
	DefaultBGPHoldTime = 90
	maxASN             = 4294967294
)

// HasBGP reports whether any router or node of the spec speaks BGP.
func (s *Spec) HasBGP() bool {
	for _, r := range s.Routers {
		if r.BGP != nil {
			return true
		}
	}
	for _, n := range s.Nodes {
		if n.BGP != nil {
			return true
		}
	}
	return false
}

// RouterBGP is the bgp block of the router named name (nil: none, or no such router).
// A BGP router's namespace hashes ECMP flows by their L4 tuple
// (net.ipv4.fib_multipath_hash_policy=1).
func (s *Spec) RouterBGP(name string) *BGPSpec {
	for _, r := range s.Routers {
		if r.Name == name {
			return r.BGP
		}
	}
	return nil
}

func cloneBGP(b *BGPSpec) *BGPSpec {
	if b == nil {
		return nil
	}
	c := *b
	return &c
}

// resolveBGP fills in BGP defaults: the daemon of BGP routers, the timers.
func (r *Spec) resolveBGP() {
	if !r.HasBGP() {
		return
	}
	for i := range r.Routers {
		if b := r.Routers[i].BGP; b != nil && b.Daemon == "" {
			b.Daemon = BGPDaemonBIRD
		}
	}
	if r.BGP == nil {
		r.BGP = &BGPTopologySpec{}
	}
	if r.BGP.HoldTime == 0 {
		r.BGP.HoldTime = DefaultBGPHoldTime
	}
	if r.BGP.KeepaliveTime == 0 {
		r.BGP.KeepaliveTime = max(1, r.BGP.HoldTime/3)
	}
}

// checkBGP adds the BGP rules to e, each with its field path.
func (s *Spec) checkBGP(e *errs) {
	has := s.HasBGP()
	if s.BGP != nil {
		if !has {
			e.add("bgp", "no router or node has a bgp block: give routers[].bgp or nodes[].bgp an asn")
		}
		if h := s.BGP.HoldTime; h != 0 && (h < 3 || h > 65535) {
			e.add("bgp.holdTime", "%d is out of range 3..65535 seconds (0: %d)", h, DefaultBGPHoldTime)
		}
		if k := s.BGP.KeepaliveTime; k < 0 || (k > 0 && k >= max(s.BGP.HoldTime, 3) && s.BGP.HoldTime != 0) {
			e.add("bgp.keepaliveTime", "%d must be positive and less than bgp.holdTime %d", k, s.BGP.HoldTime)
		}
	}
	if !has {
		return
	}
	if s.PodRoutes == PodRoutesAll || s.PodRoutes == PodRoutesRouters {
		e.add("podRoutes", "%q installs PodCIDR routes statically, but BGP distributes them in this topology: use %q (the default with bgp)", s.PodRoutes, PodRoutesNone)
	}
	asnOK := func(path string, b *BGPSpec) {
		if b.ASN == 0 || b.ASN > maxASN {
			e.add(path+".asn", "%d is out of range 1..%d (required)", b.ASN, uint64(maxASN))
		}
	}
	for i, r := range s.Routers {
		if r.BGP == nil {
			continue
		}
		path := fmt.Sprintf("routers[%d].bgp", i)
		asnOK(path, r.BGP)
		switch r.BGP.Daemon {
		case "", BGPDaemonBIRD, BGPDaemonFRR:
		default:
			e.add(path+".daemon", "%q is not one of %s, %s (default %s)", r.BGP.Daemon, BGPDaemonBIRD, BGPDaemonFRR, BGPDaemonBIRD)
		}
		if r.BGP.RouteReflector {
			clients := 0
			for _, n := range s.Nodes {
				if n.BGP != nil && n.BGP.ASN == r.BGP.ASN && sharesSegment(r.Interfaces, n.Interfaces) {
					clients++
				}
			}
			if clients == 0 {
				e.add(path+".routeReflector", "no BGP node on the router's segments has its ASN %d: a route reflector serves iBGP clients", r.BGP.ASN)
			}
		}
	}
	for i, n := range s.Nodes {
		if n.BGP == nil {
			continue
		}
		path := fmt.Sprintf("nodes[%d].bgp", i)
		asnOK(path, n.BGP)
		if n.BGP.Daemon != "" {
			e.add(path+".daemon", "a node's BGP speaker is its agent (enable-bgp-control-plane): leave daemon empty")
		}
		if n.BGP.RouteReflector {
			e.add(path+".routeReflector", "only a router can be a route reflector")
		}
		if s.PodNetwork != PodNetworkAgent {
			e.add(path, "needs podNetwork: %s: the node's agent is its BGP speaker", PodNetworkAgent)
		}
	}
}

func sharesSegment(a, b []InterfaceSpec) bool {
	for _, x := range a {
		for _, y := range b {
			if x.Segment == y.Segment {
				return true
			}
		}
	}
	return false
}

// BGPPeer is one BGP session as one side sees it.
type BGPPeer struct {
	// Name is the peer's member name.
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Address is the peer's address; Local is this side's address on the session.
	Address netip.Addr `json:"address"`
	Local   netip.Addr `json:"local"`
	ASN     uint32     `json:"asn"`
	// RouteReflectorClient: this side (a router) reflects the peer's routes.
	RouteReflectorClient bool `json:"routeReflectorClient,omitempty"`
}

// BGPNeighbors returns the BGP sessions of member (a router or node of a resolved
// spec), in spec order: a router peers with every BGP node on its segments (over the
// first shared one); a node with every BGP router on its segments and, with
// bgp.nodeMesh, with every other BGP node at its internal address. Nil when member does
// not speak BGP.
func (s *Spec) BGPNeighbors(member string) []BGPPeer {
	addrOn := func(ifs []InterfaceSpec, seg string) (netip.Addr, bool) {
		for _, i := range ifs {
			if i.Segment == seg {
				a, err := netip.ParseAddr(i.Address)
				return a, err == nil
			}
		}
		return netip.Addr{}, false
	}
	shared := func(local, remote []InterfaceSpec) (netip.Addr, netip.Addr, bool) {
		for _, l := range local {
			if ra, ok := addrOn(remote, l.Segment); ok {
				la, _ := netip.ParseAddr(l.Address)
				return la, ra, true
			}
		}
		return netip.Addr{}, netip.Addr{}, false
	}
	var out []BGPPeer
	for _, r := range s.Routers {
		if r.Name != member || r.BGP == nil {
			continue
		}
		for _, n := range s.Nodes {
			if n.BGP == nil {
				continue
			}
			if la, ra, ok := shared(r.Interfaces, n.Interfaces); ok {
				out = append(out, BGPPeer{Name: n.Name, Kind: KindNode, Address: ra, Local: la, ASN: n.BGP.ASN,
					RouteReflectorClient: r.BGP.RouteReflector && n.BGP.ASN == r.BGP.ASN})
			}
		}
		return out
	}
	for ni, n := range s.Nodes {
		if n.Name != member || n.BGP == nil {
			continue
		}
		for _, r := range s.Routers {
			if r.BGP == nil {
				continue
			}
			if la, ra, ok := shared(n.Interfaces, r.Interfaces); ok {
				out = append(out, BGPPeer{Name: r.Name, Kind: KindRouter, Address: ra, Local: la, ASN: r.BGP.ASN})
			}
		}
		if s.BGP != nil && s.BGP.NodeMesh {
			local := internalAddr(s.Nodes[ni])
			for _, o := range s.Nodes {
				if o.Name == n.Name || o.BGP == nil {
					continue
				}
				out = append(out, BGPPeer{Name: o.Name, Kind: KindNode, Address: internalAddr(o), Local: local, ASN: o.BGP.ASN})
			}
		}
		return out
	}
	return nil
}

// internalAddr is the address of a resolved node's internal interface.
func internalAddr(n NodeSpec) netip.Addr {
	for _, i := range n.Interfaces {
		if i.Name == n.InternalInterface {
			a, _ := netip.ParseAddr(i.Address)
			return a
		}
	}
	return netip.Addr{}
}

// BGPDaemonDir is the folder of router's daemon inside a run's folder (Cluster.Dir):
// its configuration, control socket, pid file and log. Unique per run.
func BGPDaemonDir(runDir, router string) string { return filepath.Join(runDir, "bgp-"+router) }

// BIRDSocket is the control socket of router's BIRD: `birdc -s SOCKET show protocols`.
func BIRDSocket(runDir, router string) string {
	return filepath.Join(BGPDaemonDir(runDir, router), "bird.ctl")
}

// BIRDProtocolName names the BGP protocol (session) of a peer in BIRD: birdc
// `show protocols` lists it under this name.
func BIRDProtocolName(peer string) string {
	return "pp_" + strings.ReplaceAll(peer, "-", "_")
}

// BIRDConfig generates the BIRD 2 configuration of router in a resolved spec: router ID
// = its first address; a kernel protocol that exports the BGP routes into the
// namespace's main table (ECMP: several equal paths become one multipath route); one
// BGP session per neighbour (BGPNeighbors) with the topology's timers, importing and
// exporting every IPv4 unicast route; route reflector clients marked `rr client`.
func BIRDConfig(spec *Spec, router string) (string, error) {
	var rs *RouterSpec
	for i := range spec.Routers {
		if spec.Routers[i].Name == router {
			rs = &spec.Routers[i]
		}
	}
	if rs == nil || rs.BGP == nil {
		return "", fmt.Errorf("bird config: %q is not a BGP router of topology %s", router, spec.Name)
	}
	if len(rs.Interfaces) == 0 || spec.BGP == nil {
		return "", fmt.Errorf("bird config %s: spec not resolved", router)
	}
	peers := spec.BGPNeighbors(router)
	var b strings.Builder
	role := ""
	if rs.BGP.RouteReflector {
		role = ", route reflector"
	}
	fmt.Fprintf(&b, "# Generated by podpath from topology %s: router %s, AS %d%s.\n", spec.Name, router, rs.BGP.ASN, role)
	fmt.Fprintf(&b, "router id %s;\n", rs.Interfaces[0].Address)
	b.WriteString("protocol device { scan time 1; }\n")
	b.WriteString("protocol kernel {\n\tipv4 { import none; export where source = RTS_BGP; };\n\tmerge paths on;\n}\n")
	fmt.Fprintf(&b, "template bgp podpath_peer {\n\tlocal as %d;\n\thold time %d;\n\tkeepalive time %d;\n", rs.BGP.ASN, spec.BGP.HoldTime, spec.BGP.KeepaliveTime)
	b.WriteString("\tdirect;\n\tconnect delay time 1;\n\tconnect retry time 1;\n\terror wait time 1, 4;\n")
	b.WriteString("\tipv4 { import all; export all; gateway direct; };\n}\n")
	slices.SortStableFunc(peers, func(a, b BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	for _, p := range peers {
		fmt.Fprintf(&b, "protocol bgp %s from podpath_peer {\n\tdescription \"%s %s\";\n\tlocal %s as %d;\n\tneighbor %s as %d;\n",
			BIRDProtocolName(p.Name), p.Kind, p.Name, p.Local, rs.BGP.ASN, p.Address, p.ASN)
		if p.RouteReflectorClient {
			b.WriteString("\trr client;\n")
		}
		b.WriteString("}\n")
	}
	return b.String(), nil
}

// WithoutBGP returns a copy of the spec without its BGP blocks: PlanRoutes of it with
// podRoutes all gives the routes BGP is expected to converge to (every PodCIDR via its
// node), which path oracles follow.
func (s *Spec) WithoutBGP() *Spec {
	c := s.Clone()
	c.BGP = nil
	for i := range c.Routers {
		c.Routers[i].BGP = nil
	}
	for i := range c.Nodes {
		c.Nodes[i].BGP = nil
	}
	return c
}

// RouteProto is how `ip route` names the routes a router's daemon put in its kernel:
// BIRD marks them `proto bird`, FRR's zebra `proto bgp`.
func RouteProto(daemon string) string {
	if daemon == BGPDaemonFRR {
		return "bgp"
	}
	return "bird"
}

// FRRConfig generates the FRR configuration of router in a resolved spec: zebra's (the
// kernel side: it installs bgpd's best paths, ECMP ones as multipath routes) and
// bgpd's: router ID = the router's first address, one neighbour per BGPNeighbors peer
// with the topology's timers and a 1 s connect retry, every IPv4 unicast route taken
// and passed on (no eBGP policy required), route reflector clients marked, and up to 8
// equal paths even from different neighbour ASes (as BIRD's `merge paths`).
func FRRConfig(spec *Spec, router string) (zebra, bgpd string, err error) {
	var rs *RouterSpec
	for i := range spec.Routers {
		if spec.Routers[i].Name == router {
			rs = &spec.Routers[i]
		}
	}
	if rs == nil || rs.BGP == nil {
		return "", "", fmt.Errorf("frr config: %q is not a BGP router of topology %s", router, spec.Name)
	}
	if len(rs.Interfaces) == 0 || spec.BGP == nil {
		return "", "", fmt.Errorf("frr config %s: spec not resolved", router)
	}
	head := fmt.Sprintf("! Generated by podpath from topology %s: router %s, AS %d.\nfrr defaults traditional\nhostname %s\nlog stdout\n!\n", spec.Name, router, rs.BGP.ASN, router)
	peers := spec.BGPNeighbors(router)
	slices.SortStableFunc(peers, func(a, b BGPPeer) int { return strings.Compare(a.Name, b.Name) })
	var b strings.Builder
	b.WriteString(head)
	fmt.Fprintf(&b, "router bgp %d\n bgp router-id %s\n no bgp ebgp-requires-policy\n no bgp network import-check\n", rs.BGP.ASN, rs.Interfaces[0].Address)
	b.WriteString(" bgp bestpath as-path multipath-relax\n")
	fmt.Fprintf(&b, " timers bgp %d %d\n", spec.BGP.KeepaliveTime, spec.BGP.HoldTime)
	for _, p := range peers {
		fmt.Fprintf(&b, " neighbor %s remote-as %d\n neighbor %s description %s %s\n neighbor %s update-source %s\n neighbor %s timers connect 1\n",
			p.Address, p.ASN, p.Address, p.Kind, p.Name, p.Address, p.Local, p.Address)
	}
	b.WriteString(" !\n address-family ipv4 unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n")
	for _, p := range peers {
		if p.RouteReflectorClient {
			fmt.Fprintf(&b, "  neighbor %s route-reflector-client\n", p.Address)
		}
	}
	b.WriteString(" exit-address-family\nexit\n!\n")
	return head, b.String(), nil
}

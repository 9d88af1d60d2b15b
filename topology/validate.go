// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
)

// Limits checked by Validate.
const (
	// MaxNameLen is the longest member or topology name.
	MaxNameLen = 24
	// MaxIfNameLen is the longest interface name (IFNAMSIZ-1).
	MaxIfNameLen = 15
	MinMTU       = 68
	MaxMTU       = 65535
	// maxSubnetBits is the longest prefix of a segment or PodCIDR (room for hosts).
	maxSubnetBits = 30
)

var (
	nameRE   = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	ifNameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]*$`)
)

const (
	nameRule   = "want lowercase letters, digits and '-', starting with a letter, at most 24 characters"
	ifNameRule = "want letters, digits, '_' and '-', starting with a letter, at most 15 characters"
)

// errs collects validation errors, each prefixed with the field path.
type errs []error

// zoneRE is a Kubernetes label value (topology.kubernetes.io/zone).
var zoneRE = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$`)

func (e *errs) add(path, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func joinErrors(list []error) error { return errors.Join(list...) }

// Validate checks the spec and returns every problem found (errors.Join), each naming
// its field path and what would be accepted.
func (s *Spec) Validate() error {
	if list := s.checkRules(); len(list) > 0 {
		return joinErrors(list)
	}
	// Rules pass: the only thing left that can fail is running out of addresses.
	_, err := s.resolve()
	return err
}

func (s *Spec) checkRules() []error {
	var e errs
	switch {
	case s.Name == "":
		e.add("name", "must not be empty (%s)", nameRule)
	case !validName(s.Name):
		e.add("name", "%q is invalid (%s)", s.Name, nameRule)
	}
	switch s.PodRoutes {
	case "", PodRoutesAll, PodRoutesRouters, PodRoutesNone:
	default:
		e.add("podRoutes", "%q is not one of %s, %s, %s (default %s)", s.PodRoutes, PodRoutesAll, PodRoutesRouters, PodRoutesNone, PodRoutesAll)
	}
	switch s.PodNetwork {
	case "", PodNetworkKernel, PodNetworkAgent:
	default:
		e.add("podNetwork", "%q is not one of %s, %s (default %s)", s.PodNetwork, PodNetworkKernel, PodNetworkAgent, PodNetworkKernel)
	}
	if len(s.Nodes) == 0 {
		e.add("nodes", "at least one node is required")
	}

	// One namespace of names for every member.
	names := map[string]string{}
	checkName := func(path, name string) {
		switch {
		case name == "":
			e.add(path+".name", "must not be empty (%s)", nameRule)
			return
		case !validName(name):
			e.add(path+".name", "%q is invalid (%s)", name, nameRule)
		}
		if prev, ok := names[name]; ok {
			e.add(path+".name", "%q is already used by %s (segments, nodes, pods, routers and clients share one namespace of names)", name, prev)
			return
		}
		names[name] = path
	}

	type subnet struct {
		path string
		p    netip.Prefix
	}
	var subnets []subnet
	segs := map[string]netip.Prefix{} // valid segments only
	segKnown := map[string]bool{}
	for i, sg := range s.Segments {
		path := fmt.Sprintf("segments[%d]", i)
		checkName(path, sg.Name)
		segKnown[sg.Name] = true
		if p, ok := checkSubnet(&e, path+".cidr", sg.CIDR); ok {
			subnets = append(subnets, subnet{path + ".cidr", p})
			segs[sg.Name] = p
		}
		checkMTU(&e, path+".mtu", sg.MTU)
	}
	podCIDRs := make([]netip.Prefix, len(s.Nodes))
	for i, n := range s.Nodes {
		path := fmt.Sprintf("nodes[%d]", i)
		checkName(path, n.Name)
		if p, ok := checkSubnet(&e, path+".podCIDR", n.PodCIDR); ok {
			subnets = append(subnets, subnet{path + ".podCIDR", p})
			podCIDRs[i] = p
		}
		if len(n.Interfaces) == 0 {
			e.add(path+".interfaces", "node %q has no interface (want at least one, e.g. {segment: %s})", n.Name, firstOr(s.segmentNames(), "lan"))
		}
		if n.InternalInterface != "" {
			var names []string
			for j, ifc := range n.Interfaces {
				names = append(names, cmp.Or(ifc.Name, fmt.Sprintf("eth%d", j)))
			}
			if !slices.Contains(names, n.InternalInterface) {
				e.add(path+".internalInterface", "%q is not an interface of node %q (have: %s)", n.InternalInterface, n.Name, strings.Join(names, ", "))
			}
		}
		if len(n.Devices) > 0 {
			var names []string
			for j, ifc := range n.Interfaces {
				names = append(names, cmp.Or(ifc.Name, fmt.Sprintf("eth%d", j)))
			}
			for j, d := range n.Devices {
				if !slices.Contains(names, d) {
					e.add(fmt.Sprintf("%s.devices[%d]", path, j), "%q is not an interface of node %q (have: %s)", d, n.Name, strings.Join(names, ", "))
				}
			}
			if internal := cmp.Or(n.InternalInterface, firstOr(names, "")); !slices.Contains(n.Devices, internal) {
				e.add(path+".devices", "want the internal interface %q among them (node-to-node traffic and tunnels use it)", internal)
			}
		}
		if n.Zone != "" && !zoneRE.MatchString(n.Zone) {
			e.add(path+".zone", "%q is not a label value (want up to 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit)", n.Zone)
		}
		for j, pod := range n.Pods {
			checkName(fmt.Sprintf("%s.pods[%d]", path, j), pod.Name)
		}
	}
	for i, r := range s.Routers {
		path := fmt.Sprintf("routers[%d]", i)
		checkName(path, r.Name)
		if len(r.Interfaces) == 0 {
			e.add(path+".interfaces", "router %q has no interface (want at least one)", r.Name)
		}
	}
	for i, c := range s.Clients {
		path := fmt.Sprintf("clients[%d]", i)
		checkName(path, c.Name)
		if len(c.Interfaces) == 0 {
			e.add(path+".interfaces", "client %q has no interface (want at least one)", c.Name)
		}
	}

	s.checkEtcd(&e)
	s.checkMesh(&e)

	for i := range subnets {
		for j := 0; j < i; j++ {
			if subnets[i].p.Overlaps(subnets[j].p) {
				e.add(subnets[i].path, "%s overlaps %s %s (segment CIDRs and podCIDRs must be disjoint)", subnets[i].p, subnets[j].path, subnets[j].p)
			}
		}
	}

	// Interfaces: names, segments, addresses, MTUs.
	addrs := map[netip.Addr]string{}
	claim := func(path string, a netip.Addr) {
		if prev, ok := addrs[a]; ok {
			e.add(path, "%s is already used by %s (addresses must be unique)", a, prev)
			return
		}
		addrs[a] = path
	}
	ifNames := map[string]map[string]string{} // member -> ifname -> path
	ifSegs := map[string]map[string]string{}  // member -> segment -> path
	memberIfIdx := map[string]int{}
	isNode := map[string]bool{}
	for _, n := range s.Nodes {
		isNode[n.Name] = true
	}
	s.EachInterface(func(path, member string, ifc *InterfaceSpec) {
		mk := path[:strings.Index(path, ".")] // e.g. nodes[1]
		idx := memberIfIdx[mk]
		memberIfIdx[mk]++
		name := ifc.Name
		if name == "" {
			name = fmt.Sprintf("eth%d", idx)
		}
		switch {
		case len(name) > MaxIfNameLen:
			e.add(path+".name", "%q is %d characters long (at most %d: the kernel's IFNAMSIZ)", name, len(name), MaxIfNameLen)
		case !ifNameRE.MatchString(name):
			e.add(path+".name", "%q is invalid (%s)", name, ifNameRule)
		case name == "lo":
			e.add(path+".name", "\"lo\" is the loopback device (pick another name, e.g. eth%d)", idx)
		case isNode[member] && strings.HasPrefix(name, "lxc"):
			e.add(path+".name", "%q starts with \"lxc\", which is reserved for pod veths on nodes", name)
		}
		if ifNames[mk] == nil {
			ifNames[mk] = map[string]string{}
			ifSegs[mk] = map[string]string{}
		}
		if prev, ok := ifNames[mk][name]; ok {
			e.add(path+".name", "%q is already used by %s (interface names must be unique per member)", name, prev)
		} else {
			ifNames[mk][name] = path
		}
		checkMTU(&e, path+".mtu", ifc.MTU)
		if !segKnown[ifc.Segment] {
			e.add(path+".segment", "unknown segment %q (known: %s)", ifc.Segment, strings.Join(s.segmentNames(), ", "))
			return
		}
		if prev, ok := ifSegs[mk][ifc.Segment]; ok {
			e.add(path+".segment", "%q already attaches to segment %q through %s (one interface per segment)", member, ifc.Segment, prev)
		} else {
			ifSegs[mk][ifc.Segment] = path
		}
		if ifc.Address == "" {
			return
		}
		a, err := netip.ParseAddr(ifc.Address)
		if err != nil || !a.Is4() {
			e.add(path+".address", "%q is not an IPv4 address (want e.g. 10.0.1.5; the prefix length comes from the segment)", ifc.Address)
			return
		}
		claim(path+".address", a)
		p, ok := segs[ifc.Segment]
		if !ok {
			return
		}
		switch {
		case !p.Contains(a):
			e.add(path+".address", "%s is outside segment %q CIDR %s", a, ifc.Segment, p)
		case a == p.Addr() || a == lastAddr(p):
			e.add(path+".address", "%s is the network or broadcast address of segment %q %s (want a host address)", a, ifc.Segment, p)
		}
	})

	for i, n := range s.Nodes {
		p := podCIDRs[i]
		for j, pod := range n.Pods {
			path := fmt.Sprintf("nodes[%d].pods[%d]", i, j)
			checkMTU(&e, path+".mtu", pod.MTU)
			if pod.Address == "" {
				continue
			}
			a, err := netip.ParseAddr(pod.Address)
			if err != nil || !a.Is4() {
				e.add(path+".address", "%q is not an IPv4 address (want e.g. 10.244.1.10)", pod.Address)
				continue
			}
			claim(path+".address", a)
			if !p.IsValid() {
				continue
			}
			switch {
			case !p.Contains(a):
				e.add(path+".address", "%s is outside node %q podCIDR %s", a, n.Name, p)
			case a == p.Addr() || a == lastAddr(p):
				e.add(path+".address", "%s is the network or broadcast address of node %q podCIDR %s (want a host address)", a, n.Name, p)
			case a == p.Addr().Next():
				e.add(path+".address", "%s is the pod gateway of node %q (the first host address of podCIDR %s)", a, n.Name, p)
			}
		}
	}

	e = append(e, s.checkReachability(segKnown)...)
	s.checkBGP(&e)
	e = append(e, s.checkWorld()...)
	return e
}

// checkWorld reports every world server that shares a segment with a node, has no
// router on any of its segments, or has a router there that knows PodCIDRs: the outside
// world must reach the cluster only through routers with noPodRoutes.
func (s *Spec) checkWorld() []error {
	var e errs
	nodeOn := map[string]string{}
	for _, n := range s.Nodes {
		for _, ifc := range n.Interfaces {
			nodeOn[ifc.Segment] = n.Name
		}
	}
	for i, c := range s.Clients {
		if !c.World {
			continue
		}
		path := fmt.Sprintf("clients[%d]", i)
		if c.PodRoutes {
			e.add(path+".podRoutes", "world server %q cannot route PodCIDRs (the outside world knows none): want podRoutes false or world false", c.Name)
		}
		routed := false
		for j, ifc := range c.Interfaces {
			if n, ok := nodeOn[ifc.Segment]; ok {
				e.add(fmt.Sprintf("%s.interfaces[%d].segment", path, j), "world server %q shares segment %q with node %q (want it behind a router with noPodRoutes)", c.Name, ifc.Segment, n)
			}
			for _, r := range s.Routers {
				for _, ri := range r.Interfaces {
					if ri.Segment != ifc.Segment {
						continue
					}
					routed = true
					if !r.NoPodRoutes {
						e.add(fmt.Sprintf("%s.interfaces[%d].segment", path, j), "world server %q is reached through router %q, which knows the PodCIDRs (want noPodRoutes: true on it)", c.Name, r.Name)
					}
				}
			}
		}
		if !routed && len(c.Interfaces) > 0 {
			e.add(path, "world server %q has no router on its segments (want one with noPodRoutes: true)", c.Name)
		}
	}
	return e
}

// checkReachability reports every node that cannot reach an earlier node: segments are
// joined only by routers (nodes and clients do not forward for others).
func (s *Spec) checkReachability(segKnown map[string]bool) []error {
	parent := map[string]string{}
	var find func(string) string
	find = func(x string) string {
		if p, ok := parent[x]; ok && p != x {
			r := find(p)
			parent[x] = r
			return r
		}
		parent[x] = x
		return x
	}
	for _, r := range s.Routers {
		var first string
		for _, ifc := range r.Interfaces {
			if !segKnown[ifc.Segment] {
				continue
			}
			if first == "" {
				first = ifc.Segment
				continue
			}
			parent[find(ifc.Segment)] = find(first)
		}
	}
	comps := make([]map[string]bool, len(s.Nodes))
	for i, n := range s.Nodes {
		comps[i] = map[string]bool{}
		for _, ifc := range n.Interfaces {
			if segKnown[ifc.Segment] {
				comps[i][find(ifc.Segment)] = true
			}
		}
	}
	var e errs
	for j := range s.Nodes {
		if len(comps[j]) == 0 {
			continue // no usable interface: reported elsewhere
		}
		for i := 0; i < j; i++ {
			if len(comps[i]) == 0 {
				continue
			}
			shared := false
			for c := range comps[j] {
				shared = shared || comps[i][c]
			}
			if !shared {
				e.add(fmt.Sprintf("nodes[%d]", j), "node %q is unreachable from node %q (want a chain of segments joined by routers between them; nodes do not forward for others)", s.Nodes[j].Name, s.Nodes[i].Name)
				break
			}
		}
	}
	return e
}

func (s *Spec) segmentNames() []string {
	var out []string
	for _, sg := range s.Segments {
		out = append(out, sg.Name)
	}
	return out
}

func firstOr(list []string, def string) string {
	if len(list) > 0 {
		return list[0]
	}
	return def
}

func validName(n string) bool { return len(n) <= MaxNameLen && nameRE.MatchString(n) }

func checkMTU(e *errs, path string, mtu int) {
	if mtu != 0 && (mtu < MinMTU || mtu > MaxMTU) {
		e.add(path, "%d is out of range (want %d..%d, or 0 for the default)", mtu, MinMTU, MaxMTU)
	}
}

// checkSubnet parses an IPv4 network prefix such as 10.0.1.0/24.
func checkSubnet(e *errs, path, cidr string) (netip.Prefix, bool) {
	if cidr == "" {
		e.add(path, "must not be empty (want an IPv4 network such as 10.0.1.0/24)")
		return netip.Prefix{}, false
	}
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		e.add(path, "%q is not an IPv4 CIDR (want e.g. 10.0.1.0/24)", cidr)
		return netip.Prefix{}, false
	}
	if p.Masked() != p {
		e.add(path, "%s has host bits set (want the network address %s)", p, p.Masked())
		return netip.Prefix{}, false
	}
	if p.Bits() > maxSubnetBits {
		e.add(path, "%s is too small (want a prefix length of at most /%d)", p, maxSubnetBits)
		return netip.Prefix{}, false
	}
	return p, true
}

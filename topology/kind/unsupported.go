// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"errors"
	"fmt"
	"strings"

	"podpath/topology"
)

// ErrUnsupported matches (errors.Is) an *UnsupportedError.
var ErrUnsupported = errors.New("not supported by the kind backend")

// Feature is one thing a spec asks for that the kind backend cannot model.
type Feature struct {
	// Field is the spec field path, e.g. segments, routers[0], segments[1].mtu.
	Field string
	// Reason says what the spec asks for and why kind cannot do it.
	Reason string
}

func (f Feature) String() string { return f.Field + ": " + f.Reason }

// UnsupportedError lists every feature of a spec the kind backend cannot model: kind
// nodes are containers on one Docker network, so there is one L2 segment, no router, one
// MTU, one interface (eth0) per node with a Docker-assigned address, and the podpath
// agent plumbs the pods.
type UnsupportedError struct {
	Topology string
	Features []Feature
}

func (e *UnsupportedError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "topology %s: %d feature(s) %s (kind nodes share one Docker network; use the netns backend for these):", e.Topology, len(e.Features), ErrUnsupported)
	for _, f := range e.Features {
		b.WriteString("\n  ")
		b.WriteString(f.String())
	}
	return b.String()
}

// Is makes errors.Is(err, ErrUnsupported) true.
func (e *UnsupportedError) Is(target error) bool { return target == ErrUnsupported }

// CheckSupported reports, as an *UnsupportedError, every feature of spec the kind backend
// cannot model; networkMTU is the kind Docker network's MTU (0: DefaultNetworkMTU). The
// spec must be valid (it is resolved here).
func CheckSupported(spec *topology.Spec, networkMTU int) error {
	r, err := spec.Resolve()
	if err != nil {
		return err
	}
	if f := unsupported(spec, r, networkMTU); len(f) > 0 {
		return &UnsupportedError{Topology: r.Name, Features: f}
	}
	return nil
}

// unsupported compares the spec as written (orig: explicit values) and resolved (r:
// defaults filled in) with what kind can do.
func unsupported(orig, r *topology.Spec, networkMTU int) []Feature {
	if networkMTU == 0 {
		networkMTU = DefaultNetworkMTU
	}
	var fs []Feature
	add := func(field, format string, args ...any) {
		fs = append(fs, Feature{Field: field, Reason: fmt.Sprintf(format, args...)})
	}
	if r.PodNetwork != topology.PodNetworkAgent {
		add("podNetwork", "%q: the harness plumbs pods with veths and kernel routes, a netns-backend feature; on kind the podpath agent DaemonSet is the pod network (set podNetwork: %s)", r.PodNetwork, topology.PodNetworkAgent)
	}
	if r.PodRoutes == topology.PodRoutesAll {
		add("podRoutes", "%q: the harness installs kernel PodCIDR routes on the nodes, a netns-backend feature; on kind the agents route PodCIDRs themselves (auto-direct-node-routes or a tunnel)", r.PodRoutes)
	}
	if r.HasBGP() {
		add("bgp", "BGP speakers (BIRD in router namespaces, the agents' peering from the scenario) are a netns-backend feature; the kind backend does not model them")
	}
	segMTU := map[string]int{}
	if len(r.Segments) > 1 {
		var names []string
		for _, s := range r.Segments {
			names = append(names, s.Name)
		}
		add("segments", "%d segments (%s): kind nodes share one Docker network, i.e. one L2 segment; routed and multi-segment underlays are not modelled", len(r.Segments), strings.Join(names, ", "))
	}
	for i, s := range r.Segments {
		segMTU[s.Name] = s.MTU
		if s.MTU != networkMTU {
			add(fmt.Sprintf("segments[%d].mtu", i), "segment %s has MTU %d: the kind Docker network's MTU is %d (the engine's default bridge MTU); per-link MTUs are not modelled", s.Name, s.MTU, networkMTU)
		}
	}
	for i, x := range r.Routers {
		add(fmt.Sprintf("routers[%d]", i), "router %s: routers are not modelled; kind nodes reach each other directly on the Docker network", x.Name)
	}
	for i, x := range r.Clients {
		add(fmt.Sprintf("clients[%d]", i), "client %s: hosts outside the cluster are not modelled on kind", x.Name)
	}
	for i, n := range r.Nodes {
		path := fmt.Sprintf("nodes[%d]", i)
		if n.NICModel {
			add(path+".nicModel", "node %s asks for the XDP NIC model (NAPI on the far end of its veth, complete checksums on the wire): the kind node's end of Docker's veth is in the engine's bridge, which the backend does not touch", n.Name)
		}
		if len(n.Interfaces) > 1 {
			add(path+".interfaces", "node %s has %d interfaces: a kind node has one, eth0 on the Docker network", n.Name, len(n.Interfaces))
		}
		for j, ifc := range n.Interfaces {
			ip := fmt.Sprintf("%s.interfaces[%d]", path, j)
			if j == 0 && ifc.Name != "eth0" {
				add(ip+".name", "node %s names its interface %q: a kind node's interface is eth0", n.Name, ifc.Name)
			}
			if orig.Nodes[i].Interfaces[j].Address != "" {
				add(ip+".address", "node %s asks for address %s: Docker assigns the addresses of kind nodes", n.Name, ifc.Address)
			}
			if ifc.MTU != networkMTU && ifc.MTU != segMTU[ifc.Segment] {
				add(ip+".mtu", "node %s asks for MTU %d on %s: the kind Docker network's MTU is %d; per-link MTUs are not modelled", n.Name, ifc.MTU, ifc.Name, networkMTU)
			}
		}
	}
	return fs
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrNodeNotDirect says auto-direct-node-routes cannot reach a node in one hop.
var ErrNodeNotDirect = errors.New("not on a directly connected subnet")

// directRoute is the route auto-direct-node-routes installs for node n:
//
//	ip route replace PODCIDR via NODEIP dev DEV proto podpath
//
// It exists only when the node's IP is on a subnet this node is directly connected to;
// otherwise the error names the node and how it would be reached, because a route that
// is silently not installed costs users hours.
func directRoute(h *netlink.Handle, n Node) (*netlink.Route, error) {
	got, err := h.RouteGet(n.IP.AsSlice())
	if err != nil {
		return nil, fmt.Errorf("auto-direct-node-routes: node %s (%s): no route to it: %w", n.Name, n.IP, err)
	}
	r := got[0]
	if r.Gw != nil {
		dev := ifName(h, r.LinkIndex)
		return nil, fmt.Errorf("auto-direct-node-routes: node %s (%s) is %w of this node: it is reached via gateway %s dev %s; "+
			"its PodCIDR %s gets no route (route PodCIDRs on the underlay routers, or use a tunnel)",
			n.Name, n.IP, ErrNodeNotDirect, r.Gw, dev, n.PodCIDR)
	}
	return &netlink.Route{
		Dst: prefixNet(n.PodCIDR), Gw: n.IP.AsSlice(), LinkIndex: r.LinkIndex, Protocol: routeProto,
	}, nil
}

// routeProto marks the routes the agent owns, so it can find and remove them.
const routeProto netlink.RouteProtocol = 0x50 // "P"; unassigned in rt_protos

// ownedRoutes lists the routes the agent installed.
func ownedRoutes(h *netlink.Handle) ([]netlink.Route, error) {
	routes, err := h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: routeProto, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, fmt.Errorf("list agent routes: %w", err)
	}
	return routes, nil
}

func ifName(h *netlink.Handle, index int) string {
	if l, err := h.LinkByIndex(index); err == nil {
		return l.Attrs().Name
	}
	return fmt.Sprintf("if%d", index)
}

func prefixNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

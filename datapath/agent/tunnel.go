// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"

	"podpath/datapath/config"
)

// vxlanDevice is the node's collect_md vxlan device, named as Cilium names it.
const vxlanDevice = "cilium_vxlan"

// tunnelPort is the UDP port in effect: the tunnel-port key or the protocol's default.
func tunnelPort(c *config.Config) uint16 {
	if c.TunnelPort != 0 {
		return c.TunnelPort
	}
	return c.TunnelProtocol.DefaultPort()
}

// ensureVXLAN creates, or keeps, the collect_md vxlan device that encapsulates for
// from-container and decapsulates for from-overlay:
//
//	ip link add cilium_vxlan mtu ROUTE_MTU type vxlan external dstport PORT
//
// A device with another port is replaced. Its MTU is the route MTU: the largest inner
// packet that fits the underlay once encapsulated.
func ensureVXLAN(nl *netlink.Handle, port uint16, mtu int) (netlink.Link, error) {
	if l, err := nl.LinkByName(vxlanDevice); err == nil {
		vx, ok := l.(*netlink.Vxlan)
		if ok && vx.FlowBased && vx.Port == int(port) {
			if l.Attrs().MTU != mtu {
				if err := nl.LinkSetMTU(l, mtu); err != nil {
					return nil, fmt.Errorf("set %s mtu %d: %w", vxlanDevice, mtu, err)
				}
			}
			return l, nl.LinkSetUp(l)
		}
		if err := nl.LinkDel(l); err != nil {
			return nil, fmt.Errorf("replace %s: %w", vxlanDevice, err)
		}
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = vxlanDevice, mtu
	if err := nl.LinkAdd(&netlink.Vxlan{LinkAttrs: la, FlowBased: true, Port: int(port)}); err != nil {
		return nil, fmt.Errorf("create %s (vxlan external dstport %d): %w", vxlanDevice, port, err)
	}
	l, err := nl.LinkByName(vxlanDevice)
	if err != nil {
		return nil, err
	}
	if err := nl.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("set %s up: %w", vxlanDevice, err)
	}
	return l, nil
}

// tunnelRoute is the route to another node's PodCIDR in tunnel mode:
//
//	ip route replace PODCIDR via NEXTHOP dev DEV mtu ROUTE_MTU proto podpath
//
// from-container encapsulates pod traffic before any route is consulted; this route is
// for what reaches the stack: a DF packet larger than the tunnel MTU, which from-container
// hands over so the kernel answers the sender with ICMP fragmentation-needed carrying the
// route MTU. mtu is the tunnel MTU towards n: the underlay path MTU the agent learnt for
// it less the overhead (pmtu.go), so a path narrower than this node's NIC gives its
// pods the smaller MTU (and TCP the smaller MSS).
func tunnelRoute(h *netlink.Handle, n Node, mtu int) (*netlink.Route, error) {
	got, err := h.RouteGet(n.IP.AsSlice())
	if err != nil || len(got) == 0 {
		return nil, errors.Join(fmt.Errorf("tunnel route to node %s (%s): no route to it", n.Name, n.IP), err)
	}
	via := got[0].Gw
	if via == nil {
		via = n.IP.AsSlice()
	}
	return &netlink.Route{Dst: prefixNet(n.PodCIDR), Gw: via, LinkIndex: got[0].LinkIndex, MTU: mtu, Protocol: routeProto}, nil
}

// peerNative says whether n is reached without the tunnel: tunnel-mode cross-subnet
// and n's IP inside this node's own interface subnet, the rule from-container applies
// (tunnel_peer_native() in bpf/lib/config.h).
func (a *Agent) peerNative(n Node) bool {
	return a.dp != nil && a.cfg.RoutingMode == config.RoutingTunnel && a.cfg.TunnelMode == config.TunnelCrossSubnet &&
		a.dp.subnet.IsValid() && a.dp.subnet.Contains(n.IP)
}

// peerPathMTU is the underlay path MTU towards n: its learnt one, else the device's.
func (a *Agent) peerPathMTU(n Node) int {
	if p, ok := a.peers[n.Name]; ok && p.NodeIP == n.IP && p.PathMTU > 0 {
		return p.PathMTU
	}
	return a.dp.mtu.Device
}

// crossSubnetDirectRoute is the route to the PodCIDR of a peer on this node's own
// subnet with tunnel-mode cross-subnet (Calico's CrossSubnet):
//
//	ip route replace PODCIDR via NODEIP dev DEV mtu PATH_MTU proto podpath
//
// from-container forwards such traffic natively with a FIB lookup of this route; its
// MTU is the underlay's, with no tunnel overhead.
func crossSubnetDirectRoute(h *netlink.Handle, n Node, mtu int) (*netlink.Route, error) {
	r, err := directRoute(h, n)
	if err != nil {
		return nil, fmt.Errorf("tunnel-mode cross-subnet: %w", err)
	}
	r.MTU = mtu
	return r, nil
}

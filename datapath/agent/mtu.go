// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"

	"podpath/datapath/config"
)

// MTUs is the MTU plan of a node, with where each number came from, as
// `podpath-agent status` shows it.
type MTUs struct {
	// Device is the MTU of the device that carries node-to-node traffic.
	Device       int    `json:"device"`
	DeviceSource string `json:"deviceSource"`
	// Route is what pods may send: Device minus the encapsulation overhead. Pod
	// interfaces and default routes carry it.
	Route    int `json:"route"`
	Overhead int `json:"overhead"`
	// Tunnel is the largest inner packet the tunnel carries: Device minus the
	// overhead (0 with native routing). It equals Route, except with tunnel-mode
	// cross-subnet, where pods get the device MTU (peers on this node's subnet are
	// reached natively) and the routes to the PodCIDRs of peers on other subnets
	// carry Tunnel (or less, pmtu.go).
	Tunnel         int    `json:"tunnel,omitempty"`
	OverheadSource string `json:"overheadSource"`
	// UnderlayDevice is the NIC holding the node IP: tunnels leave through it.
	UnderlayDevice string `json:"underlayDevice"`
}

// planMTU computes the MTUs like Cilium: the device MTU is the MTU of the NIC that
// holds the node IP (the one that carries the tunnel, which need not be the first NIC),
// or the `mtu` key when set; the route MTU subtracts the tunnel overhead.
func planMTU(c *config.Config, dev netlink.Link, nodeIP netip.Addr, geneveOptBytes int) MTUs {
	m := MTUs{UnderlayDevice: dev.Attrs().Name, Device: dev.Attrs().MTU,
		DeviceSource: fmt.Sprintf("%s, the device holding node IP %s", dev.Attrs().Name, nodeIP)}
	if c.MTU != 0 {
		m.Device, m.DeviceSource = c.MTU, "mtu key of the cilium-config"
	}
	switch {
	case c.RoutingMode == config.RoutingNative:
		m.OverheadSource = "native routing: no encapsulation"
	case c.TunnelProtocol == config.TunnelGeneve && geneveOptBytes > 0:
		m.Overhead = config.TunnelOverhead + geneveOptBytes
		m.OverheadSource = fmt.Sprintf("Geneve over IPv4: 50 + %d bytes of options", geneveOptBytes)
	case c.TunnelProtocol == config.TunnelIPIP:
		m.Overhead = config.IPIPOverhead
		m.OverheadSource = "ipip over IPv4: outer IPv4 20"
	default:
		m.Overhead = config.TunnelOverhead
		m.OverheadSource = fmt.Sprintf("%s over IPv4: outer IPv4 20 + UDP 8 + %s 8 + inner Ethernet 14", c.TunnelProtocol, c.TunnelProtocol)
	}
	m.Route = m.Device - m.Overhead
	if c.RoutingMode == config.RoutingTunnel {
		m.Tunnel = m.Route
		if c.TunnelMode == config.TunnelCrossSubnet {
			m.Route = m.Device
			m.OverheadSource += "; tunnel-mode cross-subnet: pods get the device MTU, the routes to peers on other subnets the tunnel's"
		}
	}
	return m
}

// deviceWithAddr finds the link holding addr.
func deviceWithAddr(nl *netlink.Handle, addr netip.Addr) (netlink.Link, error) {
	addrs, err := nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			return nl.LinkByIndex(a.LinkIndex)
		}
	}
	return nil, fmt.Errorf("node IP %s is on no device of this node", addr)
}

// deviceAddrs are nodeIP and the global IPv4 addresses of the named devices, each
// once, nodeIP first: the NodePort frontends of this node. An address on another
// interface (not a device) is not one (Cilium: NodePort answers on its devices).
func deviceAddrs(nl *netlink.Handle, nodeIP netip.Addr, devices []string) ([]netip.Addr, error) {
	out := []netip.Addr{nodeIP}
	for _, name := range devices {
		l, err := nl.LinkByName(name)
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", name, err)
		}
		addrs, err := nl.AddrList(l, netlink.FAMILY_V4)
		if err != nil {
			return nil, fmt.Errorf("device %s: list addresses: %w", name, err)
		}
		for _, a := range addrs {
			ip, ok := netip.AddrFromSlice(a.IP.To4())
			if ok && a.Scope == int(netlink.SCOPE_UNIVERSE) && !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out, nil
}

// deviceSubnet is the prefix of addr on the device holding it (10.0.1.2/24): with
// tunnel-mode cross-subnet, peers inside it are reached natively.
func deviceSubnet(nl *netlink.Handle, addr netip.Addr) (netip.Prefix, error) {
	addrs, err := nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("list addresses: %w", err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && ip == addr {
			bits, _ := a.Mask.Size()
			return netip.PrefixFrom(ip, bits).Masked(), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("node IP %s is on no device of this node", addr)
}

// tunnelMTU is Tunnel when planned, else Route (a plan built by hand in tests).
func (m MTUs) tunnelMTU() int {
	if m.Tunnel != 0 {
		return m.Tunnel
	}
	return m.Route
}

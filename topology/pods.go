// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
)

// pods creates every pod: a veth whose eth0 end is born in the pod namespace with the pod
// IP as /32 and a default route via the node's pod gateway (onlink), and whose host end
// lives in the node with a /32 route to the pod. The node holds the gateway as /32 on lo,
// so the host veth answers ARP for it; forwarding is plain kernel routing.
func (u *upper) pods(ctx context.Context) error {
	for _, n := range u.t.nodes {
		if len(n.Pods) == 0 {
			continue
		}
		nh, _, err := u.handle(n.Name)
		if err != nil {
			return err
		}
		lo, err := nh.LinkByName("lo")
		if err != nil {
			return fmt.Errorf("node %s: find lo: %w", n.Name, err)
		}
		gw := netip.PrefixFrom(n.Gateway, 32)
		if err := nh.AddrAdd(lo, &netlink.Addr{IPNet: ipNet(gw)}); err != nil {
			return fmt.Errorf("node %s: add pod gateway %s to lo: %w", n.Name, gw, err)
		}
		for _, p := range n.Pods {
			if err := ctx.Err(); err != nil {
				return err
			}
			u.t.progress("creating pod %s on node %s (%s, host veth %s)", p.Name, n.Name, p.IP, p.HostVeth)
			if err := u.pod(nh, p); err != nil {
				return fmt.Errorf("pod %s on node %s: %w", p.Name, n.Name, err)
			}
		}
	}
	return nil
}

func (u *upper) pod(nh *netlink.Handle, p Pod) error {
	ph, pfd, err := u.handle(p.Name)
	if err != nil {
		return err
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU, la.HardwareAddr, la.Flags = p.HostVeth, p.MTU, p.HostMAC, net.FlagUp
	la.Index = u.ifindex()
	veth := &netlink.Veth{
		LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(pfd),
		PeerMTU: uint32(p.MTU), PeerHardwareAddr: p.MAC, PeerTxQLen: -1,
	}
	if err := nh.LinkAdd(veth); err != nil {
		return fmt.Errorf("add veth %s (peer eth0 in pod): %w", p.HostVeth, err)
	}
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("find eth0: %w", err)
	}
	if err := ph.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(p.IP, 32))}); err != nil {
		return fmt.Errorf("add address %s/32 to eth0: %w", p.IP, err)
	}
	if err := ph.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set eth0 up: %w", err)
	}
	// ip route add default via GW dev eth0 onlink
	def := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: p.Gateway.AsSlice(), Flags: int(netlink.FLAG_ONLINK)}
	if err := ph.RouteAdd(def); err != nil {
		return fmt.Errorf("add default route via %s: %w", p.Gateway, err)
	}
	host, err := nh.LinkByName(p.HostVeth)
	if err != nil {
		return fmt.Errorf("find %s: %w", p.HostVeth, err)
	}
	// ip route add POD/32 dev HOSTVETH scope link
	toPod := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: ipNet(netip.PrefixFrom(p.IP, 32)), Scope: netlink.SCOPE_LINK}
	if err := nh.RouteAdd(toPod); err != nil {
		return fmt.Errorf("add route %s/32 dev %s: %w", p.IP, p.HostVeth, err)
	}
	return nil
}

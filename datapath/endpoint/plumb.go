// SPDX-License-Identifier: Apache-2.0

package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Veth describes a pod's veth pair: the host end lives in the node, eth0 in the pod.
type Veth struct {
	HostName  string
	HostMAC   net.HardwareAddr // nil: kernel-chosen
	HostIndex int              // 0: kernel-chosen
	PodMAC    net.HardwareAddr // nil: kernel-chosen
	PodIP     netip.Addr
	// MTU of both ends, and of the pod's default route when RouteMTU is 0.
	MTU int
	// RouteMTU, when set, goes on the pod's default route (`... mtu N`): the largest
	// packet the path beyond the node carries (tunnel overhead taken off).
	RouteMTU int
	// Gateway is the pod's default gateway: the node's address for its pods, held on
	// the node's lo (EnsureGateway) so the host veth answers ARP for it.
	Gateway netip.Addr
}

// Plumb creates the pair and configures both ends:
//
//	ip link add HOST type veth peer name eth0 netns POD
//	ip -n POD addr add IP/32 dev eth0; ip -n POD route add default via GW dev eth0 onlink [mtu N]
//	ip route add IP/32 dev HOST scope link
//
// On error nothing is left behind: deleting the host end removes the pair.
func Plumb(node *netlink.Handle, pod netns.NsHandle, v Veth) (err error) {
	if !v.PodIP.Is4() || !v.Gateway.Is4() {
		return fmt.Errorf("plumb %s: pod IP %v and gateway %v must be IPv4", v.HostName, v.PodIP, v.Gateway)
	}
	ph, err := netlink.NewHandleAt(pod)
	if err != nil {
		return fmt.Errorf("plumb %s: netlink handle in pod namespace: %w", v.HostName, err)
	}
	defer ph.Close()

	la := netlink.NewLinkAttrs()
	la.Name, la.MTU, la.HardwareAddr, la.Index, la.Flags = v.HostName, v.MTU, v.HostMAC, v.HostIndex, net.FlagUp
	veth := &netlink.Veth{
		LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(pod),
		PeerMTU: uint32(v.MTU), PeerHardwareAddr: v.PodMAC, PeerTxQLen: -1,
	}
	if err := node.LinkAdd(veth); err != nil {
		return fmt.Errorf("plumb: add veth %s (peer eth0 in pod): %w", v.HostName, err)
	}
	defer func() {
		if err != nil {
			_ = Unplumb(node, v.HostName)
		}
	}()
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		return fmt.Errorf("plumb %s: find pod eth0: %w", v.HostName, err)
	}
	if err := ph.AddrAdd(eth0, &netlink.Addr{IPNet: hostNet(v.PodIP)}); err != nil {
		return fmt.Errorf("plumb %s: add %s/32 to pod eth0: %w", v.HostName, v.PodIP, err)
	}
	if err := ph.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("plumb %s: set pod eth0 up: %w", v.HostName, err)
	}
	def := &netlink.Route{LinkIndex: eth0.Attrs().Index, Gw: v.Gateway.AsSlice(), Flags: int(netlink.FLAG_ONLINK), MTU: v.RouteMTU}
	if err := ph.RouteAdd(def); err != nil {
		return fmt.Errorf("plumb %s: pod default route via %s: %w", v.HostName, v.Gateway, err)
	}
	host, err := node.LinkByName(v.HostName)
	if err != nil {
		return fmt.Errorf("plumb: find %s: %w", v.HostName, err)
	}
	toPod := &netlink.Route{LinkIndex: host.Attrs().Index, Dst: hostNet(v.PodIP), Scope: netlink.SCOPE_LINK}
	if err := node.RouteReplace(toPod); err != nil {
		return fmt.Errorf("plumb: route %s/32 dev %s: %w", v.PodIP, v.HostName, err)
	}
	return nil
}

// Unplumb deletes the host end (`ip link del HOST`); the kernel removes eth0 and the
// route with it. A missing link is not an error.
func Unplumb(node *netlink.Handle, hostName string) error {
	l, err := node.LinkByName(hostName)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("unplumb: find %s: %w", hostName, err)
	}
	if err := node.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("unplumb: delete %s: %w", hostName, err)
	}
	return nil
}

// EnsureGateway puts the pods' gateway address on the node's lo as /32 (idempotent).
func EnsureGateway(node *netlink.Handle, gw netip.Addr) error {
	lo, err := node.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("pod gateway: find lo: %w", err)
	}
	if err := node.AddrReplace(lo, &netlink.Addr{IPNet: hostNet(gw)}); err != nil {
		return fmt.Errorf("pod gateway: add %s/32 to lo: %w", gw, err)
	}
	return nil
}

func hostNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(32, 32)}
}

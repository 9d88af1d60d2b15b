// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"podpath/internal/nicmodel"
)

// firstIfindex returns the first explicit ifindex given to the veth ends that Up creates
// (member interfaces, pod host veths). Their peers get kernel-chosen indexes, which in a
// fresh segment or pod namespace stay below 3 + the number of interfaces; so the two ends
// of a pair never share an ifindex. They must not: the kernel's linkwatch treats a carrier
// event on a device whose ifindex equals its iflink (the peer's ifindex) as non-urgent
// and may delay it by up to a second; until then the device drops every packet (noop
// qdisc) and a bridge port stays disabled.
func firstIfindex(r *topology.Spec) int {
	n := 0
	r.EachInterface(func(string, string, *topology.InterfaceSpec) { n++ })
	return max(100, n+3)
}

// ifindex hands out the next explicit ifindex.
func (u *upper) ifindex() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.nextIndex++
	return u.nextIndex - 1
}

// segments creates the bridge of every segment (`ip link add br0 type bridge`).
func (u *upper) segments(ctx context.Context) error {
	for _, sg := range u.t.spec.Segments {
		u.t.progress("creating bridge of segment %s (%s)", sg.Name, sg.CIDR)
		h, _, err := u.handle(sg.Name)
		if err != nil {
			return err
		}
		la := netlink.NewLinkAttrs()
		la.Name = bridgeName
		la.Flags = net.FlagUp
		if err := h.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return fmt.Errorf("add bridge of segment %s: %w", sg.Name, err)
		}
	}
	return nil
}

// interfaces wires every member interface to its segment: a veth created in the member
// namespace whose peer is born in the segment namespace, enslaved to the bridge.
func (u *upper) interfaces(ctx context.Context) error {
	bridgeMTU := map[string]int{}
	nicWire := u.t.spec.NICModelSegments()
	for _, sg := range u.t.spec.Segments {
		if err := ctx.Err(); err != nil {
			return err
		}
		u.t.progress("wiring segment %s", sg.Name)
		sh, sfd, err := u.handle(sg.Name)
		if err != nil {
			return err
		}
		br, err := sh.LinkByName(bridgeName)
		if err != nil {
			return fmt.Errorf("segment %s: find bridge: %w", sg.Name, err)
		}
		for _, port := range u.t.ifaces[sg.Name] {
			member, ifname, _ := strings.Cut(port.Peer, "/")
			ifc := u.t.interfaceOf(member, ifname)
			mh, _, err := u.handle(member)
			if err != nil {
				return err
			}
			la := netlink.NewLinkAttrs()
			la.Name, la.MTU, la.HardwareAddr, la.Flags = ifc.Name, ifc.MTU, ifc.MAC, net.FlagUp
			la.Index = u.ifindex()
			veth := &netlink.Veth{LinkAttrs: la, PeerName: port.Name, PeerNamespace: netlink.NsFd(sfd), PeerMTU: uint32(ifc.MTU), PeerTxQLen: -1}
			if err := mh.LinkAdd(veth); err != nil {
				return fmt.Errorf("add veth %s in %s (peer %s in segment %s): %w", ifc.Name, member, port.Name, sg.Name, err)
			}
			link, err := mh.LinkByName(ifc.Name)
			if err != nil {
				return fmt.Errorf("find %s in %s: %w", ifc.Name, member, err)
			}
			if err := mh.AddrAdd(link, &netlink.Addr{IPNet: ipNet(ifc.Address)}); err != nil {
				return fmt.Errorf("add address %s to %s in %s: %w", ifc.Address, ifc.Name, member, err)
			}
			pl, err := sh.LinkByName(port.Name)
			if err != nil {
				return fmt.Errorf("find port %s in segment %s: %w", port.Name, sg.Name, err)
			}
			if err := sh.LinkSetMasterByIndex(pl, br.Attrs().Index); err != nil {
				return fmt.Errorf("attach port %s to bridge of segment %s: %w", port.Name, sg.Name, err)
			}
			if err := sh.LinkSetUp(pl); err != nil {
				return fmt.Errorf("set port %s up in segment %s: %w", port.Name, sg.Name, err)
			}
			if err := u.nicModel(sg.Name, member, ifc.Name, port.Name, nicWire); err != nil {
				return err
			}
			bridgeMTU[sg.Name] = max(bridgeMTU[sg.Name], ifc.MTU)
		}
		// Set after the ports: an explicit MTU stops the bridge from following its ports.
		if mtu := bridgeMTU[sg.Name]; mtu > 0 {
			if err := sh.LinkSetMTU(br, mtu); err != nil {
				return fmt.Errorf("set MTU %d on bridge of segment %s: %w", mtu, sg.Name, err)
			}
		}
	}
	return nil
}

// nicModel gives the link member/ifname (bridge port port of segment seg) the NIC
// model at creation when the spec asks for it (topology.NodeSpec.NICModel): on a
// segment of an accelerated device every member's end stops offloading transmit
// checksums (the wire carries complete ones, as from a physical NIC: XDP sees and
// forwards finished packets), and the accelerated device's bridge port runs NAPI, so
// what XDP sends back out (XDP_TX) is transmitted.
func (u *upper) nicModel(seg, member, ifname, port string, wire []string) error {
	if !slices.Contains(wire, seg) {
		return nil
	}
	if err := nicmodel.TxChecksum(u.t.members[member].NsPath, ifname, false); err != nil {
		return fmt.Errorf("NIC model of %s/%s: %w", member, ifname, err)
	}
	if !u.t.spec.NICModelDevice(member, ifname) {
		return nil
	}
	if err := nicmodel.PeerNAPI(u.t.members[seg].NsPath, port); err != nil {
		return fmt.Errorf("NIC model of %s/%s: %w", member, ifname, err)
	}
	return nil
}

// routes installs the planned routes of every host (`ip route add`).
func (u *upper) routes(ctx context.Context) error {
	for _, m := range u.t.Members() {
		routes := u.plan[m.Name]
		if len(routes) == 0 {
			continue
		}
		u.t.progress("installing %d routes in %s %s", len(routes), m.Kind, m.Name)
		h, _, err := u.handle(m.Name)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			nr := &netlink.Route{Dst: ipNet(rt.Dst)}
			for _, nh := range rt.NextHops {
				link, err := h.LinkByName(nh.Dev)
				if err != nil {
					return fmt.Errorf("route %s in %s: find %s: %w", rt, m.Name, nh.Dev, err)
				}
				if len(rt.NextHops) == 1 {
					nr.LinkIndex, nr.Gw = link.Attrs().Index, nh.Via.AsSlice()
					break
				}
				nr.MultiPath = append(nr.MultiPath, &netlink.NexthopInfo{LinkIndex: link.Attrs().Index, Gw: nh.Via.AsSlice()})
			}
			if err := h.RouteAdd(nr); err != nil {
				return fmt.Errorf("route %s in %s: %w", rt, m.Name, err)
			}
		}
	}
	return nil
}

// waitCarrier waits until every veth end is operationally up (the kernel has activated
// its qdisc), so the topology forwards from the first packet.
func (u *upper) waitCarrier(ctx context.Context) error {
	deadline := time.Now().Add(carrierTimeout)
	for _, m := range u.t.Members() {
		h, _, err := u.handle(m.Name)
		if err != nil {
			return err
		}
		for {
			links, err := h.LinkList()
			if err != nil {
				return fmt.Errorf("list links in %s: %w", m.Netns, err)
			}
			var down []string
			for _, l := range links {
				if l.Type() == "veth" && l.Attrs().OperState != netlink.OperUp {
					down = append(down, l.Attrs().Name)
				}
			}
			if len(down) == 0 {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("links of %s %s not up after %v: %s", m.Kind, m.Name, carrierTimeout, strings.Join(down, ", "))
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	return nil
}

// interfaceOf returns the interface ifname of member.
func (t *Topology) interfaceOf(member, ifname string) topology.Interface {
	for _, i := range t.ifaces[member] {
		if i.Name == ifname {
			return i
		}
	}
	return topology.Interface{}
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

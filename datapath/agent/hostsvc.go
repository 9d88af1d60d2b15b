// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/config"
)

// hostServiceRoutes makes the services' ClusterIPs reachable from the node's own
// namespace (a hostNetwork client) without socket-LB: each ClusterIP is routed out
// of the underlay device holding the node IP, with the node IP as source
// (`ip route replace CIP/32 dev DEV src NODEIP`), and given a permanent neighbour
// entry (`ip neigh replace CIP lladdr DEVMAC dev DEV nud permanent`) so the packet
// is sent without ARP; to-netdev on DEV translates it (bpf/lib/lb_host.h) before it
// leaves. With socket-LB the route is not used for TCP and UDP: connect() already
// went to a backend. Only with kube-proxy replacement.
func (d *datapath) hostServiceRoutes(list []Service, c *config.Config) error {
	if c.KubeProxyReplacement != config.KPRTrue || len(list) == 0 {
		return nil
	}
	dev, err := deviceWithAddr(d.nl, d.nodeIP)
	if err != nil {
		return fmt.Errorf("host service routes: %w", err)
	}
	src := net.IP(d.nodeIP.AsSlice())
	var errs []error
	for _, s := range list {
		if !s.ClusterIP.Is4() {
			continue
		}
		dst := net.IP(s.ClusterIP.AsSlice())
		r := &netlink.Route{LinkIndex: dev.Attrs().Index, Dst: &net.IPNet{IP: dst, Mask: net.CIDRMask(32, 32)},
			Src: src, Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC}
		if err := d.nl.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("route %s dev %s: %w", s.ClusterIP, dev.Attrs().Name, err))
			continue
		}
		n := &netlink.Neigh{LinkIndex: dev.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: dst, HardwareAddr: dev.Attrs().HardwareAddr}
		if err := d.nl.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("neighbour %s dev %s: %w", s.ClusterIP, dev.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/config"
	"podpath/datapath/loader"
)

// The veth pair host-namespace clients' packets to ClusterIPs take: routed out of
// hostSvcDevice, they arrive at hostSvcPeer, whose tcx ingress (from-host-svc,
// bpf/lib/lb_host.h) translates and forwards them as a pod's would be. Cilium's
// cilium_host/cilium_net pair plays the same part.
const (
	hostSvcDevice = "pp_svc"
	hostSvcPeer   = "pp_svc_in"
)

// hostServiceRoutes makes the services' ClusterIPs reachable from the node's own
// namespace without socket-LB: the pp_svc/pp_svc_in pair (created once, from-host-svc
// attached to pp_svc_in's ingress), then for each ClusterIP
// `ip route replace CIP/32 dev pp_svc src NODEIP` and
// `ip neigh replace CIP lladdr <pp_svc_in MAC> dev pp_svc nud permanent`. With
// socket-LB the route is not used for TCP and UDP: connect() already went to a
// backend. Only with kube-proxy replacement.
func (d *datapath) hostServiceRoutes(list []Service, c *config.Config) error {
	if c.KubeProxyReplacement != config.KPRTrue || len(list) == 0 {
		return nil
	}
	dev, peer, err := d.ensureHostSvcDevices()
	if err != nil {
		return err
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
			errs = append(errs, fmt.Errorf("route %s dev %s: %w", s.ClusterIP, hostSvcDevice, err))
			continue
		}
		n := &netlink.Neigh{LinkIndex: dev.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
			IP: dst, HardwareAddr: peer.Attrs().HardwareAddr}
		if err := d.nl.NeighSet(n); err != nil {
			errs = append(errs, fmt.Errorf("neighbour %s dev %s: %w", s.ClusterIP, hostSvcDevice, err))
		}
	}
	return errors.Join(errs...)
}

// ensureHostSvcDevices creates the pp_svc/pp_svc_in veth pair in the node's namespace
// (`ip link add pp_svc type veth peer name pp_svc_in`, both up) if it is missing, and
// attaches from-host-svc to pp_svc_in's tcx ingress.
func (d *datapath) ensureHostSvcDevices() (netlink.Link, netlink.Link, error) {
	dev, err := d.nl.LinkByName(hostSvcDevice)
	if err != nil {
		la := netlink.NewLinkAttrs()
		la.Name = hostSvcDevice
		if err := d.nl.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: hostSvcPeer}); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", hostSvcDevice, err)
		}
		if dev, err = d.nl.LinkByName(hostSvcDevice); err != nil {
			return nil, nil, fmt.Errorf("create %s: %w", hostSvcDevice, err)
		}
	}
	peer, err := d.nl.LinkByName(hostSvcPeer)
	if err != nil {
		return nil, nil, fmt.Errorf("device %s: %w", hostSvcPeer, err)
	}
	for _, l := range []netlink.Link{dev, peer} {
		if err := d.nl.LinkSetUp(l); err != nil {
			return nil, nil, fmt.Errorf("set %s up: %w", l.Attrs().Name, err)
		}
	}
	if err := d.attach(peer, d.dp.FromHostSvc, loader.Ingress); err != nil {
		return nil, nil, err
	}
	return dev, peer, nil
}

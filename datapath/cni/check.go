// SPDX-License-Identifier: Apache-2.0

package cni

import (
	"fmt"
	"net"

	current "github.com/containernetworking/cni/pkg/types/100"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// checkPod looks into the pod's namespace (through a netlink handle there, no thread
// switching): ifName is up and holds every address prevResult gives it, and every
// route of prevResult is there (`ip -n POD addr show dev eth0; ip -n POD route`).
func checkPod(nsPath, ifName string, prev *current.Result) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open pod namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return fmt.Errorf("netlink in pod namespace %s: %w", nsPath, err)
	}
	defer h.Close()
	link, err := h.LinkByName(ifName)
	if err != nil {
		return fmt.Errorf("pod interface %s: %w", ifName, err)
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		return fmt.Errorf("pod interface %s is down", ifName)
	}
	addrs, err := h.AddrList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("addresses of pod interface %s: %w", ifName, err)
	}
	for _, ipc := range prev.IPs {
		if ipc.Interface == nil || *ipc.Interface >= len(prev.Interfaces) || prev.Interfaces[*ipc.Interface].Name != ifName {
			continue
		}
		found := false
		for _, a := range addrs {
			found = found || (a.IPNet.IP.Equal(ipc.Address.IP) && a.IPNet.Mask.String() == ipc.Address.Mask.String())
		}
		if !found {
			return fmt.Errorf("pod interface %s lacks %s", ifName, ipc.Address.String())
		}
	}
	routes, err := h.RouteList(link, netlink.FAMILY_ALL)
	if err != nil {
		return fmt.Errorf("routes of pod interface %s: %w", ifName, err)
	}
	for _, want := range prev.Routes {
		found := false
		for _, r := range routes {
			dst := "0.0.0.0/0"
			if r.Dst != nil {
				dst = r.Dst.String()
			}
			found = found || (dst == want.Dst.String() && (want.GW == nil || want.GW.Equal(r.Gw)))
		}
		if !found {
			return fmt.Errorf("pod has no route %s via %s dev %s", want.Dst.String(), want.GW, ifName)
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"io"
	"sort"
	"strings"

	"podpath/datapath/config"
)

// Status reports the mode actually in effect, like `cilium status`.
func (a *Agent) Status() Status {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := Status{
		Node:                 a.opts.Node,
		HostRouting:          "BPF",
		AutoDirectNodeRoutes: a.wantsDirectRoutes(),
		MonitorAggregation:   a.cfg.MonitorAggregation.String(),
		Devices:              a.opts.Devices,
		Endpoints:            len(a.store.endpoints()),
		Nodes:                len(a.store.nodes()),
		BPFFS:                a.opts.BPFFS,
	}
	if a.cfg.HostRouting == config.HostRoutingLegacy {
		s.HostRouting, s.HostRoutingReason = "Legacy", "enable-host-legacy-routing: true"
	}
	switch a.cfg.RoutingMode {
	case config.RoutingNative:
		s.RoutingMode = "native"
		s.NativeRoutingCIDR = a.cfg.NativeRoutingCIDR.String()
	default:
		s.RoutingMode = fmt.Sprintf("tunnel [%s, UDP %d]", a.cfg.TunnelProtocol, tunnelPort(a.cfg))
	}
	if a.dp != nil {
		s.Attached, s.Adopted = a.dp.attached(), a.dp.adopted
		s.NodeIP, s.MTU = a.dp.nodeIP.String(), a.dp.mtu
		s.Peers = a.peerList()
	}
	for _, p := range a.problems {
		s.Problems = append(s.Problems, p)
	}
	sort.Strings(s.Problems)
	for _, f := range a.report.Warnings {
		s.ConfigNotices = append(s.ConfigNotices, fmt.Sprintf("warning: %s: %s", f.Key, f.Message))
	}
	return s
}

// Print writes the status the way `cilium status` lays it out.
func (s Status) Print(w io.Writer) {
	line := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-24s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	line("Node", "%s", s.Node)
	hr := s.HostRouting
	if s.HostRoutingReason != "" {
		hr += " (" + s.HostRoutingReason + ")"
	}
	line("Host Routing", "%s", hr)
	rm := s.RoutingMode
	if s.NativeRoutingCIDR != "" {
		rm += " [native-routing-cidr " + s.NativeRoutingCIDR + "]"
	}
	line("Routing", "Network: %s", rm)
	line("Auto direct node routes", "%t", s.AutoDirectNodeRoutes)
	line("Monitor aggregation", "%s", s.MonitorAggregation)
	line("Devices", "%s", strings.Join(s.Devices, ", "))
	line("Node IP", "%s (underlay device %s)", s.NodeIP, s.MTU.UnderlayDevice)
	line("Device MTU", "%d (%s)", s.MTU.Device, s.MTU.DeviceSource)
	line("Route MTU", "%d (device MTU - %d: %s)", s.MTU.Route, s.MTU.Overhead, s.MTU.OverheadSource)
	if len(s.Peers) > 0 {
		line("Peer MTUs", "%-12s %-15s %-9s %-9s %s", "PEER", "NODE IP", "PATH MTU", "ROUTE MTU", "LEARNED")
		for _, p := range s.Peers {
			how := p.How
			if p.Error != "" {
				how += ": " + p.Error
			}
			fmt.Fprintf(w, "%-24s %-12s %-15s %-9d %-9d %s, %s\n", "", p.Peer, p.NodeIP, p.PathMTU, p.RouteMTU,
				p.Learned.Format("15:04:05"), how)
		}
	}
	line("Endpoints", "%d", s.Endpoints)
	line("Nodes", "%d", s.Nodes)
	line("BPF programs", "%d attached%s", len(s.Attached), adoptedNote(s.Adopted))
	for _, a := range s.Attached {
		fmt.Fprintf(w, "%-24s %s\n", "", a)
	}
	line("BPF filesystem", "%s", s.BPFFS)
	for _, p := range s.Problems {
		line("Problem", "%s", p)
	}
	for _, n := range s.ConfigNotices {
		line("Config", "%s", n)
	}
}

func adoptedNote(adopted bool) string {
	if adopted {
		return " (adopted from a previous agent)"
	}
	return ""
}

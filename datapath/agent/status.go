// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
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
		Hubble:               a.opts.HubbleSocket,
		Metrics:              a.opts.MetricsAddr,
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
		if a.cfg.TunnelProtocol == config.TunnelIPIP {
			s.RoutingMode = "tunnel [ipip, IPv4 protocol 4]"
		}
		if a.cfg.TunnelMode == config.TunnelCrossSubnet {
			s.RoutingMode += " cross-subnet"
			if a.dp != nil {
				s.RoutingMode += fmt.Sprintf(" (native within %s)", a.dp.subnet)
			}
		}
	}
	if a.dp != nil {
		s.Attached, s.Adopted = a.dp.attached(), a.dp.adopted
		s.XDPAcceleration = a.dp.xdpStatus(a.cfg.LBAcceleration)
		s.Generations = a.dp.generations()
		s.NodeIP, s.MTU = a.dp.nodeIP.String(), a.dp.mtu
		loaded := loadedState{cfg: a.dp.cfg, mtu: a.dp.mtu}
		if a.dp.dp != nil && a.dp.dp.Lxc.CtTcp != nil && a.dp.dp.Lxc.CtAny != nil {
			loaded.ctTCP, loaded.ctAny = a.dp.dp.Lxc.CtTcp.MaxEntries(), a.dp.dp.Lxc.CtAny.MaxEntries()
		}
		loaded.devices = a.opts.Devices
		if a.dp.dp != nil && a.dp.dp.Masq != nil && a.dp.cfg.MasqEnabled != 0 {
			if st, err := a.dp.dp.Masq.StatsRead(); err == nil {
				loaded.masq = &st
				s.Masquerade = &st
			}
			if l, err := a.dp.dp.Masq.NonMasqList(); err == nil {
				loaded.nonMasq = len(l)
			}
		}
		if a.dp.dp != nil && a.dp.dp.EgressGW != nil && a.dp.cfg.EgressGwEnabled != 0 {
			if l, err := a.dp.dp.EgressGW.List(); err == nil {
				loaded.egwEntries = len(l)
			}
		}
		s.Features = features(loaded, a.cfg)
		if s.KVStore = a.kvStatus(); s.KVStore != nil {
			for i := range s.Features {
				switch s.Features[i].Name {
				case "KVStore":
					s.Features[i].Value = s.KVStore.String()
				case "Identity Allocation":
					if a.kvIdentities() {
						s.Features[i].Value = "KVStore: identities allocated in etcd from the pods' labels (cilium/state/identities/v1)"
					}
				}
			}
		}
		s.Peers = a.peerList()
		s.ClusterMesh = a.meshStatus()
	}
	for _, p := range a.problems {
		s.Problems = append(s.Problems, p)
	}
	sort.Strings(s.Problems)
	s.ConfigWarnings = configWarnings(a.report)
	if a.bgp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		s.BGPPeers, _ = a.bgp.peers(ctx)
		s.BGPRoutes = a.bgp.routes()
	}
	return s
}

// configWarnings are the report's warnings as the status carries them.
func configWarnings(r *config.Report) []ConfigWarning {
	if r == nil {
		return nil
	}
	out := make([]ConfigWarning, 0, len(r.Warnings))
	for _, f := range r.Warnings {
		out = append(out, ConfigWarning{Key: f.Key, Message: f.Message})
	}
	return out
}

// loadedState is what the agent loaded: the BPF configuration its programs run
// with, the MTU plan, and the conntrack maps' sizes (0: not known).
type loadedState struct {
	cfg          bpfconfig.Config
	mtu          MTUs
	ctTCP, ctAny uint32
	// BPF masquerading: the devices, the counters (nil: not read) and the number
	// of non-masquerade CIDRs.
	devices []string
	masq    *maps.MasqStats
	nonMasq int
	// egwEntries are the egress gateway map's entries.
	egwEntries int
}

// features derives the `cilium status` feature lines from what was loaded; c adds
// only what the agent itself does with it (backend selection programs the
// services) and says which settings asked for what is not in effect.
func features(l loadedState, c *config.Config) []Feature {
	var out []Feature
	add := func(name, format string, args ...any) {
		out = append(out, Feature{Name: name, Value: fmt.Sprintf(format, args...)})
	}
	raw := func(key string) (string, bool) { // a setting as given, when given
		v, ok := c.Raw[key]
		v = strings.TrimSpace(v)
		return v, ok && v != ""
	}
	asked := func(key string) string { // " (key: value is set but not implemented)" for a true bool
		if v, ok := raw(key); ok {
			if b, err := strconv.ParseBool(v); err == nil && b {
				return fmt.Sprintf(" (%s: %s is set but not implemented)", key, v)
			}
		}
		return ""
	}
	b := l.cfg
	lb := b.LbEnabled != 0

	if lb {
		add("KubeProxyReplacement", "True")
	} else {
		add("KubeProxyReplacement", "False")
	}
	if bpfobj.LxcHostRouting(b.HostRouting) == bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY {
		add("Host Routing", "Legacy")
	} else {
		add("Host Routing", "BPF")
	}
	if bpfobj.LxcRoutingMode(b.RoutingMode) == bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL {
		proto := "vxlan"
		switch bpfobj.LxcTunnelProtocol(b.TunnelProtocol) {
		case bpfobj.LxcTunnelProtocolTUNNEL_GENEVE:
			proto = "geneve"
		case bpfobj.LxcTunnelProtocolTUNNEL_IPIP:
			proto = "ipip"
		}
		add("Routing", "Network: Tunnel [%s]", proto)
		if proto == "ipip" {
			add("Tunnel Protocol", "IPv4 protocol 4")
		} else {
			add("Tunnel Port", "%d/udp", b.TunnelPort)
		}
		if b.TunnelMode == uint8(bpfconfig.TunnelModeCrossSubnet) {
			add("Tunnel Mode", "cross-subnet (native within /%d of the node IP)", b.NodeSubnetLen)
		}
	} else {
		add("Routing", "Network: Native")
		add("Native Routing CIDR", "%s", netip.PrefixFrom(netip.AddrFrom4(b.NativeRoutingCidr), int(b.NativeRoutingCidrLen)))
	}
	switch {
	case b.MasqEnabled != 0:
		line := fmt.Sprintf("BPF [%s], ports %d-%d", strings.Join(l.devices, ", "), b.MasqPortMin, b.MasqPortMax)
		if bpfobj.LxcRoutingMode(b.RoutingMode) == bpfobj.LxcRoutingModeROUTING_MODE_NATIVE {
			line += ", outside " + netip.PrefixFrom(netip.AddrFrom4(b.NativeRoutingCidr), int(b.NativeRoutingCidrLen)).String()
		} else {
			line += ", outside the cluster"
		}
		if b.MasqIpMasqAgent != 0 {
			line += fmt.Sprintf(", ip-masq-agent %s (%d non-masquerade CIDRs)", c.IPMasqAgentConfigPath, l.nonMasq)
		}
		if l.masq != nil {
			line += fmt.Sprintf("; flows %d, replies %d, ICMP errors %d, no free port %d, failed %d",
				l.masq.NewFlows, l.masq.Replies, l.masq.ICMPErrors, l.masq.NoPort, l.masq.Failed)
		}
		add("Masquerading", "%s", line)
	case c.Masquerading() == config.MasqueradeLegacy:
		add("Masquerading", "IPTables [nftables table ip %s in the node]", MasqTable)
	case !c.EnableIPv4MasqueradeGiven:
		add("Masquerading", "Disabled (enable-ipv4-masquerade not set: Cilium's default, true, would masquerade with iptables)")
	default:
		add("Masquerading", "Disabled")
	}
	if b.EgressGwEnabled != 0 {
		add("Egress Gateway", "Enabled (%d policy entries: pod, destination CIDR)", l.egwEntries)
	} else if c.EnableIPv4EgressGateway {
		add("Egress Gateway", "Disabled (enable-ipv4-egress-gateway needs BPF masquerading)")
	}
	add("MTU", "%d (device %s), pods %d", l.mtu.Device, l.mtu.UnderlayDevice, l.mtu.Route)
	if lb {
		mode := map[bpfobj.LxcLbMode]string{bpfobj.LxcLbModeLB_MODE_SNAT: "SNAT", bpfobj.LxcLbModeLB_MODE_DSR: "DSR",
			bpfobj.LxcLbModeLB_MODE_HYBRID: "Hybrid"}[bpfobj.LxcLbMode(b.LbMode)]
		sel := "Random"
		if c.LBAlgorithm == config.LBMaglev {
			sel = "Maglev"
		}
		add("Load Balancing", "Mode: %s, Backend Selection: %s", mode, sel)
		seed := "default"
		if b.LbMaglevSeed != maglev.DefaultSeed() {
			seed = "set"
		}
		if c.LBAlgorithm == config.LBMaglev {
			add("Maglev", "table size %d, seed %s", b.LbMaglevTableSize, seed)
		} else {
			add("Maglev", "Disabled (bpf-lb-algorithm: random)")
		}
		if l.ctTCP != 0 {
			add("Conntrack", "TCP %d entries, any %d entries", l.ctTCP, l.ctAny)
		}
	} else {
		add("Load Balancing", "Disabled (no kube-proxy replacement)")
		add("Maglev", "Disabled (no kube-proxy replacement)")
		add("Conntrack", "Disabled (only service load balancing tracks connections)")
	}
	kv := "Disabled"
	if v, ok := raw("kvstore"); ok {
		kv += fmt.Sprintf(" (kvstore: %s is set but not implemented)", v)
	}
	add("KVStore", "%s", kv)
	ids := "Local: each agent derives a pod's identity from its labels"
	if v, ok := raw("identity-allocation-mode"); ok {
		ids += fmt.Sprintf(" (identity-allocation-mode: %s is set but not implemented)", v)
	}
	add("Identity Allocation", "%s", ids)
	aggs := map[bpfobj.LxcMonitorAggregation]string{bpfobj.LxcMonitorAggregationAGGREGATION_NONE: "None",
		bpfobj.LxcMonitorAggregationAGGREGATION_LOW: "Low", bpfobj.LxcMonitorAggregationAGGREGATION_MEDIUM: "Medium",
		bpfobj.LxcMonitorAggregationAGGREGATION_MAX: "Maximum"}
	add("Monitor Aggregation", "%s", aggs[bpfobj.LxcMonitorAggregation(b.MonitorAggregation)])
	add("Debug", "Disabled%s", asked("debug"))
	add("IPv4", "Enabled")
	add("IPv6", "Disabled")
	return out
}

// Print writes the status the way `cilium status` lays it out.
func (s Status) Print(w io.Writer) {
	line := func(k, format string, args ...any) {
		fmt.Fprintf(w, "%-24s "+format+"\n", append([]any{k + ":"}, args...)...)
	}
	line("Node", "%s", s.Node)
	for _, f := range s.Features {
		line(f.Name, "%s", f.Value)
	}
	line("Devices", "%s", strings.Join(s.Devices, ", "))
	line("Node IP", "%s (underlay device %s)", s.NodeIP, s.MTU.UnderlayDevice)
	line("Auto direct node routes", "%t", s.AutoDirectNodeRoutes)
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
	if len(s.ClusterMesh) > 0 {
		ready := 0
		for _, m := range s.ClusterMesh {
			if m.Ready {
				ready++
			}
		}
		// Cilium's line: "ClusterMesh: 1/1 remote clusters ready, 0 global-services".
		line("ClusterMesh", "%d/%d remote clusters ready", ready, len(s.ClusterMesh))
		for _, m := range s.ClusterMesh {
			fmt.Fprintf(w, "%-24s %s: ready=%t, %d nodes, %d endpoints, %d services; %s\n", "", m.Cluster, m.Ready, m.Nodes, m.Endpoints, m.Services, m.KVStore)
		}
	}
	line("Endpoints", "%d", s.Endpoints)
	line("Nodes", "%d", s.Nodes)
	line("BPF programs", "%d attached%s", len(s.Attached), adoptedNote(s.Adopted))
	for _, a := range s.Attached {
		fmt.Fprintf(w, "%-24s %s\n", "", a)
	}
	if s.XDPAcceleration != "" {
		line("XDP acceleration", "%s", s.XDPAcceleration)
	}
	if g := s.Generations; g != nil {
		line("Generations", "fib %d, backends %d", g.FIB, g.Backends)
	}
	line("BPF filesystem", "%s", s.BPFFS)
	if len(s.BGPPeers) > 0 {
		printBGPPeers(w, s.BGPPeers)
	}
	for _, r := range s.BGPRoutes {
		line("BGP route", "%s via %s (next hop %s from %s)", r.Prefix, r.Via, r.NextHop, r.Peer)
	}
	if s.Hubble != "" {
		line("Hubble", "Ok  unix://%s", s.Hubble)
	} else {
		line("Hubble", "Disabled")
	}
	if s.Metrics != "" {
		line("Metrics", "http://%s/metrics", s.Metrics)
	}
	for _, p := range s.Problems {
		line("Problem", "%s", p)
	}
	if len(s.ConfigWarnings) > 0 {
		fmt.Fprintf(w, "Config warnings (%d): settings podpath does not do as written\n", len(s.ConfigWarnings))
		for _, cw := range s.ConfigWarnings {
			fmt.Fprintf(w, "  WARNING %s\n", cw)
		}
	}
}

// printBGPPeers prints the sessions as `cilium bgp peers` does: local AS, peer AS,
// peer address, session state, uptime (or time since it went down), family, routes
// received and advertised.
func printBGPPeers(w io.Writer, peers []BGPPeerStatus) {
	fmt.Fprintf(w, "BGP peers:\n  %-10s %-10s %-16s %-12s %-10s %-14s %-9s %s\n", "Local AS", "Peer AS", "Peer Address", "Session", "Uptime", "Family", "Received", "Advertised")
	for _, p := range peers {
		up := "-"
		if !p.Since.IsZero() {
			up = time.Since(p.Since).Truncate(time.Second).String()
		}
		fmt.Fprintf(w, "  %-10d %-10d %-16s %-12s %-10s %-14s %-9d %d\n", p.LocalASN, p.PeerASN, p.Peer+":179", p.State, up, p.Family, p.Received, p.Advertised)
	}
}

func adoptedNote(adopted bool) string {
	if adopted {
		return " (adopted from a previous agent)"
	}
	return ""
}

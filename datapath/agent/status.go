// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maglev"
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
	}
	if a.dp != nil {
		s.Attached, s.Adopted = a.dp.attached(), a.dp.adopted
		s.NodeIP, s.MTU = a.dp.nodeIP.String(), a.dp.mtu
		loaded := loadedState{cfg: a.dp.cfg, mtu: a.dp.mtu}
		if a.dp.dp != nil && a.dp.dp.Lxc.CtTcp != nil && a.dp.dp.Lxc.CtAny != nil {
			loaded.ctTCP, loaded.ctAny = a.dp.dp.Lxc.CtTcp.MaxEntries(), a.dp.dp.Lxc.CtAny.MaxEntries()
		}
		s.Features = features(loaded, a.cfg)
		s.Peers = a.peerList()
	}
	for _, p := range a.problems {
		s.Problems = append(s.Problems, p)
	}
	sort.Strings(s.Problems)
	s.ConfigWarnings = configWarnings(a.report)
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
		if bpfobj.LxcTunnelProtocol(b.TunnelProtocol) == bpfobj.LxcTunnelProtocolTUNNEL_GENEVE {
			proto = "geneve"
		}
		add("Routing", "Network: Tunnel [%s]", proto)
		add("Tunnel Port", "%d/udp", b.TunnelPort)
	} else {
		add("Routing", "Network: Native")
		add("Native Routing CIDR", "%s", netip.PrefixFrom(netip.AddrFrom4(b.NativeRoutingCidr), int(b.NativeRoutingCidrLen)))
	}
	masq := "Disabled"
	if why := asked("enable-bpf-masquerade"); why != "" {
		masq += why
	} else if why := asked("enable-ipv4-masquerade"); why != "" {
		masq += why
	}
	add("Masquerading", "%s", masq)
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
	ids := "Local: each agent derives a pod's identity from its name"
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
	line("Endpoints", "%d", s.Endpoints)
	line("Nodes", "%d", s.Nodes)
	line("BPF programs", "%d attached%s", len(s.Attached), adoptedNote(s.Adopted))
	for _, a := range s.Attached {
		fmt.Fprintf(w, "%-24s %s\n", "", a)
	}
	line("BPF filesystem", "%s", s.BPFFS)
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

func adoptedNote(adopted bool) string {
	if adopted {
		return " (adopted from a previous agent)"
	}
	return ""
}

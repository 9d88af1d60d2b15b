// SPDX-License-Identifier: Apache-2.0

package config

import (
	"encoding/base64"
	"fmt"
	"maps"
	"net/netip"
	"strings"
)

// RoutingMode is how pods on other nodes are reached.
type RoutingMode string

// Routing modes (cilium-config routing-mode).
const (
	RoutingNative RoutingMode = "native"
	RoutingTunnel RoutingMode = "tunnel"
)

// TunnelProtocol is the encapsulation of tunnel mode.
type TunnelProtocol string

// Tunnel protocols (cilium-config tunnel-protocol).
const (
	TunnelVXLAN  TunnelProtocol = "vxlan"
	TunnelGeneve TunnelProtocol = "geneve"
	// TunnelIPIP is a podpath extension (Calico's IPIP; Cilium accepts only vxlan and
	// geneve): IPv4 in IPv4 (protocol 4), encapsulated and decapsulated in BPF.
	TunnelIPIP TunnelProtocol = "ipip"
)

// TunnelMode says which peers the tunnel is used for (podpath key tunnel-mode,
// Calico's ipipMode/vxlanMode).
type TunnelMode string

// Tunnel modes (podpath key tunnel-mode).
const (
	// TunnelAlways encapsulates traffic to every other node (Calico's Always).
	TunnelAlways TunnelMode = "always"
	// TunnelCrossSubnet reaches a node on this node's own underlay subnet natively
	// and only a node on another subnet through the tunnel (Calico's CrossSubnet).
	TunnelCrossSubnet TunnelMode = "cross-subnet"
)

// IPIPOverhead is what IPIP adds to an inner IPv4 packet: the outer IPv4 header.
const IPIPOverhead = 20

// Default UDP ports of the tunnel protocols.
const (
	PortVXLAN  = 8472 // Linux and Cilium (IANA's is 4789)
	PortGeneve = 6081 // IANA
)

// TunnelOverhead is what encapsulation adds to an inner IPv4 packet over an IPv4
// underlay: outer IPv4 20 + UDP 8 + VXLAN or Geneve 8 + inner Ethernet 14 bytes.
const TunnelOverhead = 50

// MinRouteMTU is IPv4's minimum MTU: the smallest route MTU pods may be given.
const MinRouteMTU = 68

// DefaultPort returns the protocol's UDP port: 8472 for VXLAN, 6081 for Geneve, 0
// for IPIP (no UDP).
func (p TunnelProtocol) DefaultPort() uint16 {
	switch p {
	case TunnelGeneve:
		return PortGeneve
	case TunnelIPIP:
		return 0
	}
	return PortVXLAN
}

// Overhead returns what the protocol adds to an inner IPv4 packet over an IPv4
// underlay, options aside: 20 for IPIP (outer IPv4), TunnelOverhead (50) for VXLAN
// and Geneve.
func (p TunnelProtocol) Overhead() int {
	if p == TunnelIPIP {
		return IPIPOverhead
	}
	return TunnelOverhead
}

// HostRouting is how traffic between pods and the node's devices is routed.
type HostRouting string

// Host routing kinds, spelled as cilium status prints them.
const (
	HostRoutingBPF    HostRouting = "BPF"    // bpf_redirect_peer / bpf_redirect_neigh
	HostRoutingLegacy HostRouting = "Legacy" // through the host stack
)

// MonitorAggregation is the trace aggregation level. Its order (none < low < medium
// < maximum) is podpath's, not Cilium's numbering (Cilium: none 0, lowest 1, low 2,
// medium 3, max 4); bpfconfig.Build maps each level onto enum monitor_aggregation of
// bpf/lib/config.h by name.
type MonitorAggregation uint32

// Monitor aggregation levels.
const (
	AggregationNone    MonitorAggregation = iota // every packet is traced
	AggregationLow                               // (reserved for per-flow sampling)
	AggregationMedium                            // drops and flow-changing verdicts
	AggregationMaximum                           // drops only
)

// aggregationNames is the one table of the levels' cilium-config names: String,
// the monitor-aggregation parser and the key's accepted values derive from it.
// config stays free of BPF imports (it parses cilium-config for the CLIs, kind and
// scenario files too), so these names are not read from BTF.
var aggregationNames = [...]string{
	AggregationNone: "none", AggregationLow: "low", AggregationMedium: "medium", AggregationMaximum: "maximum",
}

func (m MonitorAggregation) String() string {
	if int(m) < len(aggregationNames) {
		return aggregationNames[m]
	}
	return fmt.Sprintf("MonitorAggregation(%d)", uint32(m))
}

// TCPFlags is a set of TCP header flags, bits as in the TCP header (FIN = 0x01).
type TCPFlags uint8

// TCP flags.
const (
	FlagFIN TCPFlags = 1 << iota
	FlagSYN
	FlagRST
	FlagPSH
	FlagACK
	FlagURG
	FlagECE
	FlagCWR
)

type flagName struct {
	name string
	flag TCPFlags
}

var flagNames = []flagName{
	{"fin", FlagFIN}, {"syn", FlagSYN}, {"rst", FlagRST}, {"psh", FlagPSH},
	{"ack", FlagACK}, {"urg", FlagURG}, {"ece", FlagECE}, {"cwr", FlagCWR},
}

func (f TCPFlags) String() string {
	switch f {
	case 0:
		return "none"
	case 0xff:
		return "all"
	}
	var names []string
	for _, n := range flagNames {
		if f&n.flag != 0 {
			names = append(names, n.name)
		}
	}
	return strings.Join(names, ",")
}

// KubeProxyReplacement says whether podpath's BPF service load balancing replaces
// kube-proxy. Cilium <= 1.13 values are mapped onto it (see Config.KubeProxyReplacementGiven).
type KubeProxyReplacement string

// kube-proxy replacement settings (Cilium >= 1.14 values).
const (
	KPRTrue  KubeProxyReplacement = "true"
	KPRFalse KubeProxyReplacement = "false"
)

// LBAcceleration is bpf-lb-acceleration: whether NodePort and LoadBalancer frontends
// are served at XDP (bpf/bpf_xdp.c) on the node's devices.
type LBAcceleration string

// bpf-lb-acceleration values.
const (
	LBAccelerationDisabled   LBAcceleration = "disabled"
	LBAccelerationNative     LBAcceleration = "native"      // native XDP on every device, or the agent fails
	LBAccelerationBestEffort LBAcceleration = "best-effort" // native XDP where the driver can, else off (status says)
)

// LBMode is how NodePort traffic reaches a remote backend.
type LBMode string

// Load-balancing modes (cilium-config bpf-lb-mode).
const (
	LBModeSNAT   LBMode = "snat"
	LBModeDSR    LBMode = "dsr"
	LBModeHybrid LBMode = "hybrid" // DSR for TCP, SNAT for UDP
)

// UsesDSR reports whether the mode sends (some) replies directly from the backend.
func (m LBMode) UsesDSR() bool { return m == LBModeDSR || m == LBModeHybrid }

// LBAlgorithm is the backend selection.
type LBAlgorithm string

// Backend selection algorithms (cilium-config bpf-lb-algorithm).
const (
	LBRandom LBAlgorithm = "random"
	LBMaglev LBAlgorithm = "maglev"
)

// DSRDispatch is how DSR carries the service address to the backend's node.
type DSRDispatch string

// DSR dispatch methods (cilium-config bpf-lb-dsr-dispatch).
const (
	DSRDispatchOption DSRDispatch = "opt"    // IPv4 option on the first packet
	DSRDispatchGeneve DSRDispatch = "geneve" // Geneve option
)

// Config is the resolved, typed datapath configuration.
type Config struct {
	RoutingMode RoutingMode
	// TunnelProtocol is the encapsulation in tunnel mode; native routing does not use it.
	TunnelProtocol TunnelProtocol
	// TunnelPort is the UDP port of the tunnel (the protocol's default when unset;
	// 0 for IPIP).
	TunnelPort uint16
	// TunnelMode is which peers the tunnel is used for (podpath key tunnel-mode).
	TunnelMode TunnelMode
	// NativeRoutingCIDR is ipv4-native-routing-cidr, masked; zero when unset.
	NativeRoutingCIDR    netip.Prefix
	AutoDirectNodeRoutes bool
	HostRouting          HostRouting
	EnableIPv4           bool
	MonitorAggregation   MonitorAggregation
	// MonitorAggregationFlags are the TCP flags still traced under medium aggregation.
	MonitorAggregationFlags TCPFlags
	// MTU is the device MTU; 0 means derive it from the underlay.
	MTU                  int
	KubeProxyReplacement KubeProxyReplacement
	// KubeProxyReplacementGiven is the kube-proxy-replacement value as written,
	// e.g. "probe"; empty when the key is absent.
	KubeProxyReplacementGiven string
	LBMode                    LBMode
	LBAlgorithm               LBAlgorithm
	LBAcceleration            LBAcceleration
	MaglevTableSize           int
	MaglevHashSeed            [12]byte
	// MaglevHashSeedSet says bpf-lb-maglev-hash-seed was given; otherwise
	// MaglevHashSeed is Cilium's default seed.
	MaglevHashSeedSet bool
	DSRDispatch       DSRDispatch
	CTTCPMax          int
	CTAnyMax          int
	// MapDynamicSizeRatio is bpf-map-dynamic-size-ratio (0 = disabled).
	MapDynamicSizeRatio  float64
	ClusterName          string
	Debug                bool
	EnableBPFMasquerade  bool
	EnableIPv4Masquerade bool
	// LBSock is bpf-lb-sock (socket-LB); LBSockHostnsOnly bpf-lb-sock-hostns-only.
	LBSock           bool
	LBSockHostnsOnly bool
	// EnableIPv4MasqueradeGiven says enable-ipv4-masquerade was set: podpath
	// masquerades only then (Masquerading()).
	EnableIPv4MasqueradeGiven bool
	// EnableIPMasqAgent is enable-ip-masq-agent: destinations in the ip-masq-agent
	// config's nonMasqueradeCIDRs (read from IPMasqAgentConfigPath) are not
	// masqueraded (BPF masquerading only).
	EnableIPMasqAgent bool
	// EnableIPv4EgressGateway is enable-ipv4-egress-gateway: CiliumEgressGatewayPolicy
	// objects send selected pods' traffic through a gateway node (needs BPF
	// masquerading).
	EnableIPv4EgressGateway bool
	IPMasqAgentConfigPath   string
	// NATGlobalMax is bpf-nat-global-max: the entries of the snat map (NodePort SNAT
	// and BPF masquerading).
	NATGlobalMax int
	// MasqPortMin and MasqPortMax are podpath-masquerade-port-range: the source
	// ports (ICMP echo identifiers) BPF masquerading hands out, inclusive.
	MasqPortMin, MasqPortMax uint16
	// Service semantics (issue 12).
	// ServiceNoBackendReject is service-no-backend-response=reject: a new flow to a
	// service without backends gets a TCP RST or ICMP port unreachable, else a drop.
	ServiceNoBackendReject bool
	// SvcSourceRangeCheck is enable-svc-source-range-check: loadBalancerSourceRanges
	// are enforced.
	SvcSourceRangeCheck bool
	// IPv4FragmentTracking is enable-ipv4-fragment-tracking: later fragments of a
	// TCP/UDP datagram take the ports (and so the translation) of its first one.
	IPv4FragmentTracking bool
	// LBExternalClusterIP is bpf-lb-external-clusterip: a ClusterIP routed to a node
	// from outside is served (else dropped, DROP_IS_CLUSTER_IP).
	LBExternalClusterIP bool
	// ServiceTopology is enable-service-topology: each node's frontends take the
	// backends hinted for its zone (EndpointSlice hints.forZones), all of them when
	// any backend has no hint or none is hinted for the zone.
	ServiceTopology bool
	// EnableBGPControlPlane runs the agent's BGP speaker (enable-bgp-control-plane).
	EnableBGPControlPlane bool
	// Network policy: enable-policy (default, always, never), policy-audit-mode and
	// bpf-events-policy-verdict-enabled.
	PolicyEnforcement   string
	PolicyAuditMode     bool
	PolicyVerdictEvents bool
	// KVStore is kvstore ("" or etcd), EtcdConfig the etcd-config document and
	// IdentityAllocationMode identity-allocation-mode (kvstore feature).
	KVStore                string
	EtcdConfig             string
	IdentityAllocationMode string
	// Raw holds the data keys as given.
	Raw map[string]string
}

// Default returns the configuration podpath uses when nothing is configured:
// tunnel mode with VXLAN on port 8472, BPF host routing, no kube-proxy replacement,
// SNAT with random backend selection, and Cilium's defaults for the rest.
func Default() *Config {
	seed, err := base64.StdEncoding.DecodeString(MaglevSeedDefault)
	if err != nil || len(seed) != 12 {
		panic("config: bad default Maglev seed")
	}
	c := &Config{
		RoutingMode:             RoutingTunnel,
		TunnelProtocol:          TunnelVXLAN,
		TunnelPort:              PortVXLAN,
		TunnelMode:              TunnelAlways,
		HostRouting:             HostRoutingBPF,
		EnableIPv4:              true,
		MonitorAggregation:      AggregationNone,
		MonitorAggregationFlags: FlagSYN | FlagFIN | FlagRST,
		KubeProxyReplacement:    KPRFalse,
		LBMode:                  LBModeSNAT,
		LBAcceleration:          LBAccelerationDisabled,
		LBAlgorithm:             LBRandom,
		MaglevTableSize:         16381,
		DSRDispatch:             DSRDispatchOption,
		PolicyEnforcement:       "default",
		PolicyVerdictEvents:     true,
		CTTCPMax:                524288,
		CTAnyMax:                262144,
		ClusterName:             "default",
		IdentityAllocationMode:  "crd",
		EnableIPv4Masquerade:    true,
		IPMasqAgentConfigPath:   DefaultIPMasqAgentConfigPath,
		NATGlobalMax:            524288,
		MasqPortMin:             DefaultMasqPortMin,
		MasqPortMax:             DefaultMasqPortMax,
		ServiceNoBackendReject:  true,
		SvcSourceRangeCheck:     true,
		IPv4FragmentTracking:    true,
		Raw:                     map[string]string{},
	}
	copy(c.MaglevHashSeed[:], seed)
	return c
}

// Masquerading modes (Config.Masquerading), spelled as cilium status prints them.
const (
	MasqueradeOff    = ""         // nothing is masqueraded
	MasqueradeBPF    = "BPF"      // bpf_host's to-netdev (bpf/lib/masq.h)
	MasqueradeLegacy = "IPTables" // nftables masquerade rules the agent installs in the node
)

// DefaultIPMasqAgentConfigPath is where Cilium reads the ip-masq-agent config
// (ip-masq-agent-config-path): the ip-masq-agent ConfigMap's key "config" mounted
// at /etc/config.
const DefaultIPMasqAgentConfigPath = "/etc/config/ip-masq-agent"

// The default masquerade source ports: the kernel's default ephemeral range
// (net.ipv4.ip_local_port_range). Cilium hands out 32768-65535 (NODEPORT_PORT_MIN_NAT
// .. NODEPORT_PORT_MAX_NAT) to NodePort SNAT and masquerading alike; podpath keeps
// 61000-65535 for NodePort SNAT (bpfconfig.DefaultSNATPortMin), so the two ranges
// do not overlap (they share the snat map, which would keep them apart anyway).
const (
	DefaultMasqPortMin = 32768
	DefaultMasqPortMax = 60999
)

// Masquerading says how pods' traffic leaving the cluster is masqueraded:
// MasqueradeBPF with enable-ipv4-masquerade and enable-bpf-masquerade true,
// MasqueradeLegacy with enable-ipv4-masquerade true and enable-bpf-masquerade false,
// MasqueradeOff otherwise, and also while enable-ipv4-masquerade is absent: Cilium's
// default is true, but podpath masquerades only when the key says so (a notice says
// it).
func (c *Config) Masquerading() string {
	if !c.EnableIPv4Masquerade || !c.EnableIPv4MasqueradeGiven {
		return MasqueradeOff
	}
	if c.EnableBPFMasquerade {
		return MasqueradeBPF
	}
	return MasqueradeLegacy
}

// Clone returns a deep copy of c.
func (c *Config) Clone() *Config {
	cc := *c
	cc.Raw = maps.Clone(c.Raw)
	return &cc
}

// Summary describes c in lines shaped like `cilium status` output.
func (c *Config) Summary() []string {
	var s []string
	kpr := "False"
	if c.KubeProxyReplacement == KPRTrue {
		kpr = "True"
	}
	if g := c.KubeProxyReplacementGiven; g != "" && g != string(c.KubeProxyReplacement) && !strings.EqualFold(g, kpr) {
		kpr += " (configured as " + g + ")"
	}
	s = append(s, "KubeProxyReplacement: "+kpr)

	if c.RoutingMode == RoutingTunnel {
		s = append(s, fmt.Sprintf("Routing: Network: Tunnel [%s]", c.TunnelProtocol))
		s = append(s, fmt.Sprintf("Tunnel port: %d/udp", c.TunnelPort))
	} else {
		s = append(s, "Routing: Network: Native")
		s = append(s, "Native routing CIDR: "+c.NativeRoutingCIDR.String())
	}
	s = append(s, "Auto direct node routes: "+onOff(c.AutoDirectNodeRoutes))
	s = append(s, "Host Routing: "+string(c.HostRouting))

	switch m := c.Masquerading(); m {
	case MasqueradeOff:
		if c.EnableIPv4MasqueradeGiven {
			s = append(s, "Masquerading: Disabled")
		} else {
			s = append(s, "Masquerading: Disabled (enable-ipv4-masquerade not set: Cilium's default, true, would masquerade with iptables)")
		}
	case MasqueradeBPF:
		line := fmt.Sprintf("Masquerading: BPF, ports %d-%d", c.MasqPortMin, c.MasqPortMax)
		if c.RoutingMode == RoutingNative {
			line += ", outside " + c.NativeRoutingCIDR.String()
		} else {
			line += ", outside the cluster"
		}
		if c.EnableIPMasqAgent {
			line += ", ip-masq-agent " + c.IPMasqAgentConfigPath
		}
		s = append(s, line)
	default:
		s = append(s, "Masquerading: "+m+" (nftables in the node)")
	}

	lb := "Load balancing: Mode: " + strings.ToUpper(string(c.LBMode))
	if c.LBMode.UsesDSR() {
		lb += " [dispatch: " + string(c.DSRDispatch) + "]"
	}
	if c.LBAlgorithm == LBMaglev {
		lb += fmt.Sprintf(", Backend Selection: Maglev [table size %d]", c.MaglevTableSize)
	} else {
		lb += ", Backend Selection: Random"
	}
	s = append(s, lb)

	s = append(s, "Monitor aggregation: "+c.MonitorAggregation.String())
	if c.MTU == 0 {
		s = append(s, "MTU: auto")
	} else {
		s = append(s, fmt.Sprintf("MTU: %d", c.MTU))
	}
	if c.KubeProxyReplacement == KPRTrue {
		s = append(s, fmt.Sprintf("CT map sizes: TCP %d, any %d", c.CTTCPMax, c.CTAnyMax))
	} else {
		s = append(s, "CT map sizes: not used (conntrack only for kube-proxy replacement)")
	}
	s = append(s, "IPv4: Enabled, IPv6: Disabled")
	return s
}

func onOff(b bool) string {
	if b {
		return "Enabled"
	}
	return "Disabled"
}

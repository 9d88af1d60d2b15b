// SPDX-License-Identifier: Apache-2.0

package bpfconfig

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maglev"
)

// Config is struct podpath_config of bpf/lib/config.h: the constants every program
// reads, set in .rodata before load so the verifier sees the values. Every object
// carries the same struct; the bpf_lxc binding is the canonical Go type. Enum fields
// hold the bpf2go-generated values (bpfobj.Lxc<Enum>), converted to the field's
// width. Addresses are as on the wire (netip.Addr.As4()).
type Config = bpfobj.LxcPodpathConfig

// Node is what the agent learns about its node at start, besides the config.
type Node struct {
	// ID is stamped on every trace record.
	ID uint32
	// IP is the node's underlay IPv4: the outer source of encapsulated packets, the
	// key of NodePort frontends and the source SNAT rewrites to.
	IP netip.Addr
	// TunnelMTU is, in tunnel mode, the largest inner IPv4 packet that is
	// encapsulated: the route MTU, TunnelMTU(device MTU, Geneve option bytes).
	// Ignored with native routing.
	TunnelMTU int
	// VXLANIfindex is, with VXLAN tunnelling, the ifindex of the node's collect_md
	// vxlan device (`ip link add cilium_vxlan type vxlan external dstport 8472`);
	// it must exist before the load. Ignored otherwise.
	VXLANIfindex int
	// NetnsCookie is the cookie of the node's own network namespace
	// (getsockopt SO_NETNS_COOKIE in it): with bpf-lb-sock-hostns-only, socket-LB
	// translates only sockets whose namespace has this cookie.
	NetnsCookie uint64
	// SubnetBits is the prefix length of the node IP's own interface subnet
	// (10.0.1.2/24: 24): with tunnel-mode cross-subnet, peers inside it are reached
	// natively. Ignored otherwise.
	SubnetBits int
}

// Conntrack lifetimes Cilium uses, in seconds.
const (
	DefaultCTTimeoutTCP        = 21600 // established TCP
	DefaultCTTimeoutTCPSyn     = 60    // TCP that has only seen SYNs
	DefaultCTTimeoutTCPClosing = 10    // TCP after a FIN or RST
	DefaultCTTimeoutAny        = 60    // UDP
)

// The default NodePort SNAT source ports: above the kernel's default ephemeral range
// (net.ipv4.ip_local_port_range 32768 60999), so that a translated flow never takes
// the port of a connection the node opened itself, and outside the NodePort range.
const (
	DefaultSNATPortMin = 61000
	DefaultSNATPortMax = 65535
)

// TunnelOverhead is what encapsulation adds to an inner IPv4 packet over an IPv4
// underlay: outer IPv4 20 + UDP 8 + VXLAN or Geneve 8 + inner Ethernet 14 bytes.
const TunnelOverhead = config.TunnelOverhead

// TunnelMTU is the tunnel MTU of Config.TunnelMtu: the largest inner IPv4 packet that
// fits an underlay device of deviceMTU once encapsulated with geneveOptBytes of Geneve
// options on every packet (0 for VXLAN): deviceMTU - 50 - geneveOptBytes. The agent
// gives pod routes, and the node's routes to remote PodCIDRs, this MTU.
func TunnelMTU(deviceMTU, geneveOptBytes int) int {
	return deviceMTU - TunnelOverhead - geneveOptBytes
}

// ProtocolTunnelMTU is TunnelMTU for protocol p: deviceMTU - p.Overhead() (20 for
// IPIP, 50 for VXLAN and Geneve) - geneveOptBytes.
func ProtocolTunnelMTU(p config.TunnelProtocol, deviceMTU, geneveOptBytes int) int {
	return deviceMTU - p.Overhead() - geneveOptBytes
}

// The tunnel MTU is an inner IPv4 packet size: at least IPv4's minimum MTU, and small
// enough that the outer packet's total length still fits 16 bits.
const (
	minTunnelMTU = config.MinRouteMTU
	maxTunnelMTU = 0xffff - TunnelOverhead
)

// TunnelMode is enum tunnel_mode of bpf/lib/config.h (Config.TunnelMode); its values
// are checked against the objects' BTF (TestTunnelModeMatchesBTF).
type TunnelMode uint8

// Values of enum tunnel_mode.
const (
	TunnelModeAlways      TunnelMode = 0 // TUNNEL_MODE_ALWAYS
	TunnelModeCrossSubnet TunnelMode = 1 // TUNNEL_MODE_CROSS_SUBNET
)

// The one mapping from each cilium-config setting to its C enum value.
var (
	aggregations = map[config.MonitorAggregation]bpfobj.LxcMonitorAggregation{
		config.AggregationNone:    bpfobj.LxcMonitorAggregationAGGREGATION_NONE,
		config.AggregationLow:     bpfobj.LxcMonitorAggregationAGGREGATION_LOW,
		config.AggregationMedium:  bpfobj.LxcMonitorAggregationAGGREGATION_MEDIUM,
		config.AggregationMaximum: bpfobj.LxcMonitorAggregationAGGREGATION_MAX,
	}
	hostRoutings = map[config.HostRouting]bpfobj.LxcHostRouting{
		config.HostRoutingBPF:    bpfobj.LxcHostRoutingHOST_ROUTING_BPF,
		config.HostRoutingLegacy: bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY,
	}
	routingModes = map[config.RoutingMode]bpfobj.LxcRoutingMode{
		config.RoutingNative: bpfobj.LxcRoutingModeROUTING_MODE_NATIVE,
		config.RoutingTunnel: bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL,
	}
	tunnelProtocols = map[config.TunnelProtocol]bpfobj.LxcTunnelProtocol{
		config.TunnelVXLAN:  bpfobj.LxcTunnelProtocolTUNNEL_VXLAN,
		config.TunnelGeneve: bpfobj.LxcTunnelProtocolTUNNEL_GENEVE,
		config.TunnelIPIP:   bpfobj.LxcTunnelProtocolTUNNEL_IPIP,
	}
	tunnelModes = map[config.TunnelMode]TunnelMode{
		config.TunnelAlways:      TunnelModeAlways,
		config.TunnelCrossSubnet: TunnelModeCrossSubnet,
	}
	lbModes = map[config.LBMode]bpfobj.LxcLbMode{
		config.LBModeSNAT:   bpfobj.LxcLbModeLB_MODE_SNAT,
		config.LBModeDSR:    bpfobj.LxcLbModeLB_MODE_DSR,
		config.LBModeHybrid: bpfobj.LxcLbModeLB_MODE_HYBRID,
	}
)

// Build translates c, validated by package config, and the node's facts n into the
// BPF configuration. It is pure: the agent learns n first (creating the vxlan device
// for VXLAN), then loads the objects with the result (loader.LoadDatapath). Errors
// name what of c or n the programs could not use; a config that passed validation
// fails only through n.
//
// What each setting becomes:
//   - monitor-aggregation, enable-host-legacy-routing, routing-mode: their enums;
//   - native routing: ipv4-native-routing-cidr; the tunnel fields stay zero
//     (TUNNEL_NONE);
//   - tunnel mode: tunnel-protocol, tunnel-port (0: the protocol's port),
//     n.TunnelMTU, and n.VXLANIfindex for VXLAN;
//   - kube-proxy-replacement true: the load balancer with bpf-lb-mode,
//     bpf-lb-maglev-table-size and bpf-lb-maglev-hash-seed (an all-zero seed means
//     maglev.DefaultSeed()), the default SNAT ports and conntrack lifetimes;
//     with bpf-lb-sock also socket-LB (hostns-only: n.NetnsCookie).
//   - BPF masquerading (config.MasqueradeBPF): masq_enabled, the port range of
//     podpath-masquerade-port-range, enable-ip-masq-agent, and the conntrack
//     lifetimes. Legacy (nftables) masquerading is the agent's, not the programs'.
func Build(c *config.Config, n Node) (Config, error) {
	if !n.IP.Is4() {
		return Config{}, fmt.Errorf("build datapath config: node IP %v: want an IPv4 address", n.IP)
	}
	cfg := Config{NodeId: n.ID, NodeIp: n.IP.As4()}
	agg, aggErr := toC(aggregations, c.MonitorAggregation, "monitor aggregation")
	host, hostErr := toC(hostRoutings, c.HostRouting, "host routing")
	mode, modeErr := toC(routingModes, c.RoutingMode, "routing mode")
	cfg.MonitorAggregation, cfg.HostRouting, cfg.RoutingMode = uint32(agg), uint32(host), uint32(mode)
	errs := []error{aggErr, hostErr, modeErr}

	switch c.RoutingMode {
	case config.RoutingNative:
		if p := c.NativeRoutingCIDR; p.IsValid() && p.Addr().Is4() {
			cfg.NativeRoutingCidr = p.Masked().Addr().As4()
			cfg.NativeRoutingCidrLen = uint8(p.Bits())
		} else {
			errs = append(errs, fmt.Errorf("native-routing CIDR %s: want an IPv4 prefix", p))
		}
	case config.RoutingTunnel:
		errs = append(errs, tunnel(&cfg, c, n)...)
	}

	if c.KubeProxyReplacement == config.KPRTrue {
		errs = append(errs, loadBalancer(&cfg, c)...)
		errs = append(errs, socketLB(&cfg, c, n)...)
	}
	// config.Masquerading() == MasqueradeBPF, spelled out: the keys this reads.
	if c.EnableIPv4Masquerade && c.EnableIPv4MasqueradeGiven && c.EnableBPFMasquerade {
		masquerade(&cfg, c)
		cfg.EgressGwEnabled = b2u8(c.EnableIPv4EgressGateway)
	}
	if c.PolicyEnforcement != "never" {
		cfg.PolicyEnabled = 1
	}
	cfg.PolicyAuditMode = boolC(c.PolicyAuditMode)
	cfg.PolicyVerdictEvents = boolC(c.PolicyVerdictEvents)
	if err := errors.Join(errs...); err != nil {
		return Config{}, fmt.Errorf("build datapath config: %w", err)
	}
	if err := Check(cfg); err != nil {
		return Config{}, fmt.Errorf("build datapath config: %w", err)
	}
	return cfg, nil
}

// toC is setting v's C enum value in m, or an error naming what.
func toC[K comparable, V any](m map[K]V, v K, what string) (V, error) {
	c, ok := m[v]
	if !ok {
		return c, fmt.Errorf("%s %q: not a value podpath knows", what, fmt.Sprint(v))
	}
	return c, nil
}

// tunnel fills in the tunnel fields of tunnel mode.
func tunnel(cfg *Config, c *config.Config, n Node) []error {
	proto, err := toC(tunnelProtocols, c.TunnelProtocol, "tunnel protocol")
	if err != nil {
		return []error{err}
	}
	var errs []error
	port := c.TunnelPort
	if port == 0 {
		port = c.TunnelProtocol.DefaultPort()
	}
	if proto == bpfobj.LxcTunnelProtocolTUNNEL_IPIP {
		port = 0 // IPIP has no UDP header
	}
	cfg.TunnelProtocol, cfg.TunnelPort = uint32(proto), port
	errs = append(errs, tunnelMode(cfg, c, n)...)
	if proto == bpfobj.LxcTunnelProtocolTUNNEL_VXLAN {
		if n.VXLANIfindex <= 0 {
			errs = append(errs, fmt.Errorf("VXLAN needs the ifindex of the collect_md vxlan device, got %d", n.VXLANIfindex))
		}
		cfg.VxlanIfindex = uint32(max(n.VXLANIfindex, 0))
	}
	if n.TunnelMTU < minTunnelMTU || n.TunnelMTU > maxTunnelMTU {
		errs = append(errs, fmt.Errorf("tunnel MTU %d: want %d..%d", n.TunnelMTU, minTunnelMTU, maxTunnelMTU))
	} else {
		cfg.TunnelMtu = uint16(n.TunnelMTU)
	}
	return errs
}

// tunnelMode fills in tunnel-mode (podpath key, Calico's CrossSubnet) and, for
// cross-subnet, the node's subnet length.
func tunnelMode(cfg *Config, c *config.Config, n Node) []error {
	mode := c.TunnelMode
	if mode == "" {
		mode = config.TunnelAlways
	}
	m, err := toC(tunnelModes, mode, "tunnel mode")
	if err != nil {
		return []error{err}
	}
	cfg.TunnelMode = uint8(m)
	if m != TunnelModeCrossSubnet {
		return nil
	}
	if n.SubnetBits < 1 || n.SubnetBits > 32 {
		return []error{fmt.Errorf("tunnel-mode cross-subnet needs the node IP's subnet length, got %d: want 1..32", n.SubnetBits)}
	}
	cfg.NodeSubnetLen = uint8(n.SubnetBits)
	return nil
}

// loadBalancer turns on service load balancing (kube-proxy-replacement).
func loadBalancer(cfg *Config, c *config.Config) []error {
	mode, err := toC(lbModes, c.LBMode, "lb mode")
	if err != nil {
		return []error{err}
	}
	cfg.LbEnabled, cfg.LbMode = 1, uint8(mode)
	cfg.LbMaglevTableSize = uint32(c.MaglevTableSize)
	if c.MaglevTableSize == 0 {
		cfg.LbMaglevTableSize = maglev.DefaultTableSize
	}
	cfg.LbMaglevSeed = maglev.DefaultSeed()
	if c.MaglevHashSeedSet && c.MaglevHashSeed != [maglev.SeedSize]byte{} {
		cfg.LbMaglevSeed = c.MaglevHashSeed
	}
	cfg.LbSnatPortMin, cfg.LbSnatPortMax = DefaultSNATPortMin, DefaultSNATPortMax
	cfg.CtTimeoutTcp, cfg.CtTimeoutTcpSyn = DefaultCTTimeoutTCP, DefaultCTTimeoutTCPSyn
	cfg.CtTimeoutTcpClosing, cfg.CtTimeoutAny = DefaultCTTimeoutTCPClosing, DefaultCTTimeoutAny
	cfg.LbNoBackendReject = b2u8(c.ServiceNoBackendReject)
	cfg.LbSourceRangeCheck = b2u8(c.SvcSourceRangeCheck)
	cfg.LbFragTracking = b2u8(c.IPv4FragmentTracking)
	cfg.LbExternalClusterip = b2u8(c.LBExternalClusterIP)
	return nil
}

// socketLB turns on socket-LB (bpf-lb-sock), and with bpf-lb-sock-hostns-only limits
// it to the node's namespace (n.NetnsCookie, which must then be known).
func socketLB(cfg *Config, c *config.Config, n Node) []error {
	if !c.LBSock {
		return nil
	}
	cfg.LbSock = 1
	if c.LBSockHostnsOnly {
		if n.NetnsCookie == 0 {
			return []error{errors.New("bpf-lb-sock-hostns-only: the node's netns cookie is unknown")}
		}
		cfg.LbSockHostnsOnly = 1
		cfg.LbSockHostNetnsCookie = n.NetnsCookie
	}
	return nil
}

// masquerade turns on BPF masquerading (bpf/lib/masq.h).
func masquerade(cfg *Config, c *config.Config) {
	cfg.MasqEnabled = 1
	cfg.MasqPortMin, cfg.MasqPortMax = c.MasqPortMin, c.MasqPortMax
	if c.EnableIPMasqAgent {
		cfg.MasqIpMasqAgent = 1
	}
	cfg.CtTimeoutTcp, cfg.CtTimeoutTcpSyn = DefaultCTTimeoutTCP, DefaultCTTimeoutTCPSyn
	cfg.CtTimeoutTcpClosing, cfg.CtTimeoutAny = DefaultCTTimeoutTCPClosing, DefaultCTTimeoutAny
}

func b2u8(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// Check reports values of cfg the programs would misread: enum values out of range,
// a tunnel without its port, MTU, node IP or vxlan device, a load balancer without
// its node IP or with a table size, port range or lifetime the datapath cannot use.
// It knows nothing of cilium-config: which combinations of settings are valid is
// package config's business. loader.LoadDatapath checks every config it is given.
func Check(cfg Config) error {
	var errs []error
	if cfg.MonitorAggregation > uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX) {
		errs = append(errs, fmt.Errorf("monitor aggregation %d: want 0..%d", cfg.MonitorAggregation, bpfobj.LxcMonitorAggregationAGGREGATION_MAX))
	}
	switch bpfobj.LxcHostRouting(cfg.HostRouting) {
	case bpfobj.LxcHostRoutingHOST_ROUTING_BPF, bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY:
	default:
		errs = append(errs, fmt.Errorf("host routing %d: want %d (bpf) or %d (legacy)", cfg.HostRouting,
			bpfobj.LxcHostRoutingHOST_ROUTING_BPF, bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY))
	}
	switch bpfobj.LxcRoutingMode(cfg.RoutingMode) {
	case bpfobj.LxcRoutingModeROUTING_MODE_NATIVE, bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL:
	default:
		errs = append(errs, fmt.Errorf("routing mode %d: want %d (native) or %d (tunnel)", cfg.RoutingMode,
			bpfobj.LxcRoutingModeROUTING_MODE_NATIVE, bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL))
	}
	if cfg.NativeRoutingCidrLen > 32 {
		errs = append(errs, fmt.Errorf("native-routing CIDR length %d: want 0..32", cfg.NativeRoutingCidrLen))
	}
	switch proto := bpfobj.LxcTunnelProtocol(cfg.TunnelProtocol); proto {
	case bpfobj.LxcTunnelProtocolTUNNEL_NONE:
	case bpfobj.LxcTunnelProtocolTUNNEL_VXLAN, bpfobj.LxcTunnelProtocolTUNNEL_GENEVE, bpfobj.LxcTunnelProtocolTUNNEL_IPIP:
		if cfg.TunnelPort == 0 && proto != bpfobj.LxcTunnelProtocolTUNNEL_IPIP {
			errs = append(errs, errors.New("tunnel port 0: want the UDP port of the tunnel"))
		}
		if cfg.TunnelMtu < minTunnelMTU || int(cfg.TunnelMtu) > maxTunnelMTU {
			errs = append(errs, fmt.Errorf("tunnel MTU %d: want %d..%d", cfg.TunnelMtu, minTunnelMTU, maxTunnelMTU))
		}
		if cfg.NodeIp == [4]uint8{} {
			errs = append(errs, errors.New("tunnel without a node IP: the node's underlay IPv4 is the outer source"))
		}
		if proto == bpfobj.LxcTunnelProtocolTUNNEL_VXLAN && cfg.VxlanIfindex == 0 {
			errs = append(errs, errors.New("VXLAN tunnel without the ifindex of the collect_md vxlan device"))
		}
	default:
		errs = append(errs, fmt.Errorf("tunnel protocol %d: want %d (none), %d (vxlan), %d (geneve) or %d (ipip)", cfg.TunnelProtocol,
			bpfobj.LxcTunnelProtocolTUNNEL_NONE, bpfobj.LxcTunnelProtocolTUNNEL_VXLAN, bpfobj.LxcTunnelProtocolTUNNEL_GENEVE, bpfobj.LxcTunnelProtocolTUNNEL_IPIP))
	}
	switch TunnelMode(cfg.TunnelMode) {
	case TunnelModeAlways:
	case TunnelModeCrossSubnet:
		if cfg.NodeSubnetLen < 1 || cfg.NodeSubnetLen > 32 {
			errs = append(errs, fmt.Errorf("tunnel mode cross-subnet with subnet length %d: want 1..32", cfg.NodeSubnetLen))
		}
	default:
		errs = append(errs, fmt.Errorf("tunnel mode %d: want %d (always) or %d (cross-subnet)", cfg.TunnelMode,
			TunnelModeAlways, TunnelModeCrossSubnet))
	}
	errs = append(errs, checkLB(cfg)...)
	errs = append(errs, checkMasq(cfg)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid datapath config: %w", err)
	}
	return nil
}

// checkLB lists what is wrong with the load-balancer fields of an LB-enabled cfg.
func checkLB(cfg Config) []error {
	if cfg.LbEnabled == 0 {
		return nil
	}
	var errs []error
	if cfg.LbEnabled != 1 {
		errs = append(errs, fmt.Errorf("lb enabled %d: want 0 or 1", cfg.LbEnabled))
	}
	if cfg.LbMode > uint8(bpfobj.LxcLbModeLB_MODE_HYBRID) {
		errs = append(errs, fmt.Errorf("lb mode %d: want %d (snat), %d (dsr) or %d (hybrid)", cfg.LbMode,
			bpfobj.LxcLbModeLB_MODE_SNAT, bpfobj.LxcLbModeLB_MODE_DSR, bpfobj.LxcLbModeLB_MODE_HYBRID))
	}
	if !slices.Contains(maglev.TableSizes(), int(cfg.LbMaglevTableSize)) {
		errs = append(errs, fmt.Errorf("maglev table size %d: want one of %v", cfg.LbMaglevTableSize, maglev.TableSizes()))
	}
	if cfg.LbSnatPortMin == 0 || cfg.LbSnatPortMax < cfg.LbSnatPortMin {
		errs = append(errs, fmt.Errorf("SNAT ports %d-%d: want 1 <= min <= max", cfg.LbSnatPortMin, cfg.LbSnatPortMax))
	}
	if cfg.CtTimeoutTcp == 0 || cfg.CtTimeoutTcpSyn == 0 || cfg.CtTimeoutTcpClosing == 0 || cfg.CtTimeoutAny == 0 {
		errs = append(errs, fmt.Errorf("conntrack timeouts %d/%d/%d/%d s (tcp/syn/closing/any): none may be 0",
			cfg.CtTimeoutTcp, cfg.CtTimeoutTcpSyn, cfg.CtTimeoutTcpClosing, cfg.CtTimeoutAny))
	}
	if cfg.NodeIp == [4]uint8{} {
		errs = append(errs, errors.New("load balancer without a node IP: NodePort frontends and SNAT use it"))
	}
	return errs
}

// checkMasq lists what is wrong with the masquerading fields of a masquerading cfg.
func checkMasq(cfg Config) []error {
	if cfg.MasqEnabled == 0 {
		if cfg.MasqIpMasqAgent != 0 {
			return []error{errors.New("ip-masq-agent without masquerading")}
		}
		return nil
	}
	var errs []error
	if cfg.MasqEnabled != 1 || cfg.MasqIpMasqAgent > 1 {
		errs = append(errs, fmt.Errorf("masq enabled %d, ip-masq-agent %d: want 0 or 1", cfg.MasqEnabled, cfg.MasqIpMasqAgent))
	}
	if cfg.MasqPortMin == 0 || cfg.MasqPortMax < cfg.MasqPortMin {
		errs = append(errs, fmt.Errorf("masquerade ports %d-%d: want 1 <= min <= max", cfg.MasqPortMin, cfg.MasqPortMax))
	}
	if cfg.CtTimeoutTcp == 0 || cfg.CtTimeoutTcpSyn == 0 || cfg.CtTimeoutTcpClosing == 0 || cfg.CtTimeoutAny == 0 {
		errs = append(errs, fmt.Errorf("conntrack timeouts %d/%d/%d/%d s (tcp/syn/closing/any): masquerading needs them all",
			cfg.CtTimeoutTcp, cfg.CtTimeoutTcpSyn, cfg.CtTimeoutTcpClosing, cfg.CtTimeoutAny))
	}
	if cfg.NodeIp == [4]uint8{} {
		errs = append(errs, errors.New("masquerading without a node IP: devices without an address of their own use it"))
	}
	return errs
}

// boolC is a C boolean.
func boolC(b bool) uint8 {
	if b {
		return 1
	}
	return 0
}

// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"podpath/datapath/bpfobj"
)

// Config is struct podpath_config of bpf/lib/config.h: the constants every program
// reads. It is set in .rodata before load, so the verifier sees the values. Every
// object carries the same struct; the bpf_lxc binding is the canonical Go type.
//
// Addresses are as on the wire: NativeRoutingCidr = prefix.Addr().As4(),
// NodeIp = addr.As4() (see SetNativeRoutingCIDR). Tunnel fields: see SetTunnel.
type Config = bpfobj.LxcPodpathConfig

// Monitor aggregation levels (Cilium's monitor-aggregation: none, low, medium, maximum).
const (
	AggregationNone   = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_NONE)
	AggregationLow    = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_LOW)
	AggregationMedium = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MEDIUM)
	AggregationMax    = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
)

// Host routing (Cilium's bpf.hostLegacyRouting false/true) for Config.HostRouting.
const (
	// HostRoutingBPF forwards in BPF: bpf_redirect_peer into local pods, FIB lookup and
	// bpf_redirect/bpf_redirect_neigh across nodes; netfilter does not see the packets.
	HostRoutingBPF = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_BPF)
	// HostRoutingLegacy hands every packet to the host stack.
	HostRoutingLegacy = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY)
)

// Routing modes (Cilium's routing-mode) for Config.RoutingMode.
const (
	RoutingNative = uint32(bpfobj.LxcRoutingModeROUTING_MODE_NATIVE)
	// RoutingTunnel encapsulates cross-node packets with Config.TunnelProtocol (see
	// SetTunnel); with TunnelNone they go to the stack.
	RoutingTunnel = uint32(bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL)
)

// Tunnel protocols (Cilium's tunnel-protocol) for Config.TunnelProtocol.
const (
	// TunnelNone: tunnel mode without encapsulation, cross-node packets go to the stack.
	TunnelNone = uint32(bpfobj.LxcTunnelProtocolTUNNEL_NONE)
	// TunnelVXLAN: from_container sets the tunnel key and redirects to the node's
	// collect_md vxlan device, which encapsulates; from_overlay on that device delivers
	// what it decapsulates.
	TunnelVXLAN = uint32(bpfobj.LxcTunnelProtocolTUNNEL_VXLAN)
	// TunnelGeneve: from_container encapsulates and from_netdev decapsulates in BPF; no
	// device is needed (this kernel has no geneve driver).
	TunnelGeneve = uint32(bpfobj.LxcTunnelProtocolTUNNEL_GENEVE)
)

// Default UDP ports of the tunnel protocols.
const (
	PortVXLAN  = 8472 // Linux and Cilium (IANA's is 4789)
	PortGeneve = 6081 // IANA
)

// TunnelOverhead is what encapsulation adds to an inner IPv4 packet over an IPv4
// underlay: outer IPv4 20 + UDP 8 + VXLAN or Geneve 8 + inner Ethernet 14 bytes.
const TunnelOverhead = 50

// TunnelMTU is the tunnel MTU of Config.TunnelMtu: the largest inner IPv4 packet that
// fits an underlay device of deviceMTU once encapsulated with geneveOptBytes of Geneve
// options on every packet (0 for VXLAN): deviceMTU - 50 - geneveOptBytes. The agent
// gives pod routes, and the node's routes to remote PodCIDRs, this MTU.
func TunnelMTU(deviceMTU, geneveOptBytes int) int {
	return deviceMTU - TunnelOverhead - geneveOptBytes
}

// SetTunnel sets the encapsulation of tunnel mode (Config.RoutingMode = RoutingTunnel
// is set separately): proto TunnelVXLAN or TunnelGeneve, its UDP port (0: PortVXLAN or
// PortGeneve), the ifindex of the node's collect_md vxlan device for VXLAN
// (`ip link add cilium_vxlan type vxlan external dstport 8472`; ignored for Geneve),
// and the tunnel MTU (TunnelMTU). Config.NodeIp must hold the node's underlay IPv4:
// it is the outer source.
func SetTunnel(cfg *Config, proto uint32, port uint16, vxlanIfindex int, mtu int) error {
	op := fmt.Sprintf("set tunnel %d", proto)
	switch proto {
	case TunnelVXLAN:
		if port == 0 {
			port = PortVXLAN
		}
		if vxlanIfindex <= 0 {
			return fmt.Errorf("%s: VXLAN needs the ifindex of the collect_md vxlan device, got %d", op, vxlanIfindex)
		}
	case TunnelGeneve:
		if port == 0 {
			port = PortGeneve
		}
		vxlanIfindex = 0
	case TunnelNone:
		port, vxlanIfindex, mtu = 0, 0, 0
	default:
		return fmt.Errorf("%s: want TunnelNone, TunnelVXLAN or TunnelGeneve", op)
	}
	if proto != TunnelNone && (mtu < minTunnelMTU || mtu > maxTunnelMTU) {
		return fmt.Errorf("%s: tunnel MTU %d: want %d..%d", op, mtu, minTunnelMTU, maxTunnelMTU)
	}
	cfg.TunnelProtocol, cfg.TunnelPort, cfg.VxlanIfindex, cfg.TunnelMtu = proto, port, uint32(vxlanIfindex), uint16(mtu)
	return nil
}

// The tunnel MTU is an inner IPv4 packet size: at least IPv4's minimum MTU, and small
// enough that the outer packet's total length still fits 16 bits.
const (
	minTunnelMTU = 68
	maxTunnelMTU = 0xffff - TunnelOverhead
)

// SetNativeRoutingCIDR sets cfg's ipv4-native-routing-cidr. A /0 prefix (the zero
// value of the fields) covers every destination.
func SetNativeRoutingCIDR(cfg *Config, p netip.Prefix) error {
	if !p.IsValid() || !p.Addr().Is4() {
		return fmt.Errorf("set native-routing CIDR %s: want an IPv4 prefix", p)
	}
	cfg.NativeRoutingCidr = p.Masked().Addr().As4()
	cfg.NativeRoutingCidrLen = uint8(p.Bits())
	return nil
}

// ValidateConfig reports values the programs would misread.
func ValidateConfig(cfg Config) error {
	var errs []error
	if cfg.MonitorAggregation > AggregationMax {
		errs = append(errs, fmt.Errorf("monitor aggregation %d: want 0..%d", cfg.MonitorAggregation, AggregationMax))
	}
	if cfg.HostRouting != HostRoutingBPF && cfg.HostRouting != HostRoutingLegacy {
		errs = append(errs, fmt.Errorf("host routing %d: want %d (bpf) or %d (legacy)", cfg.HostRouting, HostRoutingBPF, HostRoutingLegacy))
	}
	if cfg.RoutingMode != RoutingNative && cfg.RoutingMode != RoutingTunnel {
		errs = append(errs, fmt.Errorf("routing mode %d: want %d (native) or %d (tunnel)", cfg.RoutingMode, RoutingNative, RoutingTunnel))
	}
	if cfg.NativeRoutingCidrLen > 32 {
		errs = append(errs, fmt.Errorf("native-routing CIDR length %d: want 0..32", cfg.NativeRoutingCidrLen))
	}
	switch cfg.TunnelProtocol {
	case TunnelNone:
	case TunnelVXLAN, TunnelGeneve:
		if cfg.TunnelPort == 0 {
			errs = append(errs, errors.New("tunnel port 0: want the UDP port of the tunnel (SetTunnel fills in the default)"))
		}
		if cfg.TunnelMtu < minTunnelMTU || int(cfg.TunnelMtu) > maxTunnelMTU {
			errs = append(errs, fmt.Errorf("tunnel MTU %d: want %d..%d", cfg.TunnelMtu, minTunnelMTU, maxTunnelMTU))
		}
		if cfg.NodeIp == [4]uint8{} {
			errs = append(errs, errors.New("tunnel without a node IP: the node's underlay IPv4 is the outer source"))
		}
		if cfg.TunnelProtocol == TunnelVXLAN && cfg.VxlanIfindex == 0 {
			errs = append(errs, errors.New("VXLAN tunnel without the ifindex of the collect_md vxlan device"))
		}
	default:
		errs = append(errs, fmt.Errorf("tunnel protocol %d: want %d (none), %d (vxlan) or %d (geneve)",
			cfg.TunnelProtocol, TunnelNone, TunnelVXLAN, TunnelGeneve))
	}
	errs = append(errs, validateLB(cfg)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("invalid datapath config: %w", err)
	}
	return nil
}

// SetConfig writes cfg into the CONFIG constant of spec.
func SetConfig(spec *ebpf.CollectionSpec, cfg Config) error {
	v, ok := spec.Variables["CONFIG"]
	if !ok {
		return errors.New("set config: object has no CONFIG constant")
	}
	if err := v.Set(cfg); err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	return nil
}

// LoadProbe loads bpf_probe.c with cfg set. Its ring buffer is private (not pinned).
// Close the objects when done.
func LoadProbe(cfg Config) (*bpfobj.ProbeObjects, error) {
	spec, err := bpfobj.LoadProbe()
	if err != nil {
		return nil, fmt.Errorf("load probe spec: %w", err)
	}
	if err := SetConfig(spec, cfg); err != nil {
		return nil, err
	}
	unpin(spec)
	var objs bpfobj.ProbeObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load probe: %w", explainVerifier(err))
	}
	return &objs, nil
}

func unpin(spec *ebpf.CollectionSpec) {
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
}

func explainVerifier(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%+v", ve)
	}
	return err
}

// Direction selects the tcx hook.
type Direction int

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// ErrTCXNotSupported reports a kernel without tcx (Linux 6.6+).
var ErrTCXNotSupported error = &MissingFeatureError{Feature: "tcx attach", MinKernel: "6.6"}

// AttachTCX attaches prog to the tcx hook of ifindex (`bpftool net attach tcx_ingress`).
// The returned link detaches the program when closed, unless it was pinned.
func AttachTCX(prog *ebpf.Program, ifindex int, dir Direction) (link.Link, error) {
	attach := ebpf.AttachTCXIngress
	if dir == Egress {
		attach = ebpf.AttachTCXEgress
	}
	l, err := link.AttachTCX(link.TCXOptions{Program: prog, Attach: attach, Interface: ifindex})
	if errors.Is(err, ebpf.ErrNotSupported) {
		return nil, fmt.Errorf("attach tcx %s on ifindex %d: %w", dir, ifindex, ErrTCXNotSupported)
	}
	if err != nil {
		return nil, fmt.Errorf("attach tcx %s on ifindex %d: %w", dir, ifindex, err)
	}
	return l, nil
}

// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"
	"slices"

	"podpath/datapath/bpfobj"
	"podpath/datapath/maglev"
)

// LB modes (Cilium's bpf-lb-mode) for Config.LbMode: how NodePort and external-IP
// traffic reaches a backend on another node.
const (
	// LBModeSNAT rewrites the source to the node's IP and a port of the SNAT range;
	// replies come back through the node.
	LBModeSNAT = uint8(bpfobj.LxcLbModeLB_MODE_SNAT)
	// LBModeDSR forwards with direct server return: the backend's node learns the
	// service from an IPv4 option (native routing) or a Geneve option (tunnel mode,
	// Geneve only) on the flow's first packet, and the backend answers the client
	// directly with the service as source.
	LBModeDSR = uint8(bpfobj.LxcLbModeLB_MODE_DSR)
	// LBModeHybrid is DSR for TCP and SNAT for UDP.
	LBModeHybrid = uint8(bpfobj.LxcLbModeLB_MODE_HYBRID)
)

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

// LBConfig is the service load-balancer part of Config, as SetLB writes it. Zero
// fields get the defaults.
type LBConfig struct {
	// Mode is Cilium's bpf-lb-mode: LBModeSNAT (0), LBModeDSR or LBModeHybrid. The
	// DSR dispatch follows the routing mode: an IPv4 option with native routing, a
	// Geneve option in tunnel mode, which must then use Geneve (SetTunnel first).
	Mode uint8
	// MaglevTableSize is M (bpf-lb-maglev-table-size), one of maglev.TableSizes();
	// default maglev.DefaultTableSize. Every table given to LB.MaglevSet has M entries.
	MaglevTableSize uint32
	// MaglevSeed is bpf-lb-maglev-hash-seed decoded (maglev.Seed); the zero value
	// means maglev.DefaultSeed(). It keys the datapath's flow hash (bpf/lib/lb.h
	// lb_hash) as it keys the tables' permutations: every node must use the same one.
	MaglevSeed [maglev.SeedSize]byte
	// SNATPortMin and SNATPortMax bound the source ports of NodePort SNAT, inclusive;
	// default DefaultSNATPortMin..DefaultSNATPortMax.
	SNATPortMin, SNATPortMax uint16
	// Conntrack lifetimes in seconds; defaults DefaultCTTimeout*.
	CTTimeoutTCP, CTTimeoutTCPSyn, CTTimeoutTCPClosing, CTTimeoutAny uint32
}

// SetLB enables service load balancing (kube-proxy-replacement) in cfg with lb,
// defaults filled in. Config.NodeIp must hold the node's IP: NodePort frontends are
// keyed on it and SNAT rewrites sources to it. Map sizes (conntrack: Cilium's
// bpf-ct-global-tcp-max, bpf-ct-global-any-max) are Options.MapSizes.
func SetLB(cfg *Config, lb LBConfig) error {
	if lb.MaglevTableSize == 0 {
		lb.MaglevTableSize = maglev.DefaultTableSize
	}
	if lb.MaglevSeed == [maglev.SeedSize]byte{} {
		lb.MaglevSeed = maglev.DefaultSeed()
	}
	if lb.SNATPortMin == 0 && lb.SNATPortMax == 0 {
		lb.SNATPortMin, lb.SNATPortMax = DefaultSNATPortMin, DefaultSNATPortMax
	}
	for _, d := range []struct {
		v   *uint32
		def uint32
	}{
		{&lb.CTTimeoutTCP, DefaultCTTimeoutTCP}, {&lb.CTTimeoutTCPSyn, DefaultCTTimeoutTCPSyn},
		{&lb.CTTimeoutTCPClosing, DefaultCTTimeoutTCPClosing}, {&lb.CTTimeoutAny, DefaultCTTimeoutAny},
	} {
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	next := *cfg
	next.LbEnabled = 1
	next.LbMode = lb.Mode
	next.LbMaglevTableSize = lb.MaglevTableSize
	next.LbMaglevSeed = lb.MaglevSeed
	next.LbSnatPortMin, next.LbSnatPortMax = lb.SNATPortMin, lb.SNATPortMax
	next.CtTimeoutTcp, next.CtTimeoutTcpSyn = lb.CTTimeoutTCP, lb.CTTimeoutTCPSyn
	next.CtTimeoutTcpClosing, next.CtTimeoutAny = lb.CTTimeoutTCPClosing, lb.CTTimeoutAny
	if err := validateLB(next); err != nil {
		return fmt.Errorf("set load balancer: %w", errors.Join(err...))
	}
	*cfg = next
	return nil
}

// validateLB lists what is wrong with the load-balancer fields of an LB-enabled cfg.
func validateLB(cfg Config) []error {
	if cfg.LbEnabled == 0 {
		return nil
	}
	var errs []error
	if cfg.LbEnabled != 1 {
		errs = append(errs, fmt.Errorf("lb enabled %d: want 0 or 1", cfg.LbEnabled))
	}
	switch cfg.LbMode {
	case LBModeSNAT:
	case LBModeDSR, LBModeHybrid:
		if cfg.RoutingMode == RoutingTunnel && cfg.TunnelProtocol != TunnelGeneve {
			errs = append(errs, fmt.Errorf("lb mode %d (DSR) in tunnel mode needs tunnel protocol %d (Geneve): the service travels in a Geneve option; tunnel protocol is %d",
				cfg.LbMode, TunnelGeneve, cfg.TunnelProtocol))
		}
	default:
		errs = append(errs, fmt.Errorf("lb mode %d: want %d (snat), %d (dsr) or %d (hybrid)", cfg.LbMode, LBModeSNAT, LBModeDSR, LBModeHybrid))
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

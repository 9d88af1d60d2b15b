// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/features"
)

// MissingFeatureError reports a kernel feature the datapath needs and the kernel
// lacks, with the first Linux version that has it. It matches ebpf.ErrNotSupported
// with errors.Is.
type MissingFeatureError struct {
	Feature   string // "bpf_redirect_peer helper"
	MinKernel string // "5.10"
}

func (e *MissingFeatureError) Error() string {
	return fmt.Sprintf("%s is not supported by this kernel (requires Linux >= %s)", e.Feature, e.MinKernel)
}

func (e *MissingFeatureError) Is(target error) bool { return target == ebpf.ErrNotSupported }

// kernelFeature is one probe of what the datapath objects need.
type kernelFeature struct {
	name, minKernel string
	probe           func() error
}

func helper(fn asm.BuiltinFunc) func() error {
	return func() error { return features.HaveProgramHelper(ebpf.SchedCLS, fn) }
}

// datapathFeatures are what bpf_lxc, bpf_host and bpf_overlay use, probed before load
// so a missing one is named instead of surfacing as a verifier log. tcx is checked at
// attach. Geneve encapsulation also needs bpf_skb_adjust_room()'s
// BPF_F_ADJ_ROOM_ENCAP_L2_ETH flag (Linux 5.12), which no helper probe can see: an
// older kernel refuses it per packet (DROP_ENCAP_FAILED).
var datapathFeatures = []kernelFeature{
	{"LPM trie maps", "4.11", func() error { return features.HaveMapType(ebpf.LPMTrie) }},
	{"ring buffer maps", "5.8", func() error { return features.HaveMapType(ebpf.RingBuf) }},
	{"bpf_fib_lookup helper", "4.18", helper(asm.FnFibLookup)},
	{"bpf_redirect_peer helper", "5.10", helper(asm.FnRedirectPeer)},
	{"bpf_redirect_neigh helper", "5.10", helper(asm.FnRedirectNeigh)},
	{"bpf_skb_adjust_room helper", "4.13", helper(asm.FnSkbAdjustRoom)},
	{"bpf_skb_store_bytes helper", "4.1", helper(asm.FnSkbStoreBytes)},
	{"bpf_skb_set_tunnel_key helper", "4.3", helper(asm.FnSkbSetTunnelKey)},
	{"bpf_skb_get_tunnel_key helper", "4.3", helper(asm.FnSkbGetTunnelKey)},
	{"bpf_skb_change_type helper", "4.8", helper(asm.FnSkbChangeType)},
	{"bpf_get_hash_recalc helper", "4.8", helper(asm.FnGetHashRecalc)},
	// Service load balancing.
	{"LRU hash maps", "4.10", func() error { return features.HaveMapType(ebpf.LRUHash) }},
	{"hash of maps", "4.12", func() error { return features.HaveMapType(ebpf.HashOfMaps) }},
	{"BPF_F_INNER_MAP map flag", "5.10", func() error { return features.HaveMapFlag(features.BPF_F_INNER_MAP) }},
	{"bpf_l4_csum_replace helper", "4.1", helper(asm.FnL4CsumReplace)},
	{"bpf_get_prandom_u32 helper", "4.1", helper(asm.FnGetPrandomU32)},
	{"bpf_ktime_get_coarse_ns helper", "5.11", helper(asm.FnKtimeGetCoarseNs)},
}

// CheckFeatures probes the kernel for everything the datapath objects use and
// returns a *MissingFeatureError for each one it lacks.
func CheckFeatures() error {
	return checkFeatures(datapathFeatures)
}

func checkFeatures(fs []kernelFeature) error {
	var errs []error
	for _, f := range fs {
		err := f.probe()
		switch {
		case err == nil:
		case errors.Is(err, ebpf.ErrNotSupported):
			errs = append(errs, &MissingFeatureError{Feature: f.name, MinKernel: f.minKernel})
		default:
			errs = append(errs, fmt.Errorf("probe kernel for %s: %w", f.name, err))
		}
	}
	return errors.Join(errs...)
}

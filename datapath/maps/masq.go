// SPDX-License-Identifier: Apache-2.0

package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
)

// Masq are bpf_host's masquerading maps (bpf/lib/masq.h): the non-masquerade CIDRs
// of ip-masq-agent, the address each device masquerades to, and the counters.
type Masq struct {
	NonMasq *ebpf.Map // masq_nonmasq: LPM trie of destinations never masqueraded
	Addrs   *ebpf.Map // masq_addrs: ifindex -> the device's IPv4
	Stats   *ebpf.Map // masq_stats: per-CPU counters (enum masq_stat)
}

// MasqStats are the masquerading counters, summed over CPUs.
type MasqStats struct {
	NewFlows   uint64 `json:"newFlows"`   // flows that got a port
	NoPort     uint64 `json:"noPort"`     // new flows dropped with DROP_MASQ_NO_PORT
	Failed     uint64 `json:"failed"`     // DROP_MASQ_FAILED
	Replies    uint64 `json:"replies"`    // replies translated back
	ICMPErrors uint64 `json:"icmpErrors"` // ICMP errors translated back
}

// NonMasqReplace makes the non-masquerade CIDRs exactly cidrs (`bpftool map update`
// per prefix, then deletes of the rest).
func (m *Masq) NonMasqReplace(cidrs []netip.Prefix) error {
	want := map[bpfobj.HostMasqCidrKey]bool{}
	for _, p := range cidrs {
		if !p.Addr().Is4() {
			return fmt.Errorf("non-masquerade CIDR %s: want IPv4", p)
		}
		p = p.Masked()
		k := bpfobj.HostMasqCidrKey{Prefixlen: uint32(p.Bits()), Ip4: binary.NativeEndian.Uint32(p.Addr().AsSlice())}
		want[k] = true
		if err := m.NonMasq.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("non-masquerade CIDR %s: %w", p, err)
		}
	}
	var (
		k     bpfobj.HostMasqCidrKey
		v     uint8
		stale []bpfobj.HostMasqCidrKey
	)
	it := m.NonMasq.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("non-masquerade CIDRs: %w", err)
	}
	for _, k := range stale {
		if err := m.NonMasq.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("non-masquerade CIDRs: delete: %w", err)
		}
	}
	return nil
}

// NonMasqList returns the non-masquerade CIDRs.
func (m *Masq) NonMasqList() ([]netip.Prefix, error) {
	var (
		k   bpfobj.HostMasqCidrKey
		v   uint8
		out []netip.Prefix
	)
	it := m.NonMasq.Iterate()
	for it.Next(&k, &v) {
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], k.Ip4)
		out = append(out, netip.PrefixFrom(netip.AddrFrom4(b), int(k.Prefixlen)))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("non-masquerade CIDRs: %w", err)
	}
	return out, nil
}

// AddrSet makes ifindex masquerade to addr.
func (m *Masq) AddrSet(ifindex int, addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("masquerade address %s of ifindex %d: want IPv4", addr, ifindex)
	}
	if err := m.Addrs.Put(uint32(ifindex), binary.NativeEndian.Uint32(addr.AsSlice())); err != nil {
		return fmt.Errorf("masquerade address %s of ifindex %d: %w", addr, ifindex, err)
	}
	return nil
}

// StatsRead sums the per-CPU counters.
func (m *Masq) StatsRead() (MasqStats, error) {
	var s MasqStats
	dst := []*uint64{&s.NewFlows, &s.NoPort, &s.Failed, &s.Replies, &s.ICMPErrors}
	for i, d := range dst {
		var per []uint64
		if err := m.Stats.Lookup(uint32(i), &per); err != nil {
			return s, fmt.Errorf("masquerade counter %d: %w", i, err)
		}
		for _, v := range per {
			*d += v
		}
	}
	return s, nil
}

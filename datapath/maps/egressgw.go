// SPDX-License-Identifier: Apache-2.0

package maps

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
)

// EgressGW is the egress gateway policy map (bpf/lib/egressgw.h): an LPM trie keyed
// by a pod's address (32 fixed bits) and a destination CIDR.
type EgressGW struct {
	Policy *ebpf.Map // egress_gw_policy
}

// EgressGWEntry is one entry: Pod's traffic to Dest goes through Gateway (0.0.0.0: no
// gateway, dropped; 0.0.0.1: an excluded CIDR), which SNATs it to EgressIP.
type EgressGWEntry struct {
	Pod      netip.Addr
	Dest     netip.Prefix
	Gateway  netip.Addr
	EgressIP netip.Addr
}

// be32or0 is be32, 0.0.0.0 for an address not given.
func be32or0(a netip.Addr) uint32 {
	if !a.Is4() {
		return 0
	}
	return be32(a)
}

func egwKey(e EgressGWEntry) bpfobj.LxcEgwKey {
	d := e.Dest.Masked()
	return bpfobj.LxcEgwKey{Prefixlen: 32 + uint32(d.Bits()), Saddr: be32(e.Pod), Daddr: be32(d.Addr())}
}

// Replace makes the map hold exactly entries (`bpftool map update` of each, then
// deletes of the rest).
func (m *EgressGW) Replace(entries []EgressGWEntry) error {
	want := map[bpfobj.LxcEgwKey]bool{}
	for _, e := range entries {
		if !e.Pod.Is4() || !e.Dest.Addr().Is4() {
			return fmt.Errorf("egress gateway entry %s -> %s: want IPv4", e.Pod, e.Dest)
		}
		k := egwKey(e)
		want[k] = true
		v := bpfobj.LxcEgwValue{Gateway: be32or0(e.Gateway), EgressIp: be32or0(e.EgressIP)}
		if err := m.Policy.Put(k, v); err != nil {
			return fmt.Errorf("egress gateway entry %s -> %s: %w", e.Pod, e.Dest, err)
		}
	}
	var (
		k     bpfobj.LxcEgwKey
		v     bpfobj.LxcEgwValue
		stale []bpfobj.LxcEgwKey
	)
	it := m.Policy.Iterate()
	for it.Next(&k, &v) {
		if !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("egress gateway entries: %w", err)
	}
	for _, k := range stale {
		if err := m.Policy.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("egress gateway entries: delete: %w", err)
		}
	}
	return nil
}

// List returns the entries (`bpftool map dump`).
func (m *EgressGW) List() ([]EgressGWEntry, error) {
	var (
		k   bpfobj.LxcEgwKey
		v   bpfobj.LxcEgwValue
		out []EgressGWEntry
	)
	it := m.Policy.Iterate()
	for it.Next(&k, &v) {
		out = append(out, EgressGWEntry{Pod: addrFromBE32(k.Saddr), Dest: netip.PrefixFrom(addrFromBE32(k.Daddr), int(k.Prefixlen)-32),
			Gateway: addrFromBE32(v.Gateway), EgressIP: addrFromBE32(v.EgressIp)})
	}
	return out, it.Err()
}

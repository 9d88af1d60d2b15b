// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
)

// Maps are the datapath's policy maps (bpf/lib/policy.h): the LPM policy map and the
// revision the conntrack entries are compared with.
type Maps struct {
	Policy   *ebpf.Map
	Revision *ebpf.Map
}

// Key is e's key in the policy map of endpoint ep (a host-side veth ifindex).
func (e Entry) Key(ep uint32) bpfobj.LxcPolicyKey {
	k := bpfobj.LxcPolicyKey{Prefixlen: uint32(e.Level), Ep: ep, Dir: uint8(e.Dir)}
	if e.Level > LevelEndpoint {
		k.Identity = htonl(uint32(e.Identity))
	}
	if e.Level > LevelIdentity {
		k.Proto = e.Proto
	}
	if e.Level > LevelProto {
		bits := e.Level - LevelProto
		k.Dport = htons(e.Port & (uint16(0xffff) << (16 - bits)))
	}
	return k
}

func htonl(v uint32) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return binary.NativeEndian.Uint32(b[:])
}

func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}

// Sync makes the entries of endpoint ep exactly want (`bpftool map update/delete
// pinned PINPATH/policy ...`): new and changed keys are written first, stale ones
// deleted after, so no packet sees a moment without the endpoint's rules.
func (m *Maps) Sync(ep uint32, want []Entry) error {
	keep := map[bpfobj.LxcPolicyKey]bool{}
	var keys []bpfobj.LxcPolicyKey
	var vals []bpfobj.LxcPolicyEntry
	for _, e := range want {
		k := e.Key(ep)
		keep[k] = true
		keys = append(keys, k)
		vals = append(vals, bpfobj.LxcPolicyEntry{Kind: uint32(e.Kind), Rule: e.Rule})
	}
	var errs []error
	for i := range keys {
		if err := m.Policy.Put(&keys[i], &vals[i]); err != nil {
			errs = append(errs, fmt.Errorf("policy map update ep %d: %w", ep, err))
			break
		}
	}
	var stale []bpfobj.LxcPolicyKey
	var k bpfobj.LxcPolicyKey
	var v bpfobj.LxcPolicyEntry
	it := m.Policy.Iterate()
	for it.Next(&k, &v) {
		if k.Ep == ep && !keep[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		errs = append(errs, fmt.Errorf("policy map dump: %w", err))
	}
	for i := range stale {
		if err := m.Policy.Delete(&stale[i]); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("policy map delete: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Bump raises the policy revision: established flows are judged again at their
// next forward packet.
func (m *Maps) Bump() error {
	var zero, rev uint32
	if err := m.Revision.Lookup(&zero, &rev); err != nil {
		return fmt.Errorf("policy revision: %w", err)
	}
	rev++
	if err := m.Revision.Put(&zero, &rev); err != nil {
		return fmt.Errorf("policy revision: %w", err)
	}
	return nil
}

// List returns the entries of every endpoint (`bpftool map dump pinned PINPATH/policy`).
func (m *Maps) List() (map[uint32][]bpfobj.LxcPolicyKey, error) {
	out := map[uint32][]bpfobj.LxcPolicyKey{}
	var k bpfobj.LxcPolicyKey
	var v bpfobj.LxcPolicyEntry
	it := m.Policy.Iterate()
	for it.Next(&k, &v) {
		out[k.Ep] = append(out[k.Ep], k)
	}
	return out, it.Err()
}

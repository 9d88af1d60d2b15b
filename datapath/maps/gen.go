// SPDX-License-Identifier: Apache-2.0

package maps

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Slots of dp_gen (bpf/lib/dp_gen.h, enum dp_gen_slot). Conntrack entries of service
// flows cache what a slot guards (the route to the backend, the backend's address
// and locality) and use it only while the slot still has the value they stored.
const (
	// GenFIB is bumped on any route or neighbour change in the node's namespace.
	GenFIB uint32 = 0
	// GenBackend is bumped when a backend is deleted or its address, port or state
	// changes (LB's backend methods do it themselves).
	GenBackend uint32 = 1
)

// BumpGeneration increments slot idx of dp_gen (GenFIB, GenBackend) and returns the
// new value; 0 is skipped (it means "nothing cached" to the datapath). Packets that
// cached the old value take the full path with their next packet and cache again.
// Concurrent bumps of one slot may merge into one, which is enough: any change
// invalidates. `bpftool map update pinned PINPATH/dp_gen key IDX value N+1`.
func BumpGeneration(m *ebpf.Map, idx uint32) (uint32, error) {
	var v uint32
	if err := m.Lookup(idx, &v); err != nil {
		return 0, fmt.Errorf("dp_gen %d: %w", idx, err)
	}
	v++
	if v == 0 {
		v = 1
	}
	if err := m.Update(idx, v, ebpf.UpdateExist); err != nil {
		return 0, fmt.Errorf("dp_gen %d: %w", idx, err)
	}
	return v, nil
}

// Generation reads slot idx of dp_gen.
func Generation(m *ebpf.Map, idx uint32) (uint32, error) {
	var v uint32
	if err := m.Lookup(idx, &v); err != nil {
		return 0, fmt.Errorf("dp_gen %d: %w", idx, err)
	}
	return v, nil
}

// StartGenerations sets every slot of dp_gen that is still 0 to 1 (a new map):
// until then the datapath caches nothing. The loader calls it.
func StartGenerations(m *ebpf.Map) error {
	for idx := range m.MaxEntries() {
		v, err := Generation(m, idx)
		if err != nil {
			return err
		}
		if v == 0 {
			if err := m.Update(idx, uint32(1), ebpf.UpdateExist); err != nil {
				return fmt.Errorf("dp_gen %d: %w", idx, err)
			}
		}
	}
	return nil
}

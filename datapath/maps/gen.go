// SPDX-License-Identifier: Apache-2.0

package maps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/cilium/ebpf"
)

// GenerationsPin is the pin name of dp_gen, the datapath's generation numbers: the
// BPF programs may remember per flow what they looked up (the FIB result, the
// backend's address) together with the generation it was valid in, and use it only
// while the generation still matches.
const GenerationsPin = "dp_gen"

// Generation slots of dp_gen.
const (
	// GenFIB changes with any route, neighbour or link change of the node's namespace.
	GenFIB uint32 = 0
	// GenBackends changes when a backend is deleted or its address, port or state changes.
	GenBackends uint32 = 1
	genSlots           = 2
)

// Generations is dp_gen: BPF_MAP_TYPE_ARRAY, 2 slots of __u32 (key __u32). Slot value
// 0 means "remember nothing", so a running agent keeps both at 1 or more.
type Generations struct {
	m  *ebpf.Map
	mu sync.Mutex // a bump is read, add, write: one at a time
}

func generationsSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: GenerationsPin, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: genSlots}
}

// OpenGenerations opens dp_gen pinned under pinPath, creating and pinning it when the
// loaded objects did not (so the agent works whether or not a program uses it yet),
// and sets every slot that is 0 to 1; slots already set are kept, so an agent restart
// never hands out a generation a flow may already have remembered.
func OpenGenerations(pinPath string) (*Generations, error) {
	path := filepath.Join(pinPath, GenerationsPin)
	m, err := ebpf.LoadPinnedMap(path, nil)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if m, err = ebpf.NewMapWithOptions(generationsSpec(), ebpf.MapOptions{}); err != nil {
			return nil, fmt.Errorf("create %s: %w", GenerationsPin, err)
		}
		if err := m.Pin(path); err != nil {
			m.Close()
			return nil, fmt.Errorf("pin %s: %w", path, err)
		}
	case err != nil:
		return nil, fmt.Errorf("open pinned map %s: %w", GenerationsPin, err)
	}
	if err := generationsSpec().Compatible(m); err != nil {
		m.Close()
		return nil, fmt.Errorf("pinned map %s: %w", path, err)
	}
	g := &Generations{m: m}
	for slot := range uint32(genSlots) {
		v, err := g.Get(slot)
		if err == nil && v == 0 {
			err = g.m.Put(slot, uint32(1))
		}
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("%s slot %d: %w", GenerationsPin, slot, err)
		}
	}
	return g, nil
}

// Get reads one slot.
func (g *Generations) Get(slot uint32) (uint32, error) {
	var v uint32
	if err := g.m.Lookup(slot, &v); err != nil {
		return 0, err
	}
	return v, nil
}

// Bump adds one to slot, skipping 0 on wrap, and returns the new generation.
func (g *Generations) Bump(slot uint32) (uint32, error) {
	if slot >= genSlots {
		return 0, fmt.Errorf("%s: no slot %d", GenerationsPin, slot)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	v, err := g.Get(slot)
	if err != nil {
		return 0, fmt.Errorf("%s slot %d: %w", GenerationsPin, slot, err)
	}
	if v++; v == 0 {
		v = 1
	}
	if err := g.m.Put(slot, v); err != nil {
		return 0, fmt.Errorf("%s slot %d: %w", GenerationsPin, slot, err)
	}
	return v, nil
}

// Close closes the handle; the pin stays.
func (g *Generations) Close() error { return g.m.Close() }

// SPDX-License-Identifier: Apache-2.0

package maps

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
)

// GenerationsPin is the pin name of dp_gen under a node's pin path.
const GenerationsPin = "dp_gen"

// generationsSpec is dp_gen as bpf/lib/dp_gen.h declares it: an array of 2 __u32
// slots, key __u32.
func generationsSpec() *ebpf.MapSpec {
	return &ebpf.MapSpec{Name: GenerationsPin, Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2}
}

// OpenGenerations opens dp_gen pinned under pinPath, creating and pinning it when the
// loaded objects did not (a datapath whose programs do not use it yet: the agent
// bumps it all the same, and objects that declare it later adopt the pin), and starts
// every slot still 0 at 1 (StartGenerations); slots already set are kept, so an agent
// restart never hands out a generation a flow may already have cached.
func OpenGenerations(pinPath string) (*ebpf.Map, error) {
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
	if err := StartGenerations(m); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

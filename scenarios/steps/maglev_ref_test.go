// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"math/rand/v2"
	"slices"
	"testing"

	"podpath/datapath/maglev"
	"podpath/internal/maglevref"
)

// TestReferenceMaglevAgrees: the oracle's own Maglev (internal/maglevref) and the
// agents' (datapath/maglev) give the same tables for random backend sets, weights,
// seeds and sizes. Both follow one written algorithm; if they ever disagree the
// catalog's Maglev spec checks would fail for the wrong reason, so this says which.
func TestReferenceMaglevAgrees(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 40; round++ {
		m := []int{251, 509, 4093, 16381}[round%4]
		n := 1 + r.IntN(min(m/maglev.LoadFactor, 12))
		var seed [maglev.SeedSize]byte
		for i := range seed {
			seed[i] = byte(r.Uint32())
		}
		var ours []maglev.Backend
		var ref []maglevref.Backend
		ids := r.Perm(1000)[:n]
		for _, id := range ids {
			w := uint16(1)
			if round%2 == 1 {
				w = uint16(1 + r.IntN(5))
			}
			ours = append(ours, maglev.Backend{ID: uint32(id), Weight: w})
			ref = append(ref, maglevref.Backend{ID: uint32(id), Weight: w})
		}
		a, err := maglev.Table(ours, m, seed)
		if err != nil {
			t.Fatal(err)
		}
		b, err := maglevref.Table(ref, m, seed)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(a, b) {
			t.Fatalf("round %d (M=%d, backends %v, seed %x): tables differ", round, m, ours, seed)
		}
	}
}

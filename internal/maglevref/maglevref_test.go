// SPDX-License-Identifier: Apache-2.0

package maglevref

import (
	"encoding/binary"
	"testing"
)

// TestMurmur3SMHasherVerification is SMHasher's own check of MurmurHash3_x64_128:
// keys {}, {0}, {0,1} … {0..254} hashed with seeds 256 … 2, the 256 outputs hashed
// with seed 0; the low 32 bits must be 0x6384BA69.
func TestMurmur3SMHasherVerification(t *testing.T) {
	var key [256]byte
	all := make([]byte, 0, 16*256)
	for i := 0; i < 256; i++ {
		key[i] = byte(i)
		h1, h2 := Murmur3x64128(key[:i], uint32(256-i))
		all = binary.LittleEndian.AppendUint64(all, h1)
		all = binary.LittleEndian.AppendUint64(all, h2)
	}
	if h1, _ := Murmur3x64128(all, 0); uint32(h1) != 0x6384BA69 {
		t.Fatalf("verification value %#08x, want 0x6384ba69", uint32(h1))
	}
}

// TestTableShares checks the properties the paper promises: equal weights give every
// backend ⌊m/N⌋ or ⌈m/N⌉ entries; a different seed gives a different table.
func TestTableShares(t *testing.T) {
	bs := []Backend{{7, 1}, {3, 1}, {11, 1}}
	var seed [12]byte
	a, err := Table(bs, 251, seed)
	if err != nil {
		t.Fatal(err)
	}
	count := map[uint32]int{}
	for _, id := range a {
		count[id]++
	}
	for id, c := range count {
		if c != 83 && c != 84 {
			t.Errorf("backend %d has %d entries, want 83 or 84", id, c)
		}
	}
	seed[0] = 1
	b, _ := Table(bs, 251, seed)
	same := 0
	for i := range a {
		if a[i] == b[i] {
			same++
		}
	}
	if same == len(a) {
		t.Error("another seed gave the same table")
	}
	if _, err := Table([]Backend{{1, 0}}, 251, seed); err == nil {
		t.Error("no selectable backend: want an error")
	}
}

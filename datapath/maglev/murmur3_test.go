// SPDX-License-Identifier: Apache-2.0

package maglev

import (
	"encoding/binary"
	"testing"
)

// TestMurmur3Verification runs SMHasher's verification of MurmurHash3_x64_128: hash
// the keys {}, {0}, {0,1}, … {0..254} with seeds 256, 255, … 2, hash the 256
// concatenated outputs with seed 0, and compare the first 4 bytes (little-endian)
// with the reference value 0x6384BA69. It covers every tail length and many seeds.
func TestMurmur3Verification(t *testing.T) {
	var key [256]byte
	hashes := make([]byte, 16*256)
	for i := range 256 {
		key[i] = byte(i)
		h1, h2 := murmur3x64128(key[:i], uint32(256-i))
		binary.LittleEndian.PutUint64(hashes[16*i:], h1)
		binary.LittleEndian.PutUint64(hashes[16*i+8:], h2)
	}
	h1, _ := murmur3x64128(hashes, 0)
	if got := uint32(h1); got != 0x6384BA69 {
		t.Fatalf("MurmurHash3_x64_128 verification = %#08x, want 0x6384ba69", got)
	}
}

func TestMurmur3Empty(t *testing.T) {
	if h1, h2 := murmur3x64128(nil, 0); h1 != 0 || h2 != 0 {
		t.Fatalf("MurmurHash3_x64_128(\"\", 0) = %#x %#x, want 0 0", h1, h2)
	}
}

// SPDX-License-Identifier: Apache-2.0

package maglevref

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"sort"
)

// Backend is a backend's ID (the lb_backends key) and weight; weight 0 takes no entry.
type Backend struct {
	ID     uint32
	Weight uint16
}

// Table returns the m-entry Maglev table for backends and the 12-byte seed: entry j
// holds the ID of the backend owning slot j. m must be prime (the caller passes the
// configured bpf-lb-maglev-table-size).
func Table(backends []Backend, m int, seed [12]byte) ([]uint32, error) {
	if m < 2 {
		return nil, fmt.Errorf("maglevref: table size %d too small", m)
	}
	var sel []Backend
	for _, b := range backends {
		if b.Weight > 0 {
			sel = append(sel, b)
		}
	}
	if len(sel) == 0 {
		return nil, errors.New("maglevref: no backend with a weight above zero")
	}
	sort.Slice(sel, func(a, b int) bool { return sel[a].ID < sel[b].ID })

	// Step 2: each backend's whole preference list.
	prefs := make([][]int, len(sel))
	for i, b := range sel {
		key := make([]byte, 16)
		binary.BigEndian.PutUint32(key[0:4], b.ID)
		copy(key[4:], seed[:])
		h1, h2 := Murmur3x64128(key, 0)
		offset := h1 % uint64(m)
		skip := h2%uint64(m-1) + 1
		prefs[i] = make([]int, m)
		for k := 0; k < m; k++ {
			prefs[i][k] = int((offset + uint64(k)*skip) % uint64(m))
		}
	}

	// Steps 3 and 4: m turns; each goes to the backend with the smallest
	// (2·taken+1)/weight, ties to the lower index; it takes its next free entry.
	owner := make([]int, m)
	for j := range owner {
		owner[j] = -1
	}
	next := make([]int, len(sel))
	taken := make([]uint64, len(sel))
	for turn := 0; turn < m; turn++ {
		best := 0
		for i := 1; i < len(sel); i++ {
			// (2·c_i+1)/W_i < (2·c_best+1)/W_best, cross-multiplied.
			if (2*taken[i]+1)*uint64(sel[best].Weight) < (2*taken[best]+1)*uint64(sel[i].Weight) {
				best = i
			}
		}
		for owner[prefs[best][next[best]]] >= 0 {
			next[best]++
		}
		owner[prefs[best][next[best]]] = best
		next[best]++
		taken[best]++
	}
	out := make([]uint32, m)
	for j, o := range owner {
		out[j] = sel[o].ID
	}
	return out, nil
}

// Murmur3x64128 is MurmurHash3_x64_128 (Austin Appleby's SMHasher): h1 and h2 are the
// two 64-bit halves of the output, read little-endian.
func Murmur3x64128(data []byte, seed uint32) (uint64, uint64) {
	const c1, c2 = 0x87c37b91114253d5, 0x4cf5ad432745937f
	h1, h2 := uint64(seed), uint64(seed)
	n := len(data)
	blocks := n / 16
	for i := 0; i < blocks; i++ {
		k1 := binary.LittleEndian.Uint64(data[16*i:])
		k2 := binary.LittleEndian.Uint64(data[16*i+8:])
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
		h1 = bits.RotateLeft64(h1, 27)
		h1 += h2
		h1 = h1*5 + 0x52dce729
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
		h2 = bits.RotateLeft64(h2, 31)
		h2 += h1
		h2 = h2*5 + 0x38495ab5
	}
	tail := data[16*blocks:]
	var k1, k2 uint64
	for i := len(tail) - 1; i >= 8; i-- {
		k2 |= uint64(tail[i]) << (8 * uint(i-8))
	}
	for i := min(len(tail), 8) - 1; i >= 0; i-- {
		k1 |= uint64(tail[i]) << (8 * uint(i))
	}
	if len(tail) > 8 {
		k2 *= c2
		k2 = bits.RotateLeft64(k2, 33)
		k2 *= c1
		h2 ^= k2
	}
	if len(tail) > 0 {
		k1 *= c1
		k1 = bits.RotateLeft64(k1, 31)
		k1 *= c2
		h1 ^= k1
	}
	h1 ^= uint64(n)
	h2 ^= uint64(n)
	h1 += h2
	h2 += h1
	h1 = mix(h1)
	h2 = mix(h2)
	h1 += h2
	h2 += h1
	return h1, h2
}

func mix(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}

// SPDX-License-Identifier: Apache-2.0

package maglev

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// DefaultTableSize is the table size M used when bpf-lb-maglev-table-size is not set.
const DefaultTableSize = 16381

// DefaultWeight is the weight callers give a backend whose service does not specify
// one. (The zero Weight of a Backend literal means "no entries", not "default".)
const DefaultWeight = 1

// LoadFactor is the minimum ratio M / N between the table size and the number of
// selectable backends: M must be greater than LoadFactor·N, which keeps equal
// backends' shares within 1% of each other (⌊M/N⌋ and ⌈M/N⌉ differ by one entry in
// more than 100) and bounds how many of the other backends' entries move when one
// backend goes (measured for M=16381: 0.5% of M at N=10, 1.3% at N=100).
const LoadFactor = 100

// tableSizes are the table sizes M accepted, as Cilium accepts them (all prime).
var tableSizes = []int{251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071}

// TableSizes returns the accepted table sizes M in increasing order: primes from 251
// to 131071, the values of bpf-lb-maglev-table-size.
func TableSizes() []int { return slices.Clone(tableSizes) }

// Errors Table wraps; test with errors.Is.
var (
	// ErrNoBackends says the service has no backend with a weight above zero. Table
	// then returns an empty table: the datapath must drop the service's traffic with
	// the "no service backend" reason instead of looking up a table.
	ErrNoBackends = errors.New("no selectable backend (none given, or all of weight 0)")
	// ErrTableSize says M is not one of TableSizes.
	ErrTableSize = errors.New("table size not allowed")
	// ErrTableTooSmall says M is not greater than LoadFactor × selectable backends.
	ErrTableTooSmall = errors.New("table size too small for the backends")
)

// Backend is one backend of a service as the Maglev table sees it.
type Backend struct {
	// ID is the backend's stable id, the key of the backends map; the table holds IDs.
	// The permutation hashes it, so it must be the same on every node (allocated
	// cluster-wide or derived from the backend's address): node-local IDs, as Cilium
	// allocates them, would give every node a different table.
	ID uint32
	// Weight is the backend's share relative to the service's other backends. 0 means
	// the backend gets no entry (terminating, in maintenance) and does not count in
	// LoadFactor·N; callers without weights use DefaultWeight (1) for every backend.
	Weight uint16
}

// Table computes the Maglev lookup table of size m for backends: entry j is the ID
// of the backend that flows with hash(5-tuple) % m == j go to. The result depends
// only on the set of (ID, Weight) pairs, m and seed — not on the order of backends —
// and is identical on every node and every run.
//
// m must be one of TableSizes and greater than LoadFactor·N, N being the number of
// backends with Weight > 0. IDs must be unique. Without a selectable backend Table
// returns an empty table and an error wrapping ErrNoBackends.
//
// The algorithm, exactly, so that other implementations can reproduce it:
//
//  1. Drop backends of weight 0; sort the rest by ascending ID: b_0 … b_{N-1}.
//  2. Permutation of b_i: let key be the 16 bytes ID (4 bytes, big-endian) followed by
//     the 12 seed bytes, and (h1, h2) = MurmurHash3_x64_128(key, seed 0) — h1, h2
//     being the first and second 64-bit words of the reference output. Then
//     offset_i = h1 mod m, skip_i = (h2 mod (m-1)) + 1, and the backend's preference
//     list is perm_i[k] = (offset_i + k·skip_i) mod m for k = 0 … m-1 (a permutation
//     of 0 … m-1 because m is prime).
//  3. Fill: m turns, each assigns one entry. In a turn the chosen backend takes the
//     first entry of its preference list not yet taken (resuming where it stopped).
//  4. Turn order (weights): with c_i the entries b_i has taken so far, each turn goes
//     to the backend with the smallest (2·c_i + 1) / Weight_i (Sainte-Laguë/Webster
//     divisor order; compared exactly as (2·c_a+1)·W_b < (2·c_b+1)·W_a), ties to the
//     lower index. With equal weights this is the paper's plain round robin
//     b_0, b_1, …, b_{N-1}, b_0, …, and every backend gets ⌊m/N⌋ or ⌈m/N⌉ entries;
//     otherwise b_i gets m·Weight_i/ΣWeight entries to within about one entry (at
//     most 1.5 in the tests, even for weights 65535:1), and scaling every weight by
//     the same factor leaves the table unchanged.
//
// The BPF side looks up table[hash(5-tuple) mod m]; that flow hash is not part of
// this computation (Cilium seeds its jhash with bytes 4–11 of the same seed).
func Table(backends []Backend, m int, seed [SeedSize]byte) ([]uint32, error) {
	return table(backends, m, seed, true)
}

// table is Table; checkLoad=false skips the LoadFactor check (benchmarks of the
// algorithm beyond the supported load).
func table(backends []Backend, m int, seed [SeedSize]byte, checkLoad bool) ([]uint32, error) {
	if !slices.Contains(tableSizes, m) {
		return nil, fmt.Errorf("maglev table: bpf-lb-maglev-table-size %d is not one of %s: %w", m, sizeList(), ErrTableSize)
	}
	sel := make([]Backend, 0, len(backends))
	for _, b := range backends {
		if b.Weight > 0 {
			sel = append(sel, b)
		}
	}
	if err := checkUnique(backends); err != nil {
		return nil, err
	}
	if len(sel) == 0 {
		return nil, fmt.Errorf("maglev table (%d backends given): %w", len(backends), ErrNoBackends)
	}
	if checkLoad && m <= LoadFactor*len(sel) {
		return nil, fmt.Errorf("maglev table: bpf-lb-maglev-table-size %d is too small for %d selectable backends: it must be greater than %d × backends = %d; %s: %w",
			m, len(sel), LoadFactor, LoadFactor*len(sel), suggestSize(len(sel)), ErrTableTooSmall)
	}
	slices.SortFunc(sel, func(a, b Backend) int { return cmp.Compare(a.ID, b.ID) })
	return fill(sel, uint32(m), &seed), nil
}

func checkUnique(backends []Backend) error {
	ids := make([]uint32, len(backends))
	for i, b := range backends {
		ids[i] = b.ID
	}
	slices.Sort(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return fmt.Errorf("maglev table: backend ID %d appears more than once: IDs must be unique", ids[i])
		}
	}
	return nil
}

func sizeList() string {
	s := make([]string, len(tableSizes))
	for i, m := range tableSizes {
		s[i] = strconv.Itoa(m)
	}
	return strings.Join(s, ", ")
}

// suggestSize names the smallest table size that fits n selectable backends.
func suggestSize(n int) string {
	for _, m := range tableSizes {
		if m > LoadFactor*n {
			return fmt.Sprintf("use %d or larger", m)
		}
	}
	return fmt.Sprintf("the largest size %d fits at most %d backends", tableSizes[len(tableSizes)-1], (tableSizes[len(tableSizes)-1]-1)/LoadFactor)
}

// cursor walks one backend's preference list lazily: pos = perm[k], never the list.
type cursor struct {
	pos, skip uint32
	taken     uint32 // entries taken so far (c_i)
	weight    uint32
}

func (c *cursor) advance(m uint32) {
	c.pos += c.skip
	if c.pos >= m {
		c.pos -= m
	}
}

// permutation returns the offset and skip of backend id's preference list.
func permutation(id, m uint32, seed *[SeedSize]byte) (offset, skip uint32) {
	var key [4 + SeedSize]byte
	binary.BigEndian.PutUint32(key[:4], id)
	copy(key[4:], seed[:])
	h1, h2 := murmur3x64128(key[:], 0)
	return uint32(h1 % uint64(m)), uint32(h2%uint64(m-1)) + 1
}

const free = -1

// fill runs steps 2–4 of Table on sel, the selectable backends sorted by ID.
func fill(sel []Backend, m uint32, seed *[SeedSize]byte) []uint32 {
	cur := make([]cursor, len(sel))
	equal := true
	for i, b := range sel {
		off, skip := permutation(b.ID, m, seed)
		cur[i] = cursor{pos: off, skip: skip, weight: uint32(b.Weight)}
		equal = equal && b.Weight == sel[0].Weight
	}
	owner := make([]int32, m)
	for j := range owner {
		owner[j] = free
	}
	if equal {
		fillRoundRobin(cur, owner, m)
	} else {
		fillWeighted(cur, owner, m)
	}
	out := make([]uint32, m)
	for j, o := range owner {
		out[j] = sel[o].ID
	}
	return out
}

// take gives backend i the next free entry of its preference list.
func take(cur []cursor, owner []int32, m uint32, i int) {
	c := &cur[i]
	for owner[c.pos] != free {
		c.advance(m)
	}
	owner[c.pos] = int32(i)
	c.advance(m)
	c.taken++
}

// fillRoundRobin is the turn order of equal weights: 0, 1, …, N-1, 0, 1, …
func fillRoundRobin(cur []cursor, owner []int32, m uint32) {
	n := uint32(0)
	for {
		for i := range cur {
			take(cur, owner, m, i)
			if n++; n == m {
				return
			}
		}
	}
}

// fillWeighted is the Sainte-Laguë turn order, with a binary min-heap of backend
// indices keyed by (2·taken+1)/weight, ties to the lower index.
func fillWeighted(cur []cursor, owner []int32, m uint32) {
	h := turnHeap{cur: cur, idx: make([]int32, len(cur))}
	for i := range h.idx {
		h.idx[i] = int32(i)
	}
	for i := len(h.idx)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
	for range m {
		take(cur, owner, m, int(h.idx[0]))
		h.down(0)
	}
}

type turnHeap struct {
	cur []cursor
	idx []int32
}

// less says backend a's turn comes before backend b's.
func (h *turnHeap) less(a, b int32) bool {
	ca, cb := &h.cur[a], &h.cur[b]
	ka := uint64(2*ca.taken+1) * uint64(cb.weight)
	kb := uint64(2*cb.taken+1) * uint64(ca.weight)
	return ka < kb || ka == kb && a < b
}

func (h *turnHeap) down(i int) {
	idx := h.idx
	for {
		l := 2*i + 1
		if l >= len(idx) {
			return
		}
		s := l
		if r := l + 1; r < len(idx) && h.less(idx[r], idx[l]) {
			s = r
		}
		if !h.less(idx[s], idx[i]) {
			return
		}
		idx[i], idx[s] = idx[s], idx[i]
		i = s
	}
}

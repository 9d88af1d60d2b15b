// SPDX-License-Identifier: Apache-2.0

package maglev

import (
	"encoding/base64"
	"fmt"
)

// SeedSize is the length of the Maglev hash seed in bytes.
const SeedSize = 12

// DefaultSeedBase64 is the seed used when bpf-lb-maglev-hash-seed is not configured:
// Cilium's default, so a podpath node and a Cilium node with default settings agree.
const DefaultSeedBase64 = "JLfvgnHc2kaSUFaI"

// DefaultSeed returns DefaultSeedBase64 decoded: 24 b7 ef 82 71 dc da 46 92 50 56 88.
func DefaultSeed() [SeedSize]byte {
	s, err := Seed(DefaultSeedBase64)
	if err != nil {
		panic("maglev: bad default seed: " + err.Error())
	}
	return s
}

// Seed parses a bpf-lb-maglev-hash-seed value: standard base64 (RFC 4648, with
// padding) of exactly 12 bytes. Generate one with `head -c12 /dev/urandom | base64`;
// every node of a cluster must use the same seed.
func Seed(base64Seed string) ([SeedSize]byte, error) {
	var s [SeedSize]byte
	b, err := base64.StdEncoding.DecodeString(base64Seed)
	if err != nil {
		return s, fmt.Errorf("parse maglev hash seed %q: bpf-lb-maglev-hash-seed must be standard base64 of exactly %d bytes: %w", base64Seed, SeedSize, err)
	}
	if len(b) != SeedSize {
		return s, fmt.Errorf("parse maglev hash seed %q: bpf-lb-maglev-hash-seed must decode to exactly %d bytes, got %d", base64Seed, SeedSize, len(b))
	}
	copy(s[:], b)
	return s, nil
}

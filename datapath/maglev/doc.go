// SPDX-License-Identifier: Apache-2.0

// Package maglev computes a service's Maglev consistent-hashing lookup table (Google's
// Maglev paper, as Cilium and Katran use it) deterministically from its backends, the
// table size and the cluster-wide hash seed.
package maglev

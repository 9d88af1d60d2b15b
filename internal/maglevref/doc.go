// SPDX-License-Identifier: Apache-2.0

// Package maglevref is a second, deliberately plain Maglev implementation for the
// harness's oracles: it follows the algorithm written in datapath/maglev's Table
// documentation step by step (full preference lists, a linear scan for each turn, its
// own MurmurHash3), shares no code with datapath/maglev, and is far slower. A bug in
// the datapath's table code (a seed left out of the key, a wrong skip) then shows as a
// difference between the pinned lb_maglev map and this table, instead of being
// reproduced by the oracle.
package maglevref

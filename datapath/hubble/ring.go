// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"sync"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// Ring keeps the most recent flows and wakes followers when one arrives.
type Ring struct {
	mu   sync.Mutex
	buf  []*flowpb.Flow
	next int    // where the next flow goes
	seen uint64 // flows ever added
	wake chan struct{}
}

// NewRing keeps up to capacity flows.
func NewRing(capacity int) *Ring {
	return &Ring{buf: make([]*flowpb.Flow, capacity), wake: make(chan struct{})}
}

// Add appends a flow, overwriting the oldest when full.
func (r *Ring) Add(f *flowpb.Flow) {
	r.mu.Lock()
	r.buf[r.next] = f
	r.next = (r.next + 1) % len(r.buf)
	r.seen++
	close(r.wake)
	r.wake = make(chan struct{})
	r.mu.Unlock()
}

// Snapshot returns the flows held, oldest first, the number of flows ever added
// (the sequence number after the last one) and a channel closed at the next Add.
func (r *Ring) Snapshot() ([]*flowpb.Flow, uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(r.seen, uint64(len(r.buf)))
	out := make([]*flowpb.Flow, 0, n)
	for i := range n {
		out = append(out, r.buf[(r.next-int(n)+int(i)+len(r.buf))%len(r.buf)])
	}
	return out, r.seen, r.wake
}

// Since returns the flows added after sequence number seq (those still held), the new
// sequence number, and a channel closed at the next Add.
func (r *Ring) Since(seq uint64) ([]*flowpb.Flow, uint64, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := min(r.seen-seq, uint64(len(r.buf)))
	out := make([]*flowpb.Flow, 0, n)
	for i := range n {
		out = append(out, r.buf[(r.next-int(n)+int(i)+len(r.buf))%len(r.buf)])
	}
	return out, r.seen, r.wake
}

// Stats returns the flows held, the capacity and the flows ever added.
func (r *Ring) Stats() (held, capacity, seen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return min(r.seen, uint64(len(r.buf))), uint64(len(r.buf)), r.seen
}

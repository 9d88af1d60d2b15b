// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"
)

// Collector reads the trace records of the nodes' datapaths from their pinned ring
// buffers and keeps them for checks to search. A ring buffer has one consumer: a
// `podpath monitor` on the same topology would take records from it.
type Collector struct {
	names   *Names
	readers map[string]*Reader
	maps    []*ebpf.Map
	seen    map[string][]Record
	// OnRead, when set, receives every record read (scenarios' Run.OpenTraces: the
	// run's trace log).
	OnRead func(node string, recs []Record)
}

// OpenCollector opens the trace ring buffer of every node given, pinned at pin(node).
func OpenCollector(pin func(node string) string, nodes ...string) (*Collector, error) {
	names, err := DefaultNames()
	if err != nil {
		return nil, err
	}
	tr := &Collector{names: names, readers: map[string]*Reader{}, seen: map[string][]Record{}}
	for _, n := range nodes {
		m, err := ebpf.LoadPinnedMap(pin(n), nil)
		if err != nil {
			tr.Close()
			return nil, fmt.Errorf("trace ring buffer of %s: %w", n, err)
		}
		tr.maps = append(tr.maps, m)
		rd, err := NewReader(m)
		if err != nil {
			tr.Close()
			return nil, err
		}
		tr.readers[n] = rd
	}
	return tr, nil
}

// Collect drains every ring buffer into the records seen so far.
func (tr *Collector) Collect() error {
	var errs []error
	for n, rd := range tr.readers {
		recs, err := rd.Drain()
		tr.seen[n] = append(tr.seen[n], recs...)
		if tr.OnRead != nil {
			tr.OnRead(n, recs)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Reset forgets the records collected so far (after draining what is queued).
func (tr *Collector) Reset() error {
	err := tr.Collect()
	tr.seen = map[string][]Record{}
	return err
}

// Find returns node's records for which match holds.
func (tr *Collector) Find(node string, match func(Record) bool) []Record {
	var out []Record
	for _, r := range tr.seen[node] {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// Names gives the datapath's enum names.
func (tr *Collector) Names() *Names { return tr.names }

// Dump renders node's records (the last 12) as evidence.
func (tr *Collector) Dump(node string) string {
	recs := tr.seen[node]
	if len(recs) == 0 {
		return "  (no trace record from " + node + ")"
	}
	var b strings.Builder
	for _, r := range recs[max(0, len(recs)-12):] {
		fmt.Fprintf(&b, "  %s: %s\n", node, tr.names.Format(r))
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// Close releases the readers and map handles.
func (tr *Collector) Close() error {
	var errs []error
	for _, rd := range tr.readers {
		errs = append(errs, rd.Close())
	}
	for _, m := range tr.maps {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

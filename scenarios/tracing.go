// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cilium/ebpf"

	"podpath/datapath/trace"
	"podpath/topology"
)

// Traces reads the trace records of the nodes' datapaths from their pinned ring
// buffers. A ring buffer has one consumer: a `podpath monitor` on the same topology
// would take records from it.
type Traces struct {
	names   *trace.Names
	readers map[string]*trace.Reader
	maps    []*ebpf.Map
	seen    map[string][]trace.Record
	// log, when set, receives every record read (Run.OpenTraces: the trace log).
	log func(node string, recs []trace.Record)
}

// OpenTraces opens the trace ring buffer of every node that runs an agent.
func OpenTraces(t topology.Cluster, nodes ...string) (*Traces, error) {
	names, err := trace.DefaultNames()
	if err != nil {
		return nil, err
	}
	tr := &Traces{names: names, readers: map[string]*trace.Reader{}, seen: map[string][]trace.Record{}}
	for _, n := range nodes {
		m, err := ebpf.LoadPinnedMap(TraceEventsPath(t, n), nil)
		if err != nil {
			tr.Close()
			return nil, fmt.Errorf("trace ring buffer of %s: %w", n, err)
		}
		tr.maps = append(tr.maps, m)
		rd, err := trace.NewReader(m)
		if err != nil {
			tr.Close()
			return nil, err
		}
		tr.readers[n] = rd
	}
	return tr, nil
}

// Collect drains every ring buffer into the records seen so far.
func (tr *Traces) Collect() error {
	var errs []error
	for n, rd := range tr.readers {
		recs, err := rd.Drain()
		tr.seen[n] = append(tr.seen[n], recs...)
		if tr.log != nil {
			tr.log(n, recs)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Reset forgets the records collected so far (after draining what is queued).
func (tr *Traces) Reset() error {
	err := tr.Collect()
	tr.seen = map[string][]trace.Record{}
	return err
}

// Find returns node's records for which match holds.
func (tr *Traces) Find(node string, match func(trace.Record) bool) []trace.Record {
	var out []trace.Record
	for _, r := range tr.seen[node] {
		if match(r) {
			out = append(out, r)
		}
	}
	return out
}

// Names gives the datapath's enum names.
func (tr *Traces) Names() *trace.Names { return tr.names }

// Dump renders node's records (the last 12) as evidence.
func (tr *Traces) Dump(node string) string {
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
func (tr *Traces) Close() error {
	var errs []error
	for _, rd := range tr.readers {
		errs = append(errs, rd.Close())
	}
	for _, m := range tr.maps {
		errs = append(errs, m.Close())
	}
	return errors.Join(errs...)
}

type traceRecord = trace.Record

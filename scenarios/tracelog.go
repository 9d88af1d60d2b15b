// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"podpath/datapath/trace"
	"podpath/topology"
)

// TraceLogFile is the name of a run's trace log in its artifacts folder: every trace
// record the run read from its agents' ring buffers, one JSON object per line.
const TraceLogFile = "traces.jsonl"

// TraceLogRecord is one line of a trace log: the record as `podpath monitor --json`
// prints it (names decoded), with the topology it came from.
type TraceLogRecord struct {
	Topology string `json:"topology"`
	trace.MonitorRecord
}

// traceLog writes a run's trace records to TraceLogFile as they are read.
type traceLog struct {
	f          *os.File
	w          *bufio.Writer
	enc        *json.Encoder
	names      *trace.Names
	wallOffset int64
	ifn        map[string]*trace.IfNamer // by topology/node
	err        error
}

func newTraceLog(path string) (*traceLog, error) {
	names, err := trace.DefaultNames()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("trace log: %w", err)
	}
	w := bufio.NewWriter(f)
	return &traceLog{f: f, w: w, enc: json.NewEncoder(w), names: names, wallOffset: trace.WallOffset(), ifn: map[string]*trace.IfNamer{}}, nil
}

// write appends node's records; t (nil in tests) names the node's interfaces.
func (l *traceLog) write(t *topology.Topology, topo, node string, recs []trace.Record) {
	if len(recs) == 0 || l.err != nil {
		return
	}
	key := topo + "/" + node
	ifn, ok := l.ifn[key]
	if !ok && t != nil {
		ifn = trace.NewIfNamer(memberNs(t, node))
		l.ifn[key] = ifn
	}
	for _, r := range recs {
		if err := l.enc.Encode(TraceLogRecord{Topology: topo, MonitorRecord: trace.NewMonitorRecord(node, r, l.names, ifn, l.wallOffset)}); err != nil {
			l.err = fmt.Errorf("trace log: %w", err)
			return
		}
	}
}

// forget closes the interface namers of topology topo (it is going down).
func (l *traceLog) forget(topo string) {
	for k, n := range l.ifn {
		if filepath.Dir(k) == topo {
			n.Close()
			delete(l.ifn, k)
		}
	}
}

// Close flushes the log and reports the first write error.
func (l *traceLog) Close() error {
	for _, n := range l.ifn {
		n.Close()
	}
	return errors.Join(l.err, l.w.Flush(), l.f.Close())
}

// OpenTraces is OpenTraces whose records also go to the run's trace log
// (TraceLogFile in its artifacts), with every record read by Collect and Reset.
func (r *Run) OpenTraces(t *topology.Topology, nodes ...string) (*trace.Collector, error) {
	tr, err := openTraces(t, nodes...)
	if err != nil {
		return nil, err
	}
	if r.traceLog == nil {
		if r.traceLog, err = newTraceLog(filepath.Join(r.Artifacts, TraceLogFile)); err != nil {
			tr.Close()
			return nil, err
		}
	}
	tr.OnRead = func(node string, recs []trace.Record) { r.traceLog.write(t, t.Name, node, recs) }
	return tr, nil
}

// drainTraces writes what is left in the trace ring buffers of t's nodes to the trace
// log, before t goes down.
func (r *Run) drainTraces(t *topology.Topology) {
	if t.Spec.PodNetwork != topology.PodNetworkAgent {
		return
	}
	for _, n := range t.Nodes() {
		if _, err := os.Stat(TraceEventsPath(t, n.Name)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		tr, err := r.OpenTraces(t, n.Name)
		if err == nil {
			err = errors.Join(tr.Collect(), tr.Close())
		}
		if err != nil {
			r.Progress("trace records left in %s's ring buffer not read: %v", n.Name, err)
		}
	}
	if r.traceLog != nil {
		r.traceLog.forget(t.Name)
	}
}

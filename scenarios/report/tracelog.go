// SPDX-License-Identifier: Apache-2.0

package report

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"podpath/datapath/trace"
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

// TraceLog writes a run's trace records to TraceLogFile as they are read.
type TraceLog struct {
	f          *os.File
	w          *bufio.Writer
	enc        *json.Encoder
	names      *trace.Names
	wallOffset int64
	ifn        map[string]*trace.IfNamer // by topology/node
	err        error
}

// NewTraceLog creates the trace log at path.
func NewTraceLog(path string) (*TraceLog, error) {
	names, err := trace.DefaultNames()
	if err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("trace log: %w", err)
	}
	w := bufio.NewWriter(f)
	return &TraceLog{f: f, w: w, enc: json.NewEncoder(w), names: names, wallOffset: trace.WallOffset(), ifn: map[string]*trace.IfNamer{}}, nil
}

// Write appends the records of node (of topology topo); nsPath (empty in tests) is the
// node's namespace, where its interfaces are named.
func (l *TraceLog) Write(nsPath, topo, node string, recs []trace.Record) {
	if len(recs) == 0 || l.err != nil {
		return
	}
	key := topo + "/" + node
	ifn, ok := l.ifn[key]
	if !ok && nsPath != "" {
		ifn = trace.NewIfNamer(nsPath)
		l.ifn[key] = ifn
	}
	for _, r := range recs {
		if err := l.enc.Encode(TraceLogRecord{Topology: topo, MonitorRecord: trace.NewMonitorRecord(node, r, l.names, ifn, l.wallOffset)}); err != nil {
			l.err = fmt.Errorf("trace log: %w", err)
			return
		}
	}
}

// Forget closes the interface namers of topology topo (it is going down).
func (l *TraceLog) Forget(topo string) {
	for k, n := range l.ifn {
		if filepath.Dir(k) == topo {
			n.Close()
			delete(l.ifn, k)
		}
	}
}

// Close flushes the log and reports the first write error.
func (l *TraceLog) Close() error {
	for _, n := range l.ifn {
		n.Close()
	}
	return errors.Join(l.err, l.w.Flush(), l.f.Close())
}

// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"podpath/datapath/trace"
	"podpath/scenarios/report"
	"podpath/topology"
)

// OpenTraces opens the trace ring buffers of t's nodes (those named) as a
// trace.Collector whose records also go to the run's trace log (report.TraceLogFile in
// its artifacts), with every record read by Collect and Reset.
func (r *Run) OpenTraces(t topology.Cluster, nodes ...string) (*trace.Collector, error) {
	tr, err := openTraces(t, nodes...)
	if err != nil {
		return nil, err
	}
	if r.traceLog == nil {
		if r.traceLog, err = report.NewTraceLog(filepath.Join(r.Artifacts, report.TraceLogFile)); err != nil {
			tr.Close()
			return nil, err
		}
	}
	tr.OnRead = func(node string, recs []trace.Record) { r.traceLog.Write(memberNs(t, node), t.Name(), node, recs) }
	return tr, nil
}

// drainTraces writes what is left in the trace ring buffers of t's nodes to the trace
// log, before t goes down.
func (r *Run) drainTraces(t topology.Cluster) {
	if t.Spec().PodNetwork != topology.PodNetworkAgent {
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
		r.traceLog.Forget(t.Name())
	}
}

// openTraces opens the trace ring buffers of t's nodes (those named).
func openTraces(t topology.Cluster, nodes ...string) (*trace.Collector, error) {
	return trace.OpenCollector(func(node string) string { return TraceEventsPath(t, node) }, nodes...)
}

// memberNs is the namespace path of member of t ("" when t is nil or has no such
// member: interfaces then go unnamed).
func memberNs(t topology.Cluster, member string) string {
	if t == nil {
		return ""
	}
	m, err := t.Member(member)
	if err != nil {
		return ""
	}
	return m.NsPath
}

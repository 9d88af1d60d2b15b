// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"podpath/datapath/loader"
	"podpath/datapath/trace"
	"podpath/topology"
)

// TraceEventsPath is where a node's agent pins its trace ring buffer:
// <topology Dir>/bpffs/<node>/maps/trace_events.
func TraceEventsPath(t topology.Cluster, node string) string {
	return filepath.Join(t.Dir(), "bpffs", node, "maps", loader.MapTraceEvents)
}

// Monitor is trace.Monitor on the nodes of a running topology (opts.Node's only, when
// set): `podpath monitor`. It is here, not in datapath/trace, because it knows where the
// harness's agents pin their ring buffers and how topologies name their nodes.
func Monitor(ctx context.Context, w io.Writer, t topology.Cluster, opts trace.MonitorOptions) error {
	if err := opts.Validate(); err != nil {
		return err // before the topology is looked at
	}
	var names []string
	if opts.Node != "" {
		if _, err := t.Node(opts.Node); err != nil {
			return err
		}
		names = []string{opts.Node}
	} else {
		for _, n := range t.Nodes() {
			names = append(names, n.Name)
		}
	}
	var nodes []trace.MonitorNode
	for _, n := range names {
		mn := trace.MonitorNode{Name: n, Pin: TraceEventsPath(t, n)}
		if m, err := t.Member(n); err == nil {
			mn.NsPath = m.NsPath
		}
		nodes = append(nodes, mn)
	}
	err := trace.Monitor(ctx, w, nodes, opts)
	if errors.Is(err, trace.ErrNoDatapath) {
		where := ""
		if opts.Node != "" {
			where = " on " + opts.Node
		}
		return fmt.Errorf("topology %s has no running datapath%s: start agents (podNetwork: agent)", t.Name(), where)
	}
	return err
}

// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"fmt"
	"strings"
	"time"

	"podpath/scenarios/report"
	"podpath/topology"
	"podpath/topology/agentrun"
)

// agentStatusTimeout bounds each agent's GET /v1/status when reading its warnings.
const agentStatusTimeout = 5 * time.Second

// recordAgentWarnings reads the cilium-config warnings of every agent of a stage,
// once, from each agent's status API (GET /v1/status), records them for the report
// (Run.ConfigWarnings) and prints them. They are information, not checks: an agent
// whose status cannot be read is noted, not failed.
func (r *Run) recordAgentWarnings(ctx context.Context, stage, config string, t topology.Cluster, agents *agentrun.Agents) {
	sw := report.StageWarnings{Stage: stage, Config: config}
	for _, n := range t.Nodes() {
		aw := report.AgentWarnings{Node: n.Name, Warnings: []string{}}
		sctx, cancel := context.WithTimeout(ctx, agentStatusTimeout)
		st, err := agents.Client(n.Name).Status(sctx)
		cancel()
		if err != nil {
			aw.Error = err.Error()
		}
		for _, w := range st.ConfigWarnings {
			aw.Warnings = append(aw.Warnings, w.String())
		}
		sw.Agents = append(sw.Agents, aw)
	}
	r.ConfigWarnings = append(r.ConfigWarnings, sw)
	r.printAgentWarnings(sw)
}

// printAgentWarnings prints a stage's agent warnings once: one list when every
// agent reported the same, else per agent.
func (r *Run) printAgentWarnings(sw report.StageWarnings) {
	if len(sw.Agents) == 0 {
		return
	}
	nodes := make([]string, len(sw.Agents))
	for i, a := range sw.Agents {
		nodes[i] = a.Node
	}
	if sw.Same() {
		ws := sw.Agents[0].Warnings
		if len(ws) == 0 {
			r.Progress("agents' config warnings: none (%s)", strings.Join(nodes, ", "))
			return
		}
		r.Progress("agents' config warnings: %d, the same on every node (%s): settings podpath does not do as written", len(ws), strings.Join(nodes, ", "))
		for _, w := range ws {
			fmt.Fprintf(r.out, "    WARNING %s\n", w)
		}
		return
	}
	r.Progress("agents' config warnings, per node:")
	for _, a := range sw.Agents {
		if a.Error != "" {
			fmt.Fprintf(r.out, "    %s: status not read: %s\n", a.Node, a.Error)
			continue
		}
		fmt.Fprintf(r.out, "    %s: %d warnings\n", a.Node, len(a.Warnings))
		for _, w := range a.Warnings {
			fmt.Fprintf(r.out, "      WARNING %s\n", w)
		}
	}
}

// stageLabel names a stage in the report: its path, and its name when it has one.
func stageLabel(spec *StageSpec) string {
	if spec.Name == "" {
		return spec.Path
	}
	return spec.Path + ": " + spec.Name
}

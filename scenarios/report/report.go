// SPDX-License-Identifier: Apache-2.0

package report

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"podpath/scenarios/hops"
)

// CheckResult is one check: what it verified, where it looked, and on failure the
// evidence (expected vs seen, packets, pcap paths).
type CheckResult struct {
	Name     string        `json:"name"`
	LookedAt string        `json:"lookedAt"`
	Passed   bool          `json:"passed"`
	Evidence string        `json:"evidence,omitempty"`
	Duration time.Duration `json:"duration"`
}

// ScenarioResult is one scenario of a conformance run.
type ScenarioResult struct {
	Name     string            `json:"name"`
	Labels   []string          `json:"labels"`
	Passed   int               `json:"passed"`
	Failed   int               `json:"failed"`
	Duration time.Duration     `json:"duration"`
	Checks   []CheckResult     `json:"checks"`
	Flows    []hops.FlowRecord `json:"flows,omitempty"`
	// Traces is the run's trace log (TraceLogFile), relative to the report folder in a
	// conformance report; empty when the run read no trace record.
	Traces string `json:"traces,omitempty"`
	// ConfigWarnings are, per stage that started agents, the cilium-config
	// warnings its agents reported: information, not checks.
	ConfigWarnings []StageWarnings `json:"configWarnings,omitempty"`
	// KernelDrops are, per step during which the kernel dropped packets in the run's
	// namespaces, those drops.
	KernelDrops []StepDrops `json:"kernelDrops,omitempty"`
	Error       string      `json:"error,omitempty"`
}

// StageWarnings are the config warnings of one stage's agents, read once from
// each agent's status API (GET /v1/status) after they started.
type StageWarnings struct {
	Stage  string          `json:"stage"`
	Config string          `json:"config,omitempty"` // the cilium-config the agents run with
	Agents []AgentWarnings `json:"agents"`
}

// AgentWarnings are one agent's config warnings ("key: message").
type AgentWarnings struct {
	Node     string   `json:"node"`
	Warnings []string `json:"warnings"`
	// Error says why the agent's status could not be read.
	Error string `json:"error,omitempty"`
}

// Same reports whether every agent read its status and reported the same
// warnings (they run the same config).
func (s StageWarnings) Same() bool {
	for _, a := range s.Agents {
		if a.Error != "" || !slices.Equal(a.Warnings, s.Agents[0].Warnings) {
			return false
		}
	}
	return len(s.Agents) > 0
}

// Report is a conformance run: every scenario, under one folder of artifacts.
type Report struct {
	Dir       string           `json:"dir"`
	Started   time.Time        `json:"started"`
	Duration  time.Duration    `json:"duration"`
	Scenarios []ScenarioResult `json:"scenarios"`
}

// Passed and Failed count checks over every scenario.
func (r *Report) Passed() int { return r.sum(func(s ScenarioResult) int { return s.Passed }) }
func (r *Report) Failed() int { return r.sum(func(s ScenarioResult) int { return s.Failed }) }

func (r *Report) sum(f func(ScenarioResult) int) int {
	n := 0
	for _, s := range r.Scenarios {
		n += f(s)
	}
	return n
}

// Summary writes the table: scenario, checks passed and failed, result, time.
func (r *Report) Summary(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tPASSED\tFAILED\tRESULT\tTIME")
	for _, s := range r.Scenarios {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", s.Name, s.Passed, s.Failed, s.Result(), s.Duration.Round(100*time.Millisecond))
	}
	tw.Flush()
}

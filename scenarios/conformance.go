// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"text/tabwriter"
	"time"
)

// ScenarioResult is one scenario of a conformance run.
type ScenarioResult struct {
	Name     string        `json:"name"`
	Labels   []string      `json:"labels"`
	Passed   int           `json:"passed"`
	Failed   int           `json:"failed"`
	Duration time.Duration `json:"duration"`
	Checks   []CheckResult `json:"checks"`
	Flows    []FlowRecord  `json:"flows,omitempty"`
	// Traces is the run's trace log (TraceLogFile), relative to the report folder in a
	// conformance report; empty when the run read no trace record.
	Traces string `json:"traces,omitempty"`
	Error  string `json:"error,omitempty"`
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

// Conformance runs the catalog's scenarios (those with any of labels; all when none)
// one after the other, each with its artifacts under dir/<scenario>, and writes
// dir/report.json and dir/report.html.
func Conformance(ctx context.Context, dir string, labels []string, out io.Writer) (*Report, error) {
	rep := &Report{Dir: dir, Started: time.Now()}
	for _, name := range Names() {
		s, _ := Lookup(name)
		if len(labels) > 0 && !slices.ContainsFunc(labels, func(l string) bool { return slices.Contains(s.Labels, l) }) {
			continue
		}
		start := time.Now()
		run, err := Execute(ctx, s, Options{Artifacts: filepath.Join(dir, s.Name), Out: out})
		res := ScenarioResult{Name: s.Name, Labels: s.Labels, Duration: time.Since(start)}
		if run != nil {
			res = run.Result()
			res.Flows = relativePcaps(dir, run.Flows)
			if res.Traces != "" {
				res.Traces = filepath.ToSlash(filepath.Join(s.Name, TraceLogFile))
			}
		}
		if err != nil {
			res.Error = err.Error()
		}
		rep.Scenarios = append(rep.Scenarios, res)
		if ctx.Err() != nil {
			break
		}
	}
	rep.Duration = time.Since(rep.Started)
	data, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return rep, err
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), data, 0o644); err != nil {
		return rep, err
	}
	return rep, WriteReportHTML(dir, rep)
}

// Result summarises the run as a ScenarioResult (no error, paths as the run made them).
func (r *Run) Result() ScenarioResult {
	res := ScenarioResult{Name: r.Scenario.Name, Labels: r.Scenario.Labels, Passed: r.Passed(), Failed: r.Failed(),
		Duration: r.Duration, Checks: r.Results, Flows: r.Flows}
	if r.traceLog != nil {
		res.Traces = filepath.Join(r.Artifacts, TraceLogFile)
	}
	return res
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

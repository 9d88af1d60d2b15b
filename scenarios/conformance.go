// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"podpath/scenarios/report"
)

// Conformance runs the catalog's scenarios (those with any of labels; all when none)
// one after the other, each with its artifacts under dir/<scenario>, and writes
// dir/report.json and dir/report.html.
func Conformance(ctx context.Context, dir string, labels []string, out io.Writer) (*report.Report, error) {
	rep := &report.Report{Dir: dir, Started: time.Now()}
	for _, name := range Names() {
		s, _ := Lookup(name)
		if len(labels) > 0 && !slices.ContainsFunc(labels, func(l string) bool { return slices.Contains(s.Labels, l) }) {
			continue
		}
		start := time.Now()
		run, err := Execute(ctx, s, Options{Artifacts: filepath.Join(dir, s.Name), Out: out})
		res := report.ScenarioResult{Name: s.Name, Labels: s.Labels, Duration: time.Since(start)}
		if run != nil {
			res = run.Result()
			res.Flows = report.RelativePcaps(dir, run.Flows)
			if res.Traces != "" {
				res.Traces = filepath.ToSlash(filepath.Join(s.Name, report.TraceLogFile))
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
	return rep, report.WriteReportHTML(dir, rep)
}

// Result summarises the run as a ScenarioResult (no error, paths as the run made them).
func (r *Run) Result() report.ScenarioResult {
	res := report.ScenarioResult{Name: r.Scenario.Name, Labels: r.Scenario.Labels, Passed: r.Passed(), Failed: r.Failed(),
		Duration: r.Duration, Checks: r.Results, Flows: r.Flows, ConfigWarnings: r.ConfigWarnings,
		KernelDrops: r.KernelDrops}
	if r.traceLog != nil {
		res.Traces = filepath.Join(r.Artifacts, report.TraceLogFile)
	}
	return res
}

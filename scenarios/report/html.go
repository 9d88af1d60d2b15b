// SPDX-License-Identifier: Apache-2.0

package report

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"podpath/scenarios/hops"
)

// Result is PASS when the scenario ran, had checks and none failed, else FAIL.
func (s ScenarioResult) Result() string {
	if s.Failed > 0 || s.Error != "" || s.Passed == 0 {
		return "FAIL"
	}
	return "PASS"
}

// ReadReport reads dir/report.json as Conformance wrote it.
func ReadReport(dir string) (*Report, error) {
	data, err := os.ReadFile(filepath.Join(dir, "report.json"))
	if err != nil {
		return nil, fmt.Errorf("read report: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("read report %s: %w", filepath.Join(dir, "report.json"), err)
	}
	return &rep, nil
}

// WriteReportHTML writes dir/report.html: the report as one self-contained page, with
// links to the pcaps found under dir.
func WriteReportHTML(dir string, rep *Report) error {
	var b bytes.Buffer
	if err := rep.WriteHTML(&b, dir); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "report.html"), b.Bytes(), 0o644)
}

// WriteHTML renders the report as one HTML page (inline CSS, no script, no external
// asset): totals, the summary table, and per scenario its checks, its packet paths as
// diagrams and its pcaps. dir is the report folder that links are relative to ("" for
// no pcap listing).
func (r *Report) WriteHTML(w io.Writer, dir string) error {
	v := htmlReport{Report: r, Generated: time.Now(), Result: "PASS"}
	for i, s := range r.Scenarios {
		hs := htmlScenario{ScenarioResult: s, ID: fmt.Sprintf("s%d-%s", i, FileSafe(s.Name))}
		if dir != "" {
			hs.Pcaps = findPcaps(dir, s.Name)
			hs.Traces, hs.TraceRecords = findTraceLog(dir, s)
		}
		for _, c := range s.Checks {
			if !c.Passed {
				hs.FailedChecks = true
			}
		}
		for _, f := range s.Flows {
			if !f.Passed() {
				v.FlowsFailed++
			}
		}
		v.Flows += len(s.Flows)
		if s.Result() == "PASS" {
			v.ScenariosPassed++
		} else {
			v.Result = "FAIL"
		}
		v.Scenarios = append(v.Scenarios, hs)
	}
	if len(r.Scenarios) == 0 {
		v.Result = "FAIL"
	}
	return reportTemplate.Execute(w, v)
}

type htmlReport struct {
	*Report
	Generated       time.Time
	Result          string
	ScenariosPassed int
	Flows           int
	FlowsFailed     int
	Scenarios       []htmlScenario
}

type htmlScenario struct {
	ScenarioResult
	ID           string
	FailedChecks bool
	Pcaps        []string
	// Traces is the scenario's trace log relative to the report folder ("" when
	// none); TraceRecords counts its records.
	Traces       string
	TraceRecords int
}

// findTraceLog finds the trace log of scenario s under dir: the one its result names,
// else dir/<scenario>/traces.jsonl. It returns its path relative to dir and its records.
func findTraceLog(dir string, s ScenarioResult) (string, int) {
	rel := s.Traces
	if rel == "" || filepath.IsAbs(rel) {
		rel = filepath.ToSlash(filepath.Join(s.Name, TraceLogFile))
	}
	data, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if err != nil {
		return "", 0
	}
	return rel, bytes.Count(data, []byte("\n"))
}

// findPcaps lists the pcaps under dir/scenario, relative to dir, in slash form.
func findPcaps(dir, scenario string) []string {
	var out []string
	_ = filepath.WalkDir(filepath.Join(dir, scenario), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".pcap") {
			if rel, err := filepath.Rel(dir, p); err == nil {
				out = append(out, filepath.ToSlash(rel))
			}
		}
		return nil
	})
	slices.Sort(out)
	return out
}

// relativePcaps returns flows with their pcap paths relative to the report folder dir,
// so that the report's links work wherever the folder is moved.
func RelativePcaps(dir string, flows []hops.FlowRecord) []hops.FlowRecord {
	base, err := filepath.Abs(dir)
	if err != nil {
		return flows
	}
	out := make([]hops.FlowRecord, len(flows))
	for i, f := range flows {
		f.Hops = slices.Clone(f.Hops)
		for j, h := range f.Hops {
			if h.Pcap == "" {
				continue
			}
			if p, err := filepath.Abs(h.Pcap); err == nil {
				if rel, err := filepath.Rel(base, p); err == nil && !strings.HasPrefix(rel, "..") {
					f.Hops[j].Pcap = filepath.ToSlash(rel)
				}
			}
		}
		out[i] = f
	}
	return out
}

func FileSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, s)
}

//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur": func(d time.Duration) string {
		switch {
		case d >= time.Second:
			return d.Round(100 * time.Millisecond).String()
		case d >= time.Millisecond:
			return d.Round(time.Millisecond).String()
		}
		return d.Round(time.Microsecond).String()
	},
	"micros": func(d time.Duration) string { return fmt.Sprintf("+%.1f µs", float64(d.Nanoseconds())/1000) },
	"lower":  strings.ToLower,
	"chg": func(h hops.FlowHop, key string) string {
		switch {
		case h.Wrong[key]:
			return "wrong"
		case h.Changed[key]:
			return "chg"
		}
		return ""
	},
	"stamp": func(t time.Time) string { return t.Format("2006-01-02 15:04:05 MST") },
	"add1":  func(i int) int { return i + 1 },
}).Parse(reportHTML))

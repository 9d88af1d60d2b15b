// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"podpath/scenarios/report"
)

const benchOutput = `goos: linux
goarch: amd64
pkg: podpath/datapath/progtest
cpu: AMD EPYC
BenchmarkDatapath/from-container/same-node-redirect-peer-2         	   20000	      3379 ns/op	       213.7 ns/pkt	       103.4 ns/pkt-net
BenchmarkEmptyProgram/repeatN-2                                    	   20000	        41.66 ns/op	        40.00 ns/pkt	         1.000 ns/pkt-net
BenchmarkEmptyProgram/repeat1-2                                    	   20000	      2369 ns/op	        83.40 ns/pkt	         0 ns/pkt-net
PASS
ok  	podpath/datapath/progtest	2.953s
pkg: podpath/scenarios
BenchmarkThroughputCrossNode-2   	       1	         0 ns/op	        9.000 geneve-Gbit/s	         0.7500 geneve/host	        12.00 host-Gbit/s	        11.00 native-Gbit/s	         0.9167 native/host	         8.400 vxlan-Gbit/s	         0.7000 vxlan/host
PASS
`

// squeeze collapses runs of spaces: the benchreport tests pin the alignment.
func squeeze(s string) string { return strings.Join(strings.Fields(s), " ") }

func runCLI(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestBenchParseAndCompare(t *testing.T) {
	dir := t.TempDir()
	oldJSON := filepath.Join(dir, "old.json")
	code, out, errs := runCLI(t, benchOutput, "bench", "parse", "-", "--json", oldJSON)
	if code != 0 {
		t.Fatalf("bench parse: exit %d: %s", code, errs)
	}
	for _, want := range []string{
		"PATH ", "RATIO TO BASELINE (SAME RUN)",
		"Datapath/from-container/same-node-redirect-peer  213.7  ns/pkt       103.4  2.562× EmptyProgram/repeat1",
		"ThroughputCrossNode/host                            12  Gbit/s              (baseline)",
		"ThroughputCrossNode/native                         11  Gbit/s              0.917× host",
		"ThroughputCrossNode/vxlan                         8.4  Gbit/s              0.700× host",
	} {
		if !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("bench parse output lacks %q:\n%s", want, out)
		}
	}
	var tab map[string]any
	data, err := os.ReadFile(oldJSON)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &tab); err != nil || len(tab["rows"].([]any)) != 7 {
		t.Fatalf("bench.json: %v: %s", err, data)
	}

	// The new run as raw output: compare takes either.
	newTxt := filepath.Join(dir, "new.txt")
	slower := strings.Replace(benchOutput, "213.7 ns/pkt", "260.0 ns/pkt", 1)
	if err := os.WriteFile(newTxt, []byte(slower), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs = runCLI(t, "", "bench", "compare", oldJSON, newTxt)
	if code != 0 {
		t.Fatalf("bench compare: exit %d: %s", code, errs)
	}
	for _, want := range []string{"ns/pkt      213.7    260  +21.7%  WORSE", "2 worse, 0 better beyond ±10%"} {
		if !strings.Contains(squeeze(out), squeeze(want)) {
			t.Errorf("bench compare output lacks %q:\n%s", want, out)
		}
	}
	code, out, _ = runCLI(t, "", "bench", "compare", "--threshold", "25", "--json", oldJSON, newTxt)
	if code != 0 || !strings.Contains(out, `"verdict": "~"`) || strings.Contains(out, `"verdict": "worse"`) || !strings.Contains(out, `"percent": null`) {
		t.Errorf("bench compare --threshold 25 --json: exit %d:\n%s", code, out)
	}

	for _, args := range [][]string{{"bench"}, {"bench", "frobnicate"}, {"bench", "compare", oldJSON}, {"bench", "parse", filepath.Join(dir, "missing.txt")}} {
		if code, _, _ := runCLI(t, "", args...); code == 0 {
			t.Errorf("%v: exit 0, want an error", args)
		}
	}
	if code, _, errs := runCLI(t, "no benchmarks here\n", "bench", "parse"); code == 0 || !strings.Contains(errs, "no benchmark result lines") {
		t.Errorf("bench parse of nothing: exit %d: %s", code, errs)
	}
}

func TestReportRendersFromJSON(t *testing.T) {
	dir := t.TempDir()
	rep := report.Report{Dir: dir, Started: time.Now(), Scenarios: []report.ScenarioResult{{
		Name: "redirect-peer", Labels: []string{"redirect-peer"}, Passed: 1,
		Checks: []report.CheckResult{{Name: "delivered", LookedAt: "ping", Passed: true}},
	}}}
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, "", "report", dir)
	if code != 0 || strings.TrimSpace(out) != filepath.Join(dir, "report.html") {
		t.Fatalf("report: exit %d: %s%s", code, out, errs)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil || !strings.Contains(string(html), `<a href="#s0-redirect-peer">redirect-peer</a>`) {
		t.Errorf("report.html: %v\n%.400s", err, html)
	}
	if code, _, _ := runCLI(t, "", "report", t.TempDir()); code == 0 {
		t.Error("report of a folder without report.json: exit 0")
	}
}

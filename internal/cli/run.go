// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"podpath/scenarios"
)

func cmdScenarios(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("scenarios", flag.ContinueOnError)
	if _, err := parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	for _, n := range scenarios.Names() {
		s, _ := scenarios.Lookup(n)
		fmt.Fprintf(w, "%s\t%v\t%s\n", s.Name, s.Labels, s.Description)
	}
	return w.Flush()
}

// cmdRun runs one scenario, prints one line per check and ends with "N passed, M failed";
// the exit status is 0 only when every check passed.
func cmdRun(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	artifacts := fs.String("artifacts", "", "folder for pcaps and logs (default artifacts/SCENARIO)")
	keep := fs.Bool("keep", false, "leave the topologies up for poking at them")
	asJSON := fs.Bool("json", false, "print the check results as JSON after the run")
	topo := fs.String("topology", "", "run the generic checks on this topology spec instead of a catalog scenario")
	cfg := fs.String("config", "", "with --topology: the cilium-config ConfigMap for the agents (default: Cilium's defaults)")
	want, what := 1, "a SCENARIO name (see podpath scenarios), or --topology FILE [--config FILE]"
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(strings.TrimLeft(a, "-"), "topology") }) {
		want = 0
	}
	pos, err := parse(fs, args, want, what)
	if err != nil {
		return err
	}
	var s *scenarios.Scenario
	if *topo != "" {
		s, err = scenarios.Generic(*topo, *cfg)
	} else if *cfg != "" {
		err = fmt.Errorf("--config goes with --topology: catalog scenarios bring their own")
	} else {
		s, err = scenarios.Lookup(pos[0])
	}
	if err != nil {
		return err
	}
	out := e.stdout
	if *asJSON {
		out = e.stderr
	}
	r, _ := scenarios.Execute(ctx, s, scenarios.Options{Artifacts: *artifacts, Keep: *keep, Out: out})
	if r == nil {
		return fmt.Errorf("scenario %s could not start", s.Name)
	}
	if *asJSON {
		if err := e.printJSON(map[string]any{"scenario": s.Name, "artifacts": r.Artifacts, "checks": r.Results,
			"flows": r.Flows, "passed": r.Passed(), "failed": r.Failed()}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "artifacts: %s\n%d passed, %d failed\n", r.Artifacts, r.Passed(), r.Failed())
	}
	if r.Failed() > 0 {
		return exitError{code: 1}
	}
	return nil
}

// cmdConformance runs the whole catalog (or --label subsets) into one report folder.
func cmdConformance(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("conformance", flag.ContinueOnError)
	dir := fs.String("report", "", "report folder (default artifacts/conformance-<time>)")
	labels := fs.String("label", "", "only scenarios with one of these labels, comma-separated")
	verbose := fs.Bool("v", false, "print every check, not only the summary")
	if _, err := parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	if *dir == "" {
		*dir = filepath.Join("artifacts", "conformance-"+time.Now().Format("20060102-150405"))
	}
	if err := os.MkdirAll(*dir, 0o755); err != nil {
		return err
	}
	var ls []string
	if *labels != "" {
		ls = strings.Split(*labels, ",")
	}
	out := io.Discard
	if *verbose {
		out = e.stdout
	}
	what := "the whole catalog"
	if len(ls) > 0 {
		what = "scenarios labelled " + strings.Join(ls, " or ")
	}
	fmt.Fprintf(e.stderr, "• running %s into %s\n", what, *dir)
	rep, err := scenarios.Conformance(ctx, *dir, ls, progressWriter{e, out})
	if rep != nil {
		fmt.Fprintln(e.stdout)
		rep.Summary(e.stdout)
		fmt.Fprintf(e.stdout, "\nreport: %s (report.json and pcaps per scenario beside it)\n%d passed, %d failed\n",
			filepath.Join(*dir, "report.html"), rep.Passed(), rep.Failed())
	}
	if err != nil {
		return err
	}
	if rep.Failed() > 0 || len(rep.Scenarios) == 0 {
		return exitError{code: 1}
	}
	return nil
}

// progressWriter passes scenario output through and echoes its "=== scenario" and
// progress lines to stderr, so a quiet run still shows where it is.
type progressWriter struct {
	e   *env
	out io.Writer
}

func (p progressWriter) Write(b []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.HasPrefix(line, "=== ") || strings.HasPrefix(line, "• ") || strings.HasPrefix(line, "FAIL") {
			fmt.Fprintln(p.e.stderr, line)
		}
	}
	return p.out.Write(b)
}

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
	"podpath/scenarios/report"
	// Every step kind registers itself (scenarios.RegisterStep) when its package loads.
	_ "podpath/scenarios/steps"
)

// cmdScenarios lists the catalog: name, labels and the one-line description; --steps
// lists the step kinds scenario files can use, --show prints a catalog scenario's file.
func cmdScenarios(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("scenarios", flag.ContinueOnError)
	steps := fs.Bool("steps", false, "list the step kinds a scenario file can use, with their parameters")
	show := fs.String("show", "", "print the scenario file of catalog scenario NAME")
	asJSON := fs.Bool("json", false, "print as JSON")
	if _, err := parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	switch {
	case *show != "":
		data, ok := scenarios.CatalogFile(*show)
		if !ok {
			_, err := scenarios.Lookup(*show) // every catalog scenario is a file: names the known ones
			return err
		}
		_, err := e.stdout.Write(data)
		return err
	case *steps:
		kinds := scenarios.StepKinds()
		if *asJSON {
			return e.printJSON(kinds)
		}
		printStepKinds(e.stdout, kinds)
		return nil
	}
	if *asJSON {
		var list []map[string]any
		for _, n := range scenarios.Names() {
			s, _ := scenarios.Lookup(n)
			list = append(list, map[string]any{"name": s.Name, "labels": s.Labels, "description": s.Description})
		}
		return e.printJSON(list)
	}
	w := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(w, "NAME\tLABELS\tDESCRIPTION")
	for _, n := range scenarios.Names() {
		s, _ := scenarios.Lookup(n)
		fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, strings.Join(s.Labels, ","), s.Description)
	}
	return w.Flush()
}

func printStepKinds(w io.Writer, kinds []scenarios.StepKindDoc) {
	for i, k := range kinds {
		if i > 0 {
			fmt.Fprintln(w)
		}
		agents := ""
		if k.Agents {
			agents = " (needs agents: podNetwork: agent)"
		}
		fmt.Fprintf(w, "%s%s\n  %s\n", k.Name, agents, k.Summary)
		fmt.Fprintf(w, "  deadline: %s (a step's timeout: overrides it)\n", k.Timeout)
		for _, part := range []struct {
			key    string
			params []scenarios.ParamDoc
		}{{"with", k.With}, {"expect", k.Expect}} {
			if len(part.params) == 0 {
				continue
			}
			fmt.Fprintf(w, "  %s:\n", part.key)
			tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
			for _, p := range part.params {
				var notes []string
				if p.Required {
					notes = append(notes, "required")
				}
				if p.Default != "" {
					notes = append(notes, "default "+p.Default)
				}
				note := ""
				if len(notes) > 0 {
					note = "[" + strings.Join(notes, ", ") + "] "
				}
				fmt.Fprintf(tw, "    %s\t%s\t%s%s\n", p.Name, p.Type, note, p.Doc)
			}
			tw.Flush()
		}
	}
}

// cmdRun runs one scenario (a catalog name or a scenario file), prints one line per
// check and ends with "N passed, M failed"; the exit status is 0 only when every check
// passed.
func cmdRun(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	artifacts := fs.String("artifacts", "", "folder for pcaps, trace records and logs (default artifacts/SCENARIO)")
	keep := fs.Bool("keep", false, "leave the topologies up for poking at them")
	asJSON := fs.Bool("json", false, "print the check results as JSON after the run")
	junit := fs.String("junit", "", "also write the checks as JUnit XML to this file")
	topo := fs.String("topology", "", "run the generic checks on this topology spec instead of a scenario")
	cfg := fs.String("config", "", "with --topology: the cilium-config ConfigMap for the agents (default: Cilium's defaults)")
	want, what := 1, "a SCENARIO name (see podpath scenarios) or a scenario FILE.yaml, or --topology FILE [--config FILE]"
	if slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(strings.TrimLeft(a, "-"), "topology") }) {
		want = 0
	}
	pos, err := parse(fs, args, want, what)
	if err != nil {
		return err
	}
	var s *scenarios.Scenario
	switch {
	case *topo != "":
		s, err = scenarios.Generic(*topo, *cfg)
	case *cfg != "":
		err = fmt.Errorf("--config goes with --topology: scenarios bring their own")
	default:
		s, err = lookupScenario(pos[0])
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
	res := r.Result()
	if *junit != "" {
		if err := report.WriteJUnitFile(*junit, res); err != nil {
			return err
		}
	}
	if *asJSON {
		if err := e.printJSON(map[string]any{"scenario": s.Name, "artifacts": r.Artifacts, "checks": r.Results,
			"flows": r.Flows, "traces": res.Traces, "passed": r.Passed(), "failed": r.Failed(), "duration": r.Duration,
			"configWarnings": res.ConfigWarnings}); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "artifacts: %s\n", r.Artifacts)
		if res.Traces != "" {
			fmt.Fprintf(e.stdout, "trace records: %s\n", res.Traces)
		}
		if *junit != "" {
			fmt.Fprintf(e.stdout, "junit: %s\n", *junit)
		}
		fmt.Fprintf(e.stdout, "%d passed, %d failed\n", r.Passed(), r.Failed())
	}
	if err := interrupted(ctx, e, "run"); err != nil {
		return err
	}
	if r.Failed() > 0 {
		return exitError{code: 1}
	}
	return nil
}

// exitInterrupted is the exit status of a run that SIGINT or SIGTERM ended (the
// shell's 128 + SIGINT).
const exitInterrupted = 130

// interrupted says, when a signal ended the run (ctx, from Main, ends at SIGINT or
// SIGTERM), that it did: by then Execute has torn down every topology, agent and
// bpffs mount of the run. It returns the exit status to leave with, or nil.
func interrupted(ctx context.Context, e *env, cmd string) error {
	if ctx.Err() == nil {
		return nil
	}
	fmt.Fprintf(e.stderr, "podpath %s: interrupted (%v): stopped after tearing down the run's topologies\n", cmd, context.Cause(ctx))
	return exitError{code: exitInterrupted}
}

// lookupScenario finds arg in the catalog, or reads it as a scenario file: a path, a
// name ending in .yaml, or a file that exists.
func lookupScenario(arg string) (*scenarios.Scenario, error) {
	if !scenarios.IsScenarioFile(arg) {
		s, err := scenarios.Lookup(arg)
		if err == nil {
			return s, nil
		}
		if _, serr := os.Stat(arg); serr != nil {
			return nil, err
		}
	}
	f, err := scenarios.LoadScenario(arg)
	if err != nil {
		return nil, err
	}
	return f.Scenario(), nil
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
		fmt.Fprintf(e.stdout, "\nreport: %s (report.json, and pcaps and trace records per scenario beside it)\n%d passed, %d failed\n",
			filepath.Join(*dir, "report.html"), rep.Passed(), rep.Failed())
	}
	if ierr := interrupted(ctx, e, "conformance"); ierr != nil {
		return ierr
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

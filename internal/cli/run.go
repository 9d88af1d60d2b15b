// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"

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
	pos, err := parse(fs, args, 1, "a SCENARIO name (see podpath scenarios)")
	if err != nil {
		return err
	}
	s, err := scenarios.Lookup(pos[0])
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
			"passed": r.Passed(), "failed": r.Failed()}); err != nil {
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

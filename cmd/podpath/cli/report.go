// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"

	"podpath/scenarios/report"
)

// cmdReport re-renders DIR/report.html from DIR/report.json (a conformance report folder).
func cmdReport(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("report", flag.ContinueOnError)
	pos, err := parse(fs, args, 1, "a conformance report folder DIR (holding report.json)")
	if err != nil {
		return err
	}
	rep, err := report.ReadReport(pos[0])
	if err != nil {
		return err
	}
	if err := report.WriteReportHTML(pos[0], rep); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, filepath.Join(pos[0], "report.html"))
	return nil
}

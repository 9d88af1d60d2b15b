// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"

	"podpath/cmd/podpath/benchreport"
)

// cmdBench dispatches `podpath bench parse|table` and `podpath bench compare`.
func cmdBench(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: parse [FILE|-] [--json OUT], or compare OLD NEW [--threshold PCT]")
	}
	switch args[0] {
	case "parse", "table":
		return cmdBenchParse(ctx, e, args[1:])
	case "compare":
		return cmdBenchCompare(ctx, e, args[1:])
	}
	return fmt.Errorf("unknown subcommand %q: want parse or compare", args[0])
}

// cmdBenchParse reads go test -bench output (FILE, or stdin for - or none), prints one
// table (path, ns/pkt or Gbit/s, ratio to its baseline in the same run) and with --json
// writes it for `podpath bench compare`.
func cmdBenchParse(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("bench parse", flag.ContinueOnError)
	out := fs.String("json", "", "also write the table as JSON to this file")
	pos, err := parseBetween(fs, args, 0, 1, "at most one FILE of go test -bench output (- for stdin)")
	if err != nil {
		return err
	}
	var t *benchreport.Table
	if len(pos) == 0 || pos[0] == "-" {
		t, err = benchreport.Parse(e.stdin)
	} else {
		t, err = benchreport.ReadFile(pos[0])
	}
	if err != nil {
		return fmt.Errorf("parse benchmark output: %w", err)
	}
	if len(t.Rows) == 0 {
		return errors.New("parse benchmark output: no benchmark result lines")
	}
	if err := t.WriteText(e.stdout); err != nil {
		return err
	}
	if *out == "" {
		return nil
	}
	f, err := os.Create(*out)
	if err != nil {
		return err
	}
	if err := t.WriteJSON(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// cmdBenchCompare prints, per path and metric of two runs (JSON from bench parse --json,
// or raw go test -bench output), old, new, the change and whether it is beyond noise.
func cmdBenchCompare(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	threshold := fs.Float64("threshold", benchreport.DefaultThreshold, "percent change below which a delta is noise")
	asJSON := fs.Bool("json", false, "print the deltas as JSON")
	pos, err := parse(fs, args, 2, "OLD and NEW (bench.json files or go test -bench output)")
	if err != nil {
		return err
	}
	old, err := benchreport.Load(pos[0])
	if err != nil {
		return err
	}
	nw, err := benchreport.Load(pos[1])
	if err != nil {
		return err
	}
	deltas := benchreport.Compare(old, nw, *threshold)
	if *asJSON {
		return e.printJSON(deltas)
	}
	return benchreport.WriteCompare(e.stdout, deltas, *threshold)
}

// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"podpath/internal/version"
)

type command struct {
	name, args, summary string
	run                 func(ctx context.Context, env *env, args []string) error
}

type env struct {
	stdout, stderr io.Writer
	stdin          io.Reader
}

func (e *env) progress(format string, args ...any) {
	fmt.Fprintf(e.stderr, "• "+format+"\n", args...)
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// exitError carries a child's exit status through `podpath exec`.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func commands() []command {
	return []command{
		{"up", "FILE|NAME [--backend B] [--json]", "bring up a topology file or catalog topology and print its name (a scenario: podpath run)", cmdUp},
		{"down", "NAME [--backend B]", "tear down a topology: every namespace, link and process it made", cmdDown},
		{"exec", "NAME MEMBER -- CMD [ARGS...]", "run a command inside a node, pod, router or client namespace", cmdExec},
		{"validate", "FILE", "check a topology spec or a scenario file and print every problem found", cmdValidate},
		{"clean", "[--all] [--json]", "remove leftovers of crashed runs (--all: every podpath run)", cmdClean},
		{"run", "SCENARIO|FILE.yaml | --topology F [--config F]", "run a catalog scenario, a scenario file (or the generic checks on your topology): one line per check, exit 0 only if all pass (--json, --junit F, --keep)", cmdRun},
		{"scenarios", "[--steps] [--show NAME] [--json]", "list the scenario catalog; --steps: the step kinds a scenario file can use; --show: a catalog scenario's file", cmdScenarios},
		{"conformance", "[--label L1,L2] [--report DIR] [-v]", "run the whole catalog and write a report folder", cmdConformance},
		{"report", "DIR", "re-render DIR/report.html from a conformance report's report.json", cmdReport},
		{"bench", "parse [FILE] | compare OLD NEW", "benchmark table from go test -bench output; compare two runs", cmdBench},
		{"monitor", "NAME [NODE] [--json] [-n N]", "stream the trace records of a topology's agents (--type drop: drops only)", cmdMonitor},
		{"demo", "[--artifacts DIR]", "bring up two nodes, ping pod to pod with a capture on every hop, tear down", cmdDemo},
		{"version", "[--json]", "print the podpath version", cmdVersion},
	}
}

// Main runs the podpath CLI and returns the process exit status.
func Main(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr, stdin: stdin}
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, e, args[1:])
		var exit exitError
		switch {
		case err == nil:
			return 0
		case errors.As(err, &exit):
			return exit.code
		case errors.Is(err, flag.ErrHelp):
			return 0
		default:
			fmt.Fprintf(stderr, "podpath %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "podpath: unknown command %q (run 'podpath help')\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "podpath: eBPF pod networking datapath and its packet-level conformance harness")
	fmt.Fprintln(w, "\nUsage:")
	cs := commands()
	sort.Slice(cs, func(i, j int) bool { return cs[i].name < cs[j].name })
	for _, c := range cs {
		fmt.Fprintf(w, "  podpath %-8s %-30s %s\n", c.name, c.args, c.summary)
	}
}

// parse parses flags that may appear before or after the positional arguments.
func parse(fs *flag.FlagSet, args []string, positional int, what string) ([]string, error) {
	return parseBetween(fs, args, positional, positional, what)
}

// parseBetween is parse for commands whose trailing positional arguments are optional:
// it wants between lo and hi of them.
func parseBetween(fs *flag.FlagSet, args []string, lo, hi int, what string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		rest = append(rest, args[0])
		args = args[1:]
	}
	if len(rest) < lo || len(rest) > hi {
		return nil, fmt.Errorf("want %s, got %d argument(s): %s", what, len(rest), strings.Join(rest, " "))
	}
	return rest, nil
}

func cmdVersion(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print as JSON")
	if _, err := parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	v := version.String()
	if *asJSON {
		return e.printJSON(map[string]string{"version": v})
	}
	fmt.Fprintf(e.stdout, "podpath %s\n", v)
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"

	"podpath/scenarios"
	"podpath/topology"
	"podpath/topology/catalog"
	"podpath/topology/netns"
)

// topologyJSON is what `podpath up --json` prints.
type topologyJSON struct {
	Name    string            `json:"name"`
	RunID   string            `json:"runID"`
	Backend string            `json:"backend"`
	Members []topology.Member `json:"members"`
	Nodes   []topology.Node   `json:"nodes"`
}

func cmdUp(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print the topology (members, nodes, pods, addresses) as JSON")
	backendName := backendFlag(fs)
	config := fs.String("config", "", "kind backend: the cilium-config for the agent DaemonSet")
	pos, err := parse(fs, args, 1, "a topology FILE or catalog topology NAME")
	if err != nil {
		return err
	}
	spec, err := upSpec(pos[0])
	if err != nil {
		return err
	}
	b, err := newBackend(*backendName, backendOptions{progress: func(s string) { e.progress("%s", s) }, ciliumConfig: *config})
	if err != nil {
		return err
	}
	t, err := b.Up(ctx, spec)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(topologyJSON{Name: t.Name(), RunID: t.RunID(), Backend: t.Backend(), Members: t.Members(), Nodes: t.Nodes()})
	}
	down := "podpath down " + t.Name()
	if t.Backend() != backends[0].name {
		down = "podpath down --backend " + t.Backend() + " " + t.Name()
	}
	e.progress("up on %s: %d members; `%s` tears it down", t.Backend(), len(t.Members()), down)
	fmt.Fprintln(e.stdout, t.Name())
	return nil
}

// upSpec loads what `podpath up` brings up: a topology file, or a catalog topology by
// name. A scenario file is refused with the command that runs it: up brings up a
// topology and leaves it running; run brings up a scenario's topologies, drives its
// steps and tears them down.
func upSpec(arg string) (*topology.Spec, error) {
	data, err := os.ReadFile(arg)
	switch {
	case err == nil && scenarios.IsScenario(data):
		return nil, fmt.Errorf("%s is a scenario file: podpath up wants a topology file or a catalog topology name (%s); to run the scenario: podpath run %s",
			arg, strings.Join(catalog.Names(), ", "), arg)
	case err == nil:
		return topology.Load(arg)
	case errors.Is(err, os.ErrNotExist) && !strings.ContainsAny(arg, "/.") && slices.Contains(catalog.Names(), arg):
		return catalog.Topology(arg)
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("%s: no such topology file, nor a catalog topology (have: %s)", arg, strings.Join(catalog.Names(), ", "))
	}
	return nil, fmt.Errorf("load topology spec %s: %w", arg, err)
}

func cmdDown(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	backendName := backendFlag(fs)
	pos, err := parse(fs, args, 1, "a topology NAME (or run ID)")
	if err != nil {
		return err
	}
	b, err := newBackend(*backendName, backendOptions{progress: func(s string) { e.progress("%s", s) }})
	if err != nil {
		return err
	}
	return b.Down(ctx, pos[0])
}

func cmdValidate(_ context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("validate", flag.ContinueOnError)
	pos, err := parse(fs, args, 1, "a topology or scenario FILE")
	if err != nil {
		return err
	}
	if data, err := os.ReadFile(pos[0]); err == nil && scenarios.IsScenario(data) {
		if _, err := scenarios.LoadScenario(pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%s: valid scenario\n", pos[0])
		return nil
	}
	spec, err := topology.Load(pos[0])
	if err != nil {
		return err
	}
	if err := spec.Validate(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s: valid\n", pos[0])
	return nil
}

// cmdExec runs CMD in MEMBER's namespace with the terminal's stdio and returns its exit
// status. Flags end at `--`, so CMD keeps its own.
func cmdExec(ctx context.Context, e *env, args []string) error {
	sep := -1
	for i, a := range args {
		if a == "--" {
			sep = i
			break
		}
	}
	if sep != 2 || len(args) == sep+1 {
		return errors.New("usage: podpath exec NAME MEMBER -- CMD [ARGS...]")
	}
	t, err := netns.Open(args[0])
	if err != nil {
		return err
	}
	argv := args[sep+1:]
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = e.stdin, e.stdout, e.stderr
	if err := t.StartCmd(args[1], cmd); err != nil {
		return err
	}
	err = cmd.Wait()
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return exitError{code: exitErr.ExitCode()}
	}
	return err
}

func cmdClean(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("clean", flag.ContinueOnError)
	all := fs.Bool("all", false, "also remove live and detached runs (every pp-* namespace)")
	asJSON := fs.Bool("json", false, "print what was removed as JSON")
	if _, err := parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	removed, err := netns.Clean(ctx, *all)
	if *asJSON {
		if jerr := e.printJSON(map[string][]string{"removed": removed}); jerr != nil {
			return errors.Join(err, jerr)
		}
		return err
	}
	for _, r := range removed {
		fmt.Fprintf(e.stdout, "removed %s\n", r)
	}
	if len(removed) == 0 && err == nil {
		fmt.Fprintln(e.stdout, "nothing to clean")
	}
	return err
}

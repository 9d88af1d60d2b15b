// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"

	"podpath/scenarios"
	"podpath/topology"
	"podpath/topology/kind"
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
	backendName := fs.String("backend", "netns", "netns (namespaces on this machine) or kind (a kind cluster; needs Docker)")
	config := fs.String("config", "", "kind backend: the cilium-config for the agent DaemonSet")
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
	switch *backendName {
	case "netns":
	case "kind":
		return upKind(ctx, e, spec, *config)
	default:
		return fmt.Errorf("--backend: %q is not one of netns, kind", *backendName)
	}
	backend := &netns.Backend{Detached: true, Progress: func(s string) { e.progress("%s", s) }}
	t, err := backend.Up(ctx, spec)
	if err != nil {
		return err
	}
	if *asJSON {
		return e.printJSON(topologyJSON{Name: t.Name(), RunID: t.RunID(), Backend: t.Backend(), Members: t.Members(), Nodes: t.Nodes()})
	}
	e.progress("up: %d namespaces; `podpath down %s` removes them", len(t.Members()), t.Name())
	fmt.Fprintln(e.stdout, t.Name())
	return nil
}

// upKind brings the spec up as a kind cluster; where no Docker engine runs it says so.
func upKind(ctx context.Context, e *env, spec *topology.Spec, configFile string) error {
	b := &kind.Backend{Progress: func(s string) { e.progress("%s", s) }}
	if configFile != "" {
		data, err := kind.ReadCiliumConfig(configFile)
		if err != nil {
			return err
		}
		b.Options.CiliumConfig = data
	}
	c, err := b.Up(ctx, spec)
	if err != nil {
		return err
	}
	e.progress("kind cluster up; `podpath down --backend kind %s` deletes it", c.Name())
	fmt.Fprintln(e.stdout, c.Name())
	return nil
}

func cmdDown(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	backendName := fs.String("backend", "netns", "netns or kind")
	pos, err := parse(fs, args, 1, "a topology NAME (or run ID)")
	if err != nil {
		return err
	}
	if *backendName == "kind" {
		return kind.Delete(ctx, pos[0])
	}
	t, err := netns.Open(pos[0])
	if err != nil {
		return err
	}
	t.Progress = func(s string) { e.progress("%s", s) }
	return t.Down(ctx)
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

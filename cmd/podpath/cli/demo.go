// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"podpath/internal/nsutil"
	"podpath/scenarios/hops"
	"podpath/topology/catalog"
	"podpath/topology/netns"
)

type demoFlow struct{ topology, src, dst, what string }

var demoFlows = []demoFlow{
	{"l2-two-node", "pod1a", "pod1b", "same node"},
	{"l2-two-node", "pod1a", "pod2a", "across one L2 segment"},
	{"routed-two-node", "pod1", "pod2", "through router r1 (MTU 1500 | 9000)"},
}

// cmdDemo is the main job until the scenario catalog runs: bring up each topology, follow
// one ping per flow across every hop with captures, tear down, and prove nothing is left.
func cmdDemo(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	artifacts := fs.String("artifacts", "artifacts/demo", "folder for the pcaps")
	if _, err := parse(fs, args, 0, "no arguments"); err != nil {
		return err
	}
	passed, failed := 0, 0
	for _, name := range []string{"l2-two-node", "routed-two-node"} {
		p, f, err := demoTopology(ctx, e, name, filepath.Join(*artifacts, name))
		passed, failed = passed+p, failed+f
		if err != nil {
			fmt.Fprintf(e.stdout, "FAIL %s: %v\n", name, err)
			failed++
		}
	}
	fmt.Fprintf(e.stdout, "\npcaps: %s\n%d passed, %d failed\n", *artifacts, passed, failed)
	if failed > 0 {
		return exitError{code: 1}
	}
	return nil
}

func demoTopology(ctx context.Context, e *env, name, artifacts string) (passed, failed int, err error) {
	spec, err := catalog.Topology(name)
	if err != nil {
		return 0, 0, err
	}
	fmt.Fprintf(e.stdout, "\n== topology %s\n", name)
	start := time.Now()
	t, err := (&netns.Backend{Progress: func(s string) { e.progress("%s", s) }}).Up(ctx, spec)
	if err != nil {
		return 0, 0, err
	}
	upTime := time.Since(start)
	defer func() {
		start := time.Now()
		derr := t.Down(context.WithoutCancel(ctx))
		if derr == nil {
			derr = noNamespacesLeft(t.Prefix())
		}
		if derr != nil {
			err = errors.Join(err, derr)
			return
		}
		fmt.Fprintf(e.stdout, "up %s, down %s; no namespace with prefix %s remains\n",
			upTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond), t.Prefix())
	}()
	for _, fl := range demoFlows {
		if fl.topology != name {
			continue
		}
		res, err := hops.PingPath(ctx, t, fl.src, fl.dst, artifacts)
		if err != nil {
			failed++
			fmt.Fprintf(e.stdout, "FAIL ping %s -> %s (%s): %v\n", fl.src, fl.dst, fl.what, err)
			continue
		}
		passed++
		fmt.Fprintf(e.stdout, "PASS ping %s -> %s (%s): echo request seen on all %d hops\n%s",
			fl.src, fl.dst, fl.what, len(res.Hops), hops.FormatPath(res.Hops, res.Seen))
	}
	return passed, failed, nil
}

func noNamespacesLeft(prefix string) error {
	left, err := nsutil.ListPrefix(prefix)
	if err != nil {
		return err
	}
	if len(left) > 0 {
		return fmt.Errorf("namespaces left after down: %s", strings.Join(left, " "))
	}
	return nil
}

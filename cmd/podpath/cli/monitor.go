// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"context"
	"flag"

	"podpath/datapath/trace"
	"podpath/scenarios"
	"podpath/topology/netns"
)

func cmdMonitor(ctx context.Context, e *env, args []string) error {
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "print one JSON object per record")
	typ := fs.String("type", "", "only records of this type: drop, or trace (all but drops)")
	count := fs.Int("n", 0, "stop after this many records (0: until interrupted)")
	backlog := fs.Bool("backlog", false, "also print the records queued before the monitor started")
	pos, err := parseBetween(fs, args, 1, 2, "a topology NAME and optionally a NODE")
	if err != nil {
		return err
	}
	t, err := netns.Open(pos[0])
	if err != nil {
		return err
	}
	opts := trace.MonitorOptions{JSON: *asJSON, Type: *typ, Count: *count, Backlog: *backlog,
		Warn: func(s string) { e.progress("%s", s) }}
	if len(pos) == 2 {
		opts.Node = pos[1]
	}
	return scenarios.Monitor(ctx, e.stdout, t, opts)
}

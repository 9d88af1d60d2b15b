// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"podpath/datapath/trace"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
	"podpath/scenarios"
	"podpath/topology"
	"podpath/topology/agentrun"
	"podpath/topology/catalog"
	"podpath/topology/netns"
	"podpath/topology/topotest"
)

func TestMonitorArgs(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		opts    trace.MonitorOptions
		wantErr string
	}{
		{"no name", nil, trace.MonitorOptions{}, "want a topology NAME"},
		{"too many", []string{"a", "b", "c"}, trace.MonitorOptions{}, "got 3 argument(s)"},
		{"bad type", []string{"x"}, trace.MonitorOptions{Type: "capture"}, `type "capture": want drop or trace`},
		{"bad count", []string{"x"}, trace.MonitorOptions{Count: -1}, "count -1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
			_, err := parseBetween(fs, tc.args, 1, 2, "a topology NAME and optionally a NODE")
			if err == nil {
				// Options are checked before the topology is looked at.
				err = scenarios.Monitor(t.Context(), &bytes.Buffer{}, nil, tc.opts)
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
	fs := flag.NewFlagSet("monitor", flag.ContinueOnError)
	n := fs.Int("n", 0, "")
	pos, err := parseBetween(fs, []string{"topo", "-n", "3", "node1"}, 1, 2, "")
	if err != nil || len(pos) != 2 || *n != 3 {
		t.Fatalf("parseBetween = %v, %v, n=%d", pos, err, *n)
	}
}

// TestMonitorNoDatapath: a topology whose pods the harness plumbs has no agents, so no
// pinned ring buffer.
func TestMonitorNoDatapath(t *testing.T) {
	testutil.RequireRoot(t)
	topo := upCatalog(t, "l2-two-node")
	err := scenarios.Monitor(t.Context(), &bytes.Buffer{}, topo, trace.MonitorOptions{Count: 1})
	want := "topology " + topo.Name() + " has no running datapath: start agents (podNetwork: agent)"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %q", err, want)
	}
}

// TestMonitor follows pings pod1a -> pod1b (same node, bpf_redirect_peer) through the
// monitor in its text and JSON forms and with the drop filter. The calls run one after
// the other: two monitors on one ring buffer would each see part of the records.
func TestMonitor(t *testing.T) {
	testutil.RequireRoot(t)
	topotest.UseAgent(t)
	topo := upCatalog(t, "l2-two-node-agent")
	cfg, err := filepath.Abs(filepath.Join("..", "..", "..", "datapath", "config", "configs", "native-routing.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := agentrun.Start(t.Context(), topo, cfg); err != nil {
		t.Fatal(err)
	}
	pod1b, err := topo.Pod("pod1b")
	if err != nil {
		t.Fatal(err)
	}
	// Pings run until the monitor stops: records of other traffic (ARP, IPv6 neighbor
	// discovery of fresh interfaces) may come first.
	ping := func(ctx context.Context) {
		_, _ = topo.Exec(ctx, "pod1a", "ping", "-c100", "-i0.1", "-W1", pod1b.IP.String())
	}
	if out, err := topo.Exec(t.Context(), "pod1a", "ping", "-c1", "-W2", pod1b.IP.String()); err != nil {
		t.Fatalf("ping pod1a -> pod1b: %v: %s", err, out)
	}

	t.Run("text", func(t *testing.T) {
		out := monitorWhile(t, topo, trace.MonitorOptions{Count: 20}, 10*time.Second, ping)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 20 {
			t.Fatalf("%d lines, want 20 (-n 20):\n%s", len(lines), out)
		}
		found := false
		for _, l := range lines {
			if !strings.HasPrefix(l, "node1: ") && !strings.HasPrefix(l, "node2: ") {
				t.Errorf("line without a node name prefix: %q", l)
			}
			found = found || (strings.HasPrefix(l, "node1: ") && strings.Contains(l, "OBS_FROM_CONTAINER") &&
				strings.Contains(l, "VERDICT_REDIRECT_PEER") && strings.Contains(l, "icmp"))
		}
		if !found {
			t.Errorf("no OBS_FROM_CONTAINER VERDICT_REDIRECT_PEER icmp record:\n%s", out)
		}
	})

	t.Run("json", func(t *testing.T) {
		out := monitorWhile(t, topo, trace.MonitorOptions{Node: "node1", JSON: true, Type: trace.MonitorTypeTrace, Count: 20}, 10*time.Second, ping)
		var peer []trace.MonitorRecord
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			var r trace.MonitorRecord
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("line %q: %v", l, err)
			}
			if r.Node != "node1" || r.Verdict == "VERDICT_DROP" {
				t.Errorf("record %+v: want node1 and no drop", r)
			}
			if r.Verdict == "VERDICT_REDIRECT_PEER" && r.ObsPoint == "OBS_FROM_CONTAINER" && r.Proto == 1 {
				peer = append(peer, r)
			}
		}
		if len(peer) == 0 {
			t.Fatalf("no OBS_FROM_CONTAINER VERDICT_REDIRECT_PEER icmp record:\n%s", out)
		}
		r := peer[0]
		// The echo request leaves lxc-pod1a for pod1b; the reply the other way.
		fwd := r.Dst == pod1b.IP.String()
		if fwd && (r.Ifname != "lxc-pod1a" || r.TargetIfname != "lxc-pod1b") || !fwd && (r.Ifname != "lxc-pod1b" || r.TargetIfname != "lxc-pod1a") {
			t.Errorf("record %+v: interfaces do not match the flow", r)
		}
		if time.Since(r.Time) > time.Minute || time.Since(r.Time) < 0 {
			t.Errorf("record time %v is not now", r.Time)
		}
	})

	t.Run("drops only", func(t *testing.T) {
		// Forwarded pings are no drops: nothing is printed before the deadline.
		out := monitorWhile(t, topo, trace.MonitorOptions{Type: trace.MonitorTypeDrop}, 2*time.Second, ping)
		if out != "" {
			t.Errorf("--type drop printed forwarded records:\n%s", out)
		}
	})
}

// monitorWhile runs Monitor until it returns or timeout passes, running traffic from
// the moment the ring buffers are open until the monitor returns, and returns what it
// printed.
func monitorWhile(t *testing.T, topo topology.Cluster, opts trace.MonitorOptions, timeout time.Duration, traffic func(context.Context)) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	ready := make(chan struct{})
	opts.Ready = func() { close(ready) }
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() { done <- scenarios.Monitor(ctx, &out, topo, opts) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("monitor: %v", err)
	}
	tctx, stop := context.WithCancel(t.Context())
	defer stop()
	var wg sync.WaitGroup
	wg.Go(func() { traffic(tctx) })
	err := <-done
	stop()
	wg.Wait()
	if err != nil {
		t.Fatalf("monitor: %v", err)
	}
	if opts.Count > 0 && ctx.Err() != nil {
		t.Fatalf("monitor: %d records not seen in %v; got:\n%s", opts.Count, timeout, out.String())
	}
	return out.String()
}

// upCatalog brings up a catalog topology and tears it down at the end of the test,
// checking no namespace of it is left.
func upCatalog(t *testing.T, name string) topology.Cluster {
	t.Helper()
	spec, err := catalog.Topology(name)
	if err != nil {
		t.Fatal(err)
	}
	topo, err := netns.Up(t.Context(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Down(context.Background()); err != nil {
			t.Errorf("down: %v", err)
		}
		names, _ := nsutil.List()
		for _, n := range names {
			if strings.HasPrefix(n, topo.Prefix()) {
				t.Errorf("namespace %s left after Down", n)
			}
		}
	})
	return topo
}

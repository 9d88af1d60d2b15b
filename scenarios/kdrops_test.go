// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"podpath/internal/nsutil"
	"podpath/internal/testutil"
	"podpath/scenarios/report"
)

type kdropNodeParams struct {
	Node  string `json:"node"`
	Break string `json:"break"`
}

// kdropBreaks are the ways test-break makes a node lose the pods' UDP to port 7777.
var kdropBreaks = map[string][][]string{
	// nftables drops it in the forward hook.
	"nft": {{"nft", "add table inet kdroptest; add chain inet kdroptest kfwd { type filter hook forward priority 0; }; add rule inet kdroptest kfwd udp dport 7777 drop"}},
	// Strict reverse path filtering, and the way back to node1's pods leads out of
	// another device than the one they come in on.
	"rp_filter": {{"sysctl", "-qw", "net.ipv4.conf.all.rp_filter=1"}, {"ip", "route", "replace", "10.244.1.0/24", "dev", "lo"}},
}

type kdropUDPParams struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// kdropUDP sends one datagram from pod from to an echo server in pod to (port 7777)
// and waits up to a second for the answer.
func kdropUDP(s *Stage, w kdropUDPParams) error {
	to, err := s.T.Pod(w.To)
	if err != nil {
		return err
	}
	m, err := s.T.Member(w.To)
	if err != nil {
		return err
	}
	srv, err := nsutil.ServeUDP(m.NsPath, to.IP.String()+":7777", func(b []byte, _ net.Addr) []byte { return b })
	if err != nil {
		return err
	}
	defer srv.Close()
	return s.T.Do(w.From, func() error {
		c, err := net.Dial("udp4", to.IP.String()+":7777")
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		if _, err := c.Write([]byte("kdrop")); err != nil {
			return err
		}
		if _, err := c.Read(make([]byte, 16)); err != nil {
			return fmt.Errorf("no answer from %s:7777: %w", to.IP, err)
		}
		return nil
	})
}

// A node made to lose the pods' UDP (nftables, rp_filter): the failing check's evidence
// names the node, the device, the kernel's reason and the packet; a step whose traffic
// is dropped but that checks nothing gets a warning line; both are in kdrops.jsonl and
// in the run's result.
func TestKernelDropsInEvidence(t *testing.T) {
	testutil.RequireRoot(t)
	RegisterStep(StepDef[kdropNodeParams, noParams]{
		Name:    "test-break",
		Summary: "test only: the node loses forwarded UDP to port 7777 (kdropBreaks)",
		Run: func(ctx context.Context, s *Stage, w kdropNodeParams, _ noParams) error {
			for _, argv := range kdropBreaks[w.Break] {
				if out, err := s.T.Exec(ctx, w.Node, argv...); err != nil {
					return fmt.Errorf("%s: %w: %s", argv[0], err, out)
				}
			}
			return nil
		},
	})
	RegisterStep(StepDef[kdropUDPParams, noParams]{
		Name:    "test-udp-check",
		Summary: "test only: one UDP exchange, checked",
		Run: func(ctx context.Context, s *Stage, w kdropUDPParams, _ noParams) error {
			s.Check(fmt.Sprintf("udp %s -> %s:7777 answered", w.From, w.To), "the answer of an echo server in "+w.To, kdropUDP(s, w))
			return nil
		},
	})
	RegisterStep(StepDef[kdropUDPParams, noParams]{
		Name:    "test-udp-unchecked",
		Summary: "test only: one UDP exchange, not checked",
		Run: func(ctx context.Context, s *Stage, w kdropUDPParams, _ noParams) error {
			_ = kdropUDP(s, w)
			return nil
		},
	})
	t.Cleanup(func() {
		for _, k := range []string{"test-break", "test-udp-check", "test-udp-unchecked"} {
			delete(stepKinds, k)
		}
	})
	for _, tt := range []struct{ breaks, reason string }{
		{"nft", "NETFILTER_DROP"},
		{"rp_filter", "IP_RPFILTER"},
	} {
		t.Run(tt.breaks, func(t *testing.T) {
			f, err := ParseScenario([]byte(`name: kdrop
description: a node loses UDP (`+tt.breaks+`)
stages:
  - topology: l2-two-node
    steps:
      - check: test-udp-check
        with: {from: pod1a, to: pod2a}
      - do: test-break
        with: {node: node2, break: `+tt.breaks+`}
      - check: test-udp-check
        with: {from: pod1a, to: pod2a}
      - check: test-udp-unchecked
        with: {from: pod1a, to: pod2a}
`), "")
			if err != nil {
				t.Fatal(err)
			}
			var out strings.Builder
			dir := t.TempDir()
			r, err := Execute(context.Background(), f.Scenario(), Options{Artifacts: dir, Out: &out})
			defer func() {
				if t.Failed() {
					t.Log(out.String())
				}
			}()
			if err != nil {
				t.Fatalf("Execute: %v", err)
			}
			if strings.Contains(out.String(), "running without the kernel drop witness") {
				t.Skip("kernel drop witness unavailable on this machine")
			}
			if len(r.Results) != 2 || !r.Results[0].Passed || r.Results[1].Passed {
				t.Fatalf("checks %+v: want the first exchange delivered, the second not", r.Results)
			}
			ev := r.Results[1].Evidence
			t.Logf("evidence of the failed check:\n%s", ev)
			for _, want := range []string{"kernel drops in the run's namespaces during this step", "node2/eth0: " + tt.reason + " at ", ":7777 udp"} {
				if !strings.Contains(ev, want) {
					t.Errorf("evidence does not contain %q:\n%s", want, ev)
				}
			}
			if !strings.Contains(out.String(), "WARN  stages[0].steps[3] (test-udp-unchecked): the kernel dropped") {
				t.Errorf("no warning for the unchecked step's drops")
			}
			var failed, warned bool
			for _, sd := range r.KernelDrops {
				for _, d := range sd.Drops {
					if d.Member == "node2" && d.Reason == tt.reason {
						failed = failed || (sd.Step == "stages[0].steps[2]" && sd.Failed)
						warned = warned || (sd.Step == "stages[0].steps[3]" && !sd.Failed)
					}
				}
			}
			if !failed || !warned {
				t.Errorf("run's kernel drops %+v: want node2 %s in steps 2 (failed) and 3 (warning)", r.KernelDrops, tt.reason)
			}
			data, err := os.ReadFile(filepath.Join(dir, report.KernelDropsFile))
			if err != nil || !strings.Contains(string(data), `"reason":"`+tt.reason+`"`) {
				t.Errorf("%s: %v: %s", report.KernelDropsFile, err, data)
			}
		})
	}
}

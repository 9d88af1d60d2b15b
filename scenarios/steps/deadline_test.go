// SPDX-License-Identifier: Apache-2.0

package steps_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"podpath/internal/testutil"
	"podpath/scenarios"
	_ "podpath/scenarios/steps"
)

// On plain L2 nothing ever answers an oversized DF packet with frag-needed: the
// frag-needed step waits for something that never comes. Its own wait, and a tiny
// step deadline, each end it in time with evidence naming what was awaited; the run
// goes on to the next step and tears down.
const neverAnswered = `name: deadlines
description: waits for what never comes end at their deadlines with evidence
stages:
  - topology: l2-two-node
    steps:
      - check: frag-needed
        with: {from: pod1a, to: pod2a, label: own wait}
        expect: {mtu: 1400}
      - check: frag-needed
        with: {from: pod1a, to: pod2a, label: tiny deadline}
        expect: {mtu: 1400}
        timeout: 500ms
      - check: connectivity
        with: {from: pod1a, to: pod2a, label: after}
`

func TestStepDeadlines(t *testing.T) {
	testutil.RequireRoot(t)
	f, err := scenarios.ParseScenario([]byte(neverAnswered), "")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := scenarios.Execute(ctx, f.Scenario(), scenarios.Options{Artifacts: t.TempDir(), Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	defer func() {
		if t.Failed() {
			t.Log(out.String())
		}
	}()
	// The checks of each label, and how long they took together.
	type group struct {
		checks []string
		failed map[string]string // name -> evidence
		took   time.Duration
	}
	groups := map[string]*group{}
	for _, c := range r.Results {
		label, _, _ := strings.Cut(c.Name, ":")
		if strings.HasPrefix(c.Name, "stages[0].steps[1]") {
			label = "tiny deadline"
		}
		g := groups[label]
		if g == nil {
			g = &group{failed: map[string]string{}}
			groups[label] = g
		}
		g.checks = append(g.checks, c.Name)
		g.took += c.Duration
		if !c.Passed {
			g.failed[c.Name] = c.Evidence
		}
	}
	tests := []struct {
		label    string
		within   time.Duration // the step's deadline or its own wait's, plus the ping's 2 s where it runs whole
		failures []string      // check name prefixes that must fail
		evidence []string
	}{
		{"own wait", 2*time.Second + time.Second + 3*time.Second,
			[]string{"own wait: a DF packet over the tunnel MTU"},
			[]string{"no ICMP frag-needed reached pod1a", "waited 1", "for ICMP frag-needed (type 3 code 4) to pod1a (10.244.1.10) for its 1401-byte DF echo request to 10.244.2.10 on pod1a/eth0",
				"saw: ", "echo-reply"}},
		{"tiny deadline", 500*time.Millisecond + 1500*time.Millisecond,
			[]string{"tiny deadline: a DF packet over the tunnel MTU", "tiny deadline: TCP from that sender converges", "stages[0].steps[1] (frag-needed): finishes within its deadline of 500ms"},
			[]string{"for ICMP frag-needed (type 3 code 4) to pod1a", "context deadline exceeded", "deadline of 500ms passed after"}},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			g := groups[tt.label]
			if g == nil {
				t.Fatalf("no checks labelled %q", tt.label)
			}
			if g.took > tt.within {
				t.Errorf("took %v, want at most %v", g.took, tt.within)
			}
			var evidence strings.Builder
			for _, want := range tt.failures {
				found := false
				for name, ev := range g.failed {
					if strings.HasPrefix(name, want) {
						found = true
						evidence.WriteString(ev + "\n")
					}
				}
				if !found {
					t.Errorf("no failed check %q among %q", want, g.checks)
				}
			}
			for _, want := range tt.evidence {
				if !strings.Contains(evidence.String(), want) {
					t.Errorf("evidence lacks %q:\n%s", want, evidence.String())
				}
			}
		})
	}
	if g := groups["after"]; g == nil || len(g.failed) > 0 {
		t.Errorf("the step after the deadlines did not run or failed: %+v", g)
	}
	for _, c := range r.Results {
		if c.Name == "teardown" || c.Name == "scenario setup and traffic" {
			t.Errorf("%s failed: %s", c.Name, c.Evidence)
		}
	}
}

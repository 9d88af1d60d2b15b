// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"strings"
	"testing"
	"time"

	"podpath/internal/testutil"
)

type noParams struct{}

// A step that does not return at its deadline is given stepGrace, then abandoned: a
// failed check says so, the stage ends and its topology comes down, in time.
func TestStepAbandonedAfterGrace(t *testing.T) {
	testutil.RequireRoot(t)
	// A step that ignores its deadline: it sleeps on, as a wait without one would.
	RegisterStep(StepDef[noParams, noParams]{
		Name:    "test-ignores-deadline",
		Summary: "test only: sleeps 5s whatever its context says",
		Run: func(context.Context, *Stage, noParams, noParams) error {
			time.Sleep(5 * time.Second)
			return nil
		},
	})
	t.Cleanup(func() { delete(stepKinds, "test-ignores-deadline") })
	old := stepGrace
	stepGrace = 300 * time.Millisecond
	t.Cleanup(func() { stepGrace = old })
	f, err := ParseScenario([]byte(`name: abandoned
description: a step that ignores its deadline
stages:
  - topology: l2-two-node
    steps:
      - check: test-ignores-deadline
        timeout: 200ms
      - check: test-ignores-deadline
`), "")
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	start := time.Now()
	r, err := Execute(context.Background(), f.Scenario(), Options{Artifacts: t.TempDir(), Out: &out})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "stages[0].steps[0] (test-ignores-deadline): did not return 300ms after its deadline of 200ms: abandoned") {
		t.Errorf("Execute: %v, want the step abandoned", err)
	}
	var names []string
	for _, c := range r.Results {
		names = append(names, c.Name)
		if c.Name == "teardown" {
			t.Errorf("teardown failed: %s", c.Evidence)
		}
	}
	if len(names) != 2 || names[0] != "stages[0].steps[0] (test-ignores-deadline): finishes within its deadline of 200ms" || names[1] != "scenario setup and traffic" {
		t.Errorf("checks %q, want the deadline check and the setup failure only", names)
	}
	// Bring-up and teardown of two nodes, plus 200ms + 300ms; the second step never ran.
	if took > 4*time.Second {
		t.Errorf("took %v", took)
	}
	if t.Failed() {
		t.Log(out.String())
	}
}

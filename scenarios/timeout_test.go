// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"strings"
	"testing"
	"time"

	"podpath/scenarios"
)

// A step's deadline is its file's `timeout:`, else its kind's default; a bad one is an
// error at the step's field path.
func TestStepTimeout(t *testing.T) {
	kinds := map[string]string{}
	for _, k := range scenarios.StepKinds() {
		kinds[k.Name] = k.Timeout
	}
	if kinds["frag-needed"] == "" || kinds["connectivity"] != scenarios.DefaultStepTimeout.String() {
		t.Fatalf("kind deadlines: frag-needed %q, connectivity %q (want the default %v)", kinds["frag-needed"], kinds["connectivity"], scenarios.DefaultStepTimeout)
	}
	withTimeout := func(v string) string {
		return strings.Replace(validFile, "        with: {from: pod1a, to: pod2a}\n", "        with: {from: pod1a, to: pod2a}\n        timeout: "+v+"\n", 1)
	}
	tests := []struct {
		name string
		file string
		want time.Duration // of steps[1] (mtu-sweep); 0: invalid
		err  string
	}{
		{"kind default", validFile, mustDuration(t, kinds["mtu-sweep"]), ""},
		{"given", withTimeout("30s"), 30 * time.Second, ""},
		{"minutes", withTimeout("2m"), 2 * time.Minute, ""},
		{"not a duration", withTimeout("soon"), 0, `stages[0].steps[1].timeout: "soon" is not a duration in (0, 1h0m0s] like 30s or 2m: the step's deadline (line 14)`},
		{"zero", withTimeout("0s"), 0, `stages[0].steps[1].timeout: "0s" is not a duration`},
		{"negative", withTimeout("-1s"), 0, `stages[0].steps[1].timeout: "-1s" is not a duration`},
		{"too long", withTimeout("2h"), 0, `stages[0].steps[1].timeout: "2h" is not a duration`},
		{"not a scalar", withTimeout("[1s]"), 0, `stages[0].steps[1].timeout: want a duration like 30s or 2m, got a list`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := scenarios.ParseScenario([]byte(tt.file), "")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("want an error with %q, got:\n%v", tt.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := f.Stages[0].Steps[1].Timeout; got != tt.want {
				t.Errorf("timeout %v, want %v", got, tt.want)
			}
		})
	}
}

func mustDuration(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"bytes"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/internal/nsutil"
)

// MapEntry is one key/value a fixture puts into a map before the run.
type MapEntry struct {
	Map        *ebpf.Map
	Key, Value any
}

// Fixture is one case in Katran's style: a packet and map state in, a verdict and a
// packet out.
type Fixture struct {
	Name  string
	Input []byte
	Maps  []MapEntry // seeded before the run, deleted after it
	// Context sets the skb's device and ingress device (nil: loopback, 0).
	Context *SkbContext
	// Netns is the path of a network namespace to run in (nsutil.Path(name)); the
	// program's device and helpers such as bpf_fib_lookup see that namespace. Empty:
	// the caller's.
	Netns   string
	Verdict Verdict
	// Output is the expected packet; nil means "unchanged from Input".
	Output []byte
	// IgnoreOutput skips the packet comparison (drops, where the output is moot).
	IgnoreOutput bool
	// Check runs after the comparison, for maps, trace records and the like.
	Check func(t *testing.T, res Result)
}

// RunFixtures runs each fixture as a subtest and reports any mismatch with a byte and
// field diff of the packets.
func RunFixtures(t *testing.T, prog *ebpf.Program, fixtures []Fixture) {
	t.Helper()
	for _, f := range fixtures {
		t.Run(f.Name, func(t *testing.T) {
			for _, e := range f.Maps {
				if err := e.Map.Put(e.Key, e.Value); err != nil {
					t.Fatalf("seed map %s: %v", e.Map, err)
				}
				t.Cleanup(func() { _ = e.Map.Delete(e.Key) })
			}
			var res Result
			run := func() (err error) {
				res, err = RunContext(prog, f.Input, f.Context)
				return err
			}
			var err error
			if f.Netns != "" {
				err = nsutil.Do(f.Netns, run)
			} else {
				err = run()
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != f.Verdict {
				t.Errorf("verdict: want %s, got %s", f.Verdict, res.Verdict)
			}
			if !f.IgnoreOutput {
				want := f.Output
				if want == nil {
					want = f.Input
				}
				if !bytes.Equal(want, res.Out) {
					t.Errorf("output packet differs from expected:\n%s", Diff(want, res.Out))
				}
			}
			if f.Check != nil {
				f.Check(t, res)
			}
		})
	}
}

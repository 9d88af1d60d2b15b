// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	pconfig "podpath/datapath/config"
	"podpath/datapath/config/configs"
	"podpath/scenarios/hops"
	"podpath/scenarios/report"
	"podpath/topology"
	"podpath/topology/agentrun"
	"podpath/topology/catalog"
	"podpath/topology/netns"
)

// Scenario is one named conformance run: it brings up what it needs, drives traffic
// and records checks. Setup failures are returned; check failures are recorded.
type Scenario struct {
	Name        string
	Description string
	Labels      []string
	Run         func(ctx context.Context, r *Run) error
}

// Run is the state of one scenario run.
type Run struct {
	Scenario  *Scenario
	Artifacts string // pcaps and logs of this run
	// Keep leaves topologies up at the end (for poking at them); their names are printed.
	Keep    bool
	out     io.Writer
	Results []report.CheckResult
	// Flows are the packet paths the run followed hop by hop (RecordFlow).
	Flows []hops.FlowRecord
	// ConfigWarnings are the agents' cilium-config warnings, per stage that
	// started agents (recordAgentWarnings).
	ConfigWarnings []report.StageWarnings
	// KernelDrops are the kernel's drops in the run's namespaces, per step (kdrops.go).
	KernelDrops []report.StepDrops
	kdrops      kernelDrops
	// Duration is how long the run took, set when it ends.
	Duration   time.Duration
	started    time.Time
	topologies []topology.Cluster
	last       time.Time
	cleanup    []func(context.Context) error
	traceLog   *report.TraceLog
	// mu orders Check calls: a step abandoned after its deadline may still record.
	mu sync.Mutex
}

// Check records a check: passed when err is nil, else failed with err as evidence.
// lookedAt names what was examined (interface, header field, trace point, counter).
func (r *Run) Check(name, lookedAt string, err error) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Now()
	res := report.CheckResult{Name: name, LookedAt: lookedAt, Passed: err == nil, Duration: now.Sub(r.last)}
	r.last = now
	if err != nil {
		res.Evidence = err.Error() + r.kernelDropsEvidence()
	}
	r.Results = append(r.Results, res)
	status := "PASS"
	if !res.Passed {
		status = "FAIL"
	}
	fmt.Fprintf(r.out, "%s  %s\n      looked at: %s\n", status, name, lookedAt)
	if !res.Passed {
		fmt.Fprintf(r.out, "      evidence:\n%s\n", indent(res.Evidence, "        "))
	}
	return res.Passed
}

// Progress prints a progress line.
func (r *Run) Progress(format string, args ...any) {
	fmt.Fprintf(r.out, "• "+format+"\n", args...)
}

// Up brings up a catalog topology for the run; it comes down when the run ends
// (unless Keep).
func (r *Run) Up(ctx context.Context, name string) (topology.Cluster, error) {
	spec, err := catalog.Topology(name)
	if err != nil {
		return nil, err
	}
	return r.upSpec(ctx, spec, name)
}

// upSpec brings up spec (called name in progress lines); it comes down with the
// cleanups registered since (unless Keep), after the records left in its agents' trace
// ring buffers have been written to the run's trace log.
func (r *Run) upSpec(ctx context.Context, spec *topology.Spec, name string) (topology.Cluster, error) {
	r.Progress("bringing up topology %s", name)
	t, err := netns.Up(ctx, spec)
	if err != nil {
		return nil, err
	}
	r.topologies = append(r.topologies, t)
	r.watchKernelDrops(t)
	r.Defer(func(ctx context.Context) error {
		r.drainTraces(t)
		r.unwatchKernelDrops(t)
		if r.Keep {
			fmt.Fprintf(r.out, "• kept topology %s up (podpath down %s)\n", t.Name(), t.Name())
			return nil
		}
		return t.Down(ctx)
	})
	return t, nil
}

// UpWithAgents brings up a catalog topology whose pods the agents plumb and starts an
// agent on every node with catalog cilium-config config.
func (r *Run) UpWithAgents(ctx context.Context, topo, config string) (topology.Cluster, *agentrun.Agents, error) {
	spec, err := catalog.Topology(topo)
	if err != nil {
		return nil, nil, err
	}
	data, err := configs.Read(config)
	if err != nil {
		return nil, nil, err
	}
	c, _, err := pconfig.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("cilium-config %s: %w", config, err)
	}
	t, err := r.upSpec(ctx, spec.WithDatapath(c), topo)
	if err != nil {
		return nil, nil, err
	}
	cfg, err := configs.Write(t.Dir(), config)
	if err != nil {
		return nil, nil, err
	}
	r.Progress("starting agents with cilium-config %s", config)
	agents, err := agentrun.Start(ctx, t, cfg)
	if err != nil {
		return nil, nil, err
	}
	r.recordAgentWarnings(ctx, topo, config, t, agents)
	return t, agents, nil
}

// Defer registers cleanup run at the end, last registered first.
func (r *Run) Defer(fn func(context.Context) error) { r.cleanup = append(r.cleanup, fn) }

// Passed and Failed count the checks.
func (r *Run) Passed() int { return r.count(true) }
func (r *Run) Failed() int { return r.count(false) }

func (r *Run) count(passed bool) int {
	n := 0
	for _, c := range r.Results {
		if c.Passed == passed {
			n++
		}
	}
	return n
}

// Options for Execute.
type Options struct {
	Artifacts string // default: ./artifacts/<scenario>
	Keep      bool
	Out       io.Writer
}

// Execute runs a scenario, tears down what it made (even after a failure), and returns
// the run. A setup failure is recorded as a failed check and returned.
func Execute(ctx context.Context, s *Scenario, opts Options) (*Run, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	if opts.Artifacts == "" {
		opts.Artifacts = filepath.Join("artifacts", s.Name)
	}
	if err := os.MkdirAll(opts.Artifacts, 0o755); err != nil {
		return nil, err
	}
	r := &Run{Scenario: s, Artifacts: opts.Artifacts, Keep: opts.Keep, out: opts.Out, last: time.Now(), started: time.Now()}
	fmt.Fprintf(r.out, "=== scenario %s: %s\n", s.Name, s.Description)
	err := s.Run(ctx, r)
	if err != nil {
		r.Check("scenario setup and traffic", "the scenario's own steps", err)
	}
	err = errors.Join(err, r.unwind(ctx, 0), r.closeKernelDrops())
	if r.traceLog != nil {
		err = errors.Join(err, r.traceLog.Close())
	}
	r.Duration = time.Since(r.started)
	return r, err
}

// unwind runs the cleanups registered after the first mark, last registered first,
// and forgets them; each failure is recorded as a failed teardown check.
func (r *Run) unwind(ctx context.Context, mark int) error {
	var err error
	for i := len(r.cleanup) - 1; i >= mark; i-- {
		if cerr := r.cleanup[i](context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, cerr)
			r.Check("teardown", "namespaces, processes and mounts of the run", cerr)
		}
	}
	r.cleanup = r.cleanup[:mark]
	return err
}

// stepGrace is how long a step may take to return after its deadline passed before the
// runner gives up on it and ends the stage (its topology comes down). A variable for
// tests.
var stepGrace = 10 * time.Second

// runStep runs one step under its deadline (StepSpec.Timeout). A step that ran out of
// time is a failed check naming the deadline, with the step's error as evidence (its own
// checks recorded what they waited for and saw), and the stage goes on with its next
// step. Any other error of the step is a setup failure that ends the scenario.
func (r *Run) runStep(ctx context.Context, s *Stage, step StepSpec) error {
	limit := cmp.Or(step.Timeout, step.kind.timeout, DefaultStepTimeout)
	r.kernelDropsStepStarted()
	defer r.kernelDropsStepEnded(s, step)
	sctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	done := make(chan error, 1)
	go func() { done <- step.kind.run(sctx, s, step.With, step.Expect) }()
	var err error
	select {
	case err = <-done:
	case <-sctx.Done():
		select {
		case err = <-done:
		case <-time.After(stepGrace):
			err = fmt.Errorf("did not return %v after its deadline of %v: abandoned, the stage ends", stepGrace, limit)
			if ctx.Err() == nil {
				r.Check(fmt.Sprintf("%s (%s): finishes within its deadline of %v", step.Path, step.Kind, limit),
					"the step's run time against its deadline (timeout:)", err)
			}
			return fmt.Errorf("%s (%s): %w", step.Path, step.Kind, err)
		}
	}
	if ctx.Err() == nil && errors.Is(sctx.Err(), context.DeadlineExceeded) {
		why := fmt.Errorf("deadline of %v passed after %v", limit, time.Since(start).Round(time.Millisecond))
		if err != nil {
			why = fmt.Errorf("%w; the step said: %w", why, err)
		}
		r.Check(fmt.Sprintf("%s (%s): finishes within its deadline of %v", step.Path, step.Kind, limit),
			"the step's run time against its deadline (timeout:)", why)
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s (%s): %w", step.Path, step.Kind, err)
	}
	return nil
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

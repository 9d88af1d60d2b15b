// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Mode says whether a program may be run repeatedly on its own output.
type Mode int

const (
	// ReadOnly programs leave the packet unchanged: the kernel repeats them b.N times on
	// one skb and reports the mean.
	ReadOnly Mode = iota
	// Rewrites programs (encap, NAT, TTL) must see the original packet each time: one
	// test-run per iteration, each from a fresh copy of the input.
	Rewrites
)

// maxRepeat bounds one BPF_PROG_TEST_RUN call so a long benchmark stays interruptible.
const maxRepeat = 1 << 20

// Bench measures prog on pkt and reports the kernel's ns per packet as "ns/pkt", and
// as "ns/pkt-net" the same minus the empty program's floor measured in the same mode
// and run: a repeat=1 run carries the kernel timer's own cost (~2 clock reads), which
// would otherwise hide what the program costs.
func Bench(b *testing.B, prog *ebpf.Program, pkt []byte, mode Mode) {
	b.Helper()
	bench(b, prog, pkt, mode, nil)
}

// BenchNewFlows is Bench in Rewrites mode for packets that must find no conntrack
// entry: reset runs before every run, outside the measured time, and deletes what the
// previous run created (each run's duration is the kernel's own).
func BenchNewFlows(b *testing.B, prog *ebpf.Program, pkt []byte, reset func() error) {
	b.Helper()
	bench(b, prog, pkt, Rewrites, reset)
}

func bench(b *testing.B, prog *ebpf.Program, pkt []byte, mode Mode, reset func() error) {
	b.Helper()
	ns, err := measure(prog, pkt, mode, b.N, b.ResetTimer, reset)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ns, "ns/pkt")
	floor, err := FloorOf(prog.Type(), pkt, mode)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(max(ns-floor, 0), "ns/pkt-net")
}

// BenchPath benchmarks prog on pkt inside the network namespace at nsPath (empty: the
// caller's), one test-run per packet from a fresh copy (Rewrites: the datapath's
// programs rewrite MACs, TTL, headers), after checking that one run returns want: a
// benchmark of another path than the one it is named after would mislead. With reset
// (BenchNewFlows), every run is a new flow; without it, every run after the check
// finds what the check's run created (an established flow).
func BenchPath(b *testing.B, nsPath string, prog *ebpf.Program, pkt []byte, want Verdict, reset func() error) {
	b.Helper()
	run := func() error {
		if reset != nil {
			_ = reset()
		}
		res, err := Run(prog, pkt)
		if err != nil {
			return err
		}
		if res.Verdict != want {
			return fmt.Errorf("verdict %s, want %s: the benchmark would measure another path", res.Verdict, want)
		}
		if reset != nil {
			BenchNewFlows(b, prog, pkt, reset)
		} else {
			Bench(b, prog, pkt, Rewrites)
		}
		return nil
	}
	if err := doIn(nsPath, run); err != nil {
		b.Fatal(err)
	}
}

// MeasureRuns is the mean ns per run of n test-runs of prog on pkt, one run per call
// (repeat=1, each from a fresh copy), before (when given) running before each run
// outside the kernel's time: the primitive of benchmarks that interleave several
// programs round by round so that a busy machine slows them all alike.
func MeasureRuns(prog *ebpf.Program, pkt []byte, n int, before func() error) (float64, error) {
	return measure(prog, pkt, Rewrites, n, nil, before)
}

// measure runs prog n times on pkt and returns the mean ns per run; resetTimer runs
// once before the first, before (when given) before every run, outside the time the
// kernel measures, and forces one run per test-run call.
func measure(prog *ebpf.Program, pkt []byte, mode Mode, n int, resetTimer func(), before func() error) (float64, error) {
	var total time.Duration
	runs := 0
	if resetTimer != nil {
		resetTimer()
	}
	for runs < n {
		repeat := 1
		if mode == ReadOnly && before == nil {
			repeat = min(n-runs, maxRepeat)
		}
		if before != nil {
			if err := before(); err != nil {
				return 0, fmt.Errorf("reset before test-run %s: %w", prog, err)
			}
		}
		_, perRun, err := prog.Benchmark(pkt, repeat, nil)
		if err != nil {
			return 0, fmt.Errorf("test-run %s: %w", prog, err)
		}
		total += perRun * time.Duration(repeat)
		runs += repeat
	}
	return float64(total.Nanoseconds()) / float64(runs), nil
}

type floorKey struct {
	typ  ebpf.ProgramType
	mode Mode
}

var (
	floorMu sync.Mutex
	floors  = map[floorKey]float64{}
)

// floorRuns is enough runs for a stable mean of the empty program.
const floorRuns = 200000

// Floor is the empty tc program's ns/pkt on pkt in mode, measured once per process.
func Floor(pkt []byte, mode Mode) (float64, error) {
	return FloorOf(ebpf.SchedCLS, pkt, mode)
}

// FloorOf is the empty program's ns/pkt of program type typ (SchedCLS or XDP: the
// kernel's test-run for XDP builds an xdp_buff, not an skb, and its floor differs),
// measured once per process and type.
func FloorOf(typ ebpf.ProgramType, pkt []byte, mode Mode) (float64, error) {
	floorMu.Lock()
	defer floorMu.Unlock()
	if ns, ok := floors[floorKey{typ, mode}]; ok {
		return ns, nil
	}
	empty, err := emptyOf(typ)
	if err != nil {
		return 0, fmt.Errorf("load empty program: %w", err)
	}
	defer empty.Close()
	ns, err := measure(empty, pkt, mode, floorRuns, nil, nil)
	if err != nil {
		return 0, err
	}
	floors[floorKey{typ, mode}] = ns
	return ns, nil
}

func emptyOf(typ ebpf.ProgramType) (*ebpf.Program, error) {
	if typ == ebpf.XDP {
		return EmptyXDPProgram()
	}
	return EmptyProgram()
}

// EmptyXDPProgram loads `return XDP_PASS`: the floor of XDP figures.
func EmptyXDPProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "empty_xdp",
		Type: ebpf.XDP,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, int32(XDPPass)),
			asm.Return(),
		},
		License: "GPL",
	})
}

// EmptyProgram loads `return TCX_NEXT` as a tc program: the test-run floor that every
// ns/pkt figure is read against.
func EmptyProgram() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "empty",
		Type: ebpf.SchedCLS,
		Instructions: asm.Instructions{
			asm.Mov.Imm(asm.R0, -1),
			asm.Return(),
		},
		License: "GPL",
	})
}

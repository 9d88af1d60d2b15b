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
	ns, err := measure(prog, pkt, mode, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(ns, "ns/pkt")
	floor, err := Floor(pkt, mode)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(max(ns-floor, 0), "ns/pkt-net")
}

func measure(prog *ebpf.Program, pkt []byte, mode Mode, n int, reset func()) (float64, error) {
	var total time.Duration
	runs := 0
	if reset != nil {
		reset()
	}
	for runs < n {
		repeat := 1
		if mode == ReadOnly {
			repeat = min(n-runs, maxRepeat)
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

var (
	floorMu sync.Mutex
	floors  = map[Mode]float64{}
)

// floorRuns is enough runs for a stable mean of the empty program.
const floorRuns = 200000

// Floor is the empty program's ns/pkt on pkt in mode, measured once per process.
func Floor(pkt []byte, mode Mode) (float64, error) {
	floorMu.Lock()
	defer floorMu.Unlock()
	if ns, ok := floors[mode]; ok {
		return ns, nil
	}
	empty, err := EmptyProgram()
	if err != nil {
		return 0, fmt.Errorf("load empty program: %w", err)
	}
	defer empty.Close()
	ns, err := measure(empty, pkt, mode, floorRuns, nil)
	if err != nil {
		return 0, err
	}
	floors[mode] = ns
	return ns, nil
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

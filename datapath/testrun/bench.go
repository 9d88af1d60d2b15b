// SPDX-License-Identifier: Apache-2.0

package testrun

import (
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

// Bench measures prog on pkt and reports the kernel's ns per packet as "ns/pkt".
// Only the program's run time counts, not the syscall or skb setup around it.
func Bench(b *testing.B, prog *ebpf.Program, pkt []byte, mode Mode) {
	b.Helper()
	var total time.Duration
	runs := 0
	b.ResetTimer()
	for runs < b.N {
		repeat := 1
		if mode == ReadOnly {
			repeat = min(b.N-runs, maxRepeat)
		}
		_, perRun, err := prog.Benchmark(pkt, repeat, nil)
		if err != nil {
			b.Fatalf("test-run %s: %v", prog, err)
		}
		total += perRun * time.Duration(repeat)
		runs += repeat
	}
	b.ReportMetric(float64(total.Nanoseconds())/float64(runs), "ns/pkt")
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

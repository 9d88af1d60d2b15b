// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Verdict is a tc/tcx program's return code.
type Verdict int32

// Return codes of tc (TC_ACT_*) and tcx (TCX_*) programs.
const (
	Next     Verdict = -1 // TC_ACT_UNSPEC / TCX_NEXT
	Pass     Verdict = 0  // TC_ACT_OK / TCX_PASS
	Shot     Verdict = 2  // TC_ACT_SHOT / TCX_DROP
	Redirect Verdict = 7  // TC_ACT_REDIRECT / TCX_REDIRECT
)

func (v Verdict) String() string {
	switch v {
	case Next:
		return "TCX_NEXT"
	case Pass:
		return "TCX_PASS"
	case Shot:
		return "TCX_DROP"
	case Redirect:
		return "TCX_REDIRECT"
	}
	return fmt.Sprintf("verdict(%d)", int32(v))
}

// Room kept after the input for programs that grow the packet (encapsulation).
const headroom = 256

// Result is what one run of a program returned.
type Result struct {
	Verdict Verdict
	Out     []byte // the packet after the program
}

// Packet decodes the output packet as Ethernet.
func (r Result) Packet() gopacket.Packet {
	return gopacket.NewPacket(r.Out, layers.LayerTypeEthernet, gopacket.Default)
}

// Run executes prog once on pkt (`bpftool prog run`). The skb's device is the
// loopback of the calling thread's network namespace.
func Run(prog *ebpf.Program, pkt []byte) (Result, error) {
	out := make([]byte, len(pkt)+headroom)
	opts := ebpf.RunOptions{Data: pkt, DataOut: out, Repeat: 1}
	ret, err := prog.Run(&opts)
	if err != nil {
		return Result{}, fmt.Errorf("test-run %s: %w", prog, err)
	}
	return Result{Verdict: Verdict(int32(ret)), Out: opts.DataOut}, nil
}

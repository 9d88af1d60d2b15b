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

// SkbContext is the leading part of struct __sk_buff that BPF_PROG_TEST_RUN accepts
// as a tc program's context; the kernel refuses a context with any other field set.
// Ifindex picks the skb's device (skb->ifindex): it must exist in the calling
// thread's network namespace, and 0 or 1 mean its loopback. IngressIfindex is copied
// to skb->ingress_ifindex as is (0 when there is no context). The layout is checked
// against the kernel's BTF in tests.
type SkbContext struct {
	_              [2]uint32 // len, pkt_type: the kernel's
	Mark           uint32
	_              [5]uint32 // queue_mapping, protocol, vlan_present, vlan_tci, vlan_proto
	Priority       uint32
	IngressIfindex uint32
	Ifindex        uint32
}

// Run executes prog once on pkt (`bpftool prog run`). The skb's device is the
// loopback of the calling thread's network namespace.
func Run(prog *ebpf.Program, pkt []byte) (Result, error) {
	return RunContext(prog, pkt, nil)
}

// RunContext is Run with an skb context (nil: none).
func RunContext(prog *ebpf.Program, pkt []byte, ctx *SkbContext) (Result, error) {
	out := make([]byte, len(pkt)+headroom)
	opts := ebpf.RunOptions{Data: pkt, DataOut: out, Repeat: 1}
	if ctx != nil {
		opts.Context = *ctx
	}
	ret, err := prog.Run(&opts)
	if err != nil {
		return Result{}, fmt.Errorf("test-run %s: %w", prog, err)
	}
	return Result{Verdict: Verdict(int32(ret)), Out: opts.DataOut}, nil
}

// XdpContext is struct xdp_md as BPF_PROG_TEST_RUN accepts it for an XDP program:
// DataEnd must be the packet's length (Data and DataMeta 0: no metadata), and
// IngressIfindex picks the receiving device (it must exist in the calling thread's
// network namespace; 0: loopback). EgressIfindex must stay 0.
type XdpContext struct {
	Data, DataEnd, DataMeta uint32
	IngressIfindex          uint32
	RxQueueIndex            uint32
	EgressIfindex           uint32
}

// XDP program verdicts (enum xdp_action).
const (
	XDPAborted  Verdict = 0
	XDPDrop     Verdict = 1
	XDPPass     Verdict = 2
	XDPTx       Verdict = 3
	XDPRedirect Verdict = 4
)

// XDPVerdictString names an XDP program's return code (Verdict.String names tc's).
func XDPVerdictString(v Verdict) string {
	switch v {
	case XDPAborted:
		return "XDP_ABORTED"
	case XDPDrop:
		return "XDP_DROP"
	case XDPPass:
		return "XDP_PASS"
	case XDPTx:
		return "XDP_TX"
	case XDPRedirect:
		return "XDP_REDIRECT"
	}
	return fmt.Sprintf("xdp verdict(%d)", int32(v))
}

// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"podpath/datapath/trace"
)

// MaxFuzzFrame is the longest frame a fuzz target feeds to a program: it stays clear
// of test-run's limit (a page minus head- and tailroom).
const MaxFuzzFrame = 3000

// KernelRejects says whether BPF_PROG_TEST_RUN refuses the frame before the program
// runs (measured on Linux 6.18: under 14 bytes, IPv4 under 34, IPv6 under 54).
func KernelRejects(b []byte) bool {
	if len(b) < 14 {
		return true
	}
	switch uint16(b[12])<<8 | uint16(b[13]) {
	case 0x0800:
		return len(b) < 34
	case 0x86dd:
		return len(b) < 54
	}
	return false
}

// RunFuzz runs prog once on a fuzzer's frame, inside the network namespace at nsPath
// (empty: the caller's) with ctx (nil: none). A frame over MaxFuzzFrame skips the
// test; a frame the kernel refuses before the program runs, as KernelRejects says it
// must, returns ok false; any other error, or a frame the kernel ran although
// KernelRejects says it refuses it, fails the test.
func RunFuzz(t *testing.T, nsPath string, prog *ebpf.Program, data []byte, ctx *SkbContext) (res Result, ok bool) {
	t.Helper()
	if len(data) > MaxFuzzFrame {
		t.Skip("beyond test-run's frame limit")
	}
	run := func() (err error) {
		res, err = RunContext(prog, data, ctx)
		return err
	}
	if err := doIn(nsPath, run); err != nil {
		if errors.Is(err, unix.EINVAL) && KernelRejects(data) {
			return Result{}, false
		}
		t.Fatalf("test-run of a %d-byte frame failed: %v", len(data), err)
	}
	if KernelRejects(data) {
		t.Fatalf("the kernel ran a %d-byte frame it used to refuse: update testrun.KernelRejects", len(data))
	}
	return res, true
}

// CheckRecord checks the one trace record r a run left against the verdict v the
// program returned: a drop says VERDICT_DROP with a drop reason and no pass reason; a
// redirect says one of the redirect verdicts with a target and no reason; anything
// else says VERDICT_PASS with no drop reason and no target. The record must also come
// from observation point obs, count pktLen bytes and carry drop reasons, pass reasons
// and a tunnel kind that n names. The error shows the record.
func CheckRecord(n *trace.Names, v Verdict, r trace.Record, obs string, pktLen int) error {
	verdict := n.Verdict(r.Verdict)
	_, dropNamed := n.DropReasons[uint64(r.DropReason)]
	_, passNamed := n.PassReasons[uint64(r.PassReason)]
	_, tunnelNamed := n.Tunnels[uint64(r.Tunnel)]
	var consistent bool
	switch v {
	case Shot:
		consistent = verdict == "VERDICT_DROP" && r.DropReason != 0 && r.PassReason == 0
	case Redirect:
		consistent = slices.Contains([]string{"VERDICT_REDIRECT", "VERDICT_REDIRECT_PEER", "VERDICT_REDIRECT_NEIGH"}, verdict) &&
			r.TargetIfindex != 0 && r.DropReason == 0 && r.PassReason == 0
	default:
		consistent = verdict == "VERDICT_PASS" && r.DropReason == 0 && r.TargetIfindex == 0
	}
	if !consistent || n.ObsPoint(r.ObsPoint) != obs || r.PktLen != uint32(pktLen) || !dropNamed || !passNamed || !tunnelNamed {
		return fmt.Errorf("verdict %s but record %s", v, n.Format(r))
	}
	return nil
}

// MapContents is every key and value of m as raw bytes, to compare a map before and
// after a run.
func MapContents(tb testing.TB, m *ebpf.Map) map[string]string {
	tb.Helper()
	var k, v []byte
	c := map[string]string{}
	it := m.Iterate()
	for it.Next(&k, &v) {
		c[string(k)] = string(v)
	}
	if err := it.Err(); err != nil {
		tb.Fatalf("dump map %s: %v", m, err)
	}
	return c
}

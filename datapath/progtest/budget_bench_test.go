// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// BenchmarkBudget prices what the conntrack entry's caches save on an established
// NodePort SNAT packet (docs/budget.md), at tc and XDP, by making them stale before
// every packet (outside the measured time):
//
//	cached       every cache valid: no bpf_fib_lookup, no lb_backends, no endpoints
//	fib-stale    GenFIB bumped: one bpf_fib_lookup and the route stored again
//	be-stale     GenBackend bumped: lb_backends, the locality check's endpoint
//	             lookup, then (the route is dropped with the backend) bpf_fib_lookup,
//	             all stored again: the packet as it was before the budget, plus stores
//
// The differences between rows are what each lookup costs on this machine.
func BenchmarkBudget(b *testing.B) {
	cfg := lbConfig(b, lbOpts{})
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	e := newNodePortEnv(b, "bench-budget", cfg)
	bump := func(slot uint32) func() error {
		return func() error {
			_, err := maps.BumpGeneration(e.d.LB.Gen, slot)
			return err
		}
	}
	for _, hook := range []struct {
		name string
		prog *ebpf.Program
		want testrun.Verdict
	}{{"tc", e.d.FromNetdev, testrun.Redirect}, {"xdp", e.d.XDP, testrun.XDPRedirect}} {
		pkt := xFrame.to(npRemote).tcp(ackOnly)
		// The first row's check run creates the flow (an ACK without an entry is a
		// new, established flow) and its first measured packet fills the caches.
		for _, row := range []struct {
			name  string
			reset func() error
		}{{"cached", nil}, {"fib-stale", bump(maps.GenFIB)}, {"be-stale", bump(maps.GenBackend)}} {
			b.Run(row.name+"/"+hook.name, func(b *testing.B) {
				testrun.BenchPath(b, e.f.path, hook.prog, pkt, hook.want, row.reset)
			})
		}
	}
}

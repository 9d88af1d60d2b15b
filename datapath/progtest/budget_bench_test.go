// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
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
// reply-cached and reply-fib-stale are the same for the flow's replies at XDP.
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
	// The flow's replies at XDP (the route to the client kept in the snat entry).
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	reply := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: sp}.tcp(ackOnly)
	for _, row := range []struct {
		name  string
		reset func() error
	}{{"reply-cached", nil}, {"reply-fib-stale", bump(maps.GenFIB)}} {
		b.Run(row.name+"/xdp", func(b *testing.B) {
			testrun.BenchPath(b, e.f.path, e.d.XDP, reply, testrun.XDPRedirect, row.reset)
		})
	}
}

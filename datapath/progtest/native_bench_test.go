// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
	"podpath/datapath/testrun"
)

// BenchmarkDatapath measures the forwarding paths with tracing of forwarded packets
// off (monitor-aggregation maximum), one test-run per packet from a fresh copy
// (testrun.Rewrites: the programs rewrite MACs and TTL). Runs happen inside node 1's
// namespace, whose FIB the cross-node paths consult; test-run gives them no ingress
// device, so the lookup starts from the namespace's loopback (forwarding is on).
func BenchmarkDatapath(b *testing.B) {
	f := setupFibNS(b, "bench")
	cfg := fixtureConfig()
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	d, _ := loadDatapath(b, cfg)

	for _, bc := range []struct {
		name string
		prog *ebpf.Program
		pkt  []byte
		want testrun.Verdict
	}{
		{"from-container/same-node-redirect-peer", d.FromContainer, fromPodA(podBIP).tcpSYN(), testrun.Redirect},
		{"from-container/cross-node-fib-redirect", d.FromContainer, fromPodA(remotePodIP).tcpSYN(), testrun.Redirect},
		{"from-container/cross-node-redirect-neigh", d.FromContainer, fromPodA(noNeighPodIP).tcpSYN(), testrun.Redirect},
		{"from-container/outside-native-cidr-pass", d.FromContainer, fromPodA(worldIP).tcpSYN(), testrun.Pass},
		{"from-netdev/local-pod-redirect-peer", d.FromNetdev, fromUnderlay(podBIP).tcpSYN(), testrun.Redirect},
		{"from-netdev/not-local-pass", d.FromNetdev, fromUnderlay(remotePodIP).tcpSYN(), testrun.Next},
		{"to-netdev/observe", d.ToNetdev, fromUnderlay(remotePodIP).tcpSYN(), testrun.Next},
	} {
		b.Run(bc.name, func(b *testing.B) { testrun.BenchPath(b, f.path, bc.prog, bc.pkt, bc.want, nil) })
	}
}

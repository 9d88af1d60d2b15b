// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"testing"

	"podpath/scenarios/probe"
)

// BenchmarkThroughputIPIP measures a single TCP stream (iperf3) between pods of two
// nodes through IPIP (tunnel-protocol ipip, issue 14) beside Geneve, each as a ratio
// to host-to-host over the same underlay, with the rounds, pinning and medians of
// BenchmarkThroughputCrossNode. Target: IPIP at least Geneve's (20 bytes of overhead
// against 50).
//
//	go test -run XXX -bench ThroughputIPIP -benchtime 1x ./scenarios/
func BenchmarkThroughputIPIP(b *testing.B) {
	ctx, spec, cpus := startThroughput(b)
	hosts, err := upSameNode(ctx, b, spec, "native-routing")
	if err != nil {
		b.Fatal(err)
	}
	geneve, err := upSameNode(ctx, b, spec, "geneve")
	if err != nil {
		b.Fatal(err)
	}
	ipip, err := upSameNode(ctx, b, spec, "ipip")
	if err != nil {
		b.Fatal(err)
	}
	pod2a, _ := geneve.Pod("pod2a")
	node2, _ := hosts.Node("node2")
	pods := probe.IPerf3Test{Client: "pod1a", Server: "pod2a", ServerIP: pod2a.IP}
	paths := []*throughputPath{
		{name: "host", what: "node1 -> node2 over the underlay", s: hosts,
			test: probe.IPerf3Test{Client: "node1", Server: "node2", ServerIP: node2.InternalIP}},
		{name: "geneve", what: "pod1a -> pod2a, Geneve", s: geneve, t: geneve, test: pods,
			verdicts: []string{"VERDICT_REDIRECT", "VERDICT_REDIRECT_NEIGH"}},
		{name: "ipip", what: "pod1a -> pod2a, IPIP", s: ipip, t: ipip, test: pods,
			verdicts: []string{"VERDICT_REDIRECT", "VERDICT_REDIRECT_NEIGH"}},
	}
	med := measurePaths(ctx, b, paths, "host", cpus, node2.Interfaces[0].MTU)
	for _, p := range []string{"geneve", "ipip"} {
		b.ReportMetric(med[p].Gbps()/med["host"].Gbps(), p+"/host")
	}
	b.ReportMetric(med["ipip"].Gbps()/med["geneve"].Gbps(), "ipip/geneve")
	b.Logf("host %.2f Gbit/s; geneve/host %.3f, ipip/host %.3f, ipip/geneve %.3f (target >= 1)",
		med["host"].Gbps(), med["geneve"].Gbps()/med["host"].Gbps(), med["ipip"].Gbps()/med["host"].Gbps(),
		med["ipip"].Gbps()/med["geneve"].Gbps())
}

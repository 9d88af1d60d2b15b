// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"testing"

	"podpath/scenarios/probe"
	"podpath/topology/catalog"
)

// BenchmarkThroughputIPIP measures a single TCP stream (iperf3) from a pod on node1 to
// a pod on node3 across subnets (two-subnet: node3 behind router r1, where Calico's
// CrossSubnet would encapsulate) through IPIP (tunnel-protocol ipip, issue 14), Geneve
// and VXLAN, each as a ratio to host-to-host (node1 -> node3 over the same router),
// with the rounds, pinning and medians of BenchmarkThroughputCrossNode. Target: IPIP at
// least Geneve's (20 bytes of overhead against 50).
//
//	go test -run XXX -bench ThroughputIPIP -benchtime 1x ./scenarios/
func BenchmarkThroughputIPIP(b *testing.B) {
	ctx, _, cpus := startThroughput(b)
	spec, err := catalog.Topology("two-subnet-agent")
	if err != nil {
		b.Fatal(err)
	}
	// native-routing-routed: no direct node routes (node3 is behind r1); the hosts' own
	// stream meets the same from-netdev programs as in BenchmarkThroughputCrossNode.
	hosts, err := upSameNode(ctx, b, spec, "native-routing-routed")
	if err != nil {
		b.Fatal(err)
	}
	tunnels := map[string]string{"geneve": "Geneve", "vxlan": "VXLAN", "ipip": "IPIP"}
	paths := []*throughputPath{nil}
	for _, name := range []string{"geneve", "vxlan", "ipip"} {
		t, err := upSameNode(ctx, b, spec, name)
		if err != nil {
			b.Fatal(err)
		}
		pod3, _ := t.Pod("pod3")
		paths = append(paths, &throughputPath{name: name, what: "pod1 -> pod3 across r1, " + tunnels[name], s: t, t: t,
			test:     probe.IPerf3Test{Client: "pod1", Server: "pod3", ServerIP: pod3.IP},
			verdicts: []string{"VERDICT_REDIRECT", "VERDICT_REDIRECT_NEIGH"}})
	}
	node3, _ := hosts.Node("node3")
	paths[0] = &throughputPath{name: "host", what: "node1 -> node3 across r1", s: hosts,
		test: probe.IPerf3Test{Client: "node1", Server: "node3", ServerIP: node3.InternalIP}}
	med := measurePaths(ctx, b, paths, "host", cpus, node3.Interfaces[0].MTU)
	for _, p := range []string{"geneve", "vxlan", "ipip"} {
		b.ReportMetric(med[p].Gbps()/med["host"].Gbps(), p+"/host")
	}
	b.ReportMetric(med["ipip"].Gbps()/med["geneve"].Gbps(), "ipip/geneve")
	b.Logf("host %.2f Gbit/s; geneve/host %.3f, vxlan/host %.3f, ipip/host %.3f, ipip/geneve %.3f (target >= 1)",
		med["host"].Gbps(), med["geneve"].Gbps()/med["host"].Gbps(), med["vxlan"].Gbps()/med["host"].Gbps(),
		med["ipip"].Gbps()/med["host"].Gbps(), med["ipip"].Gbps()/med["geneve"].Gbps())
}

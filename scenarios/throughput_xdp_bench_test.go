// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"net/netip"
	"path/filepath"
	"testing"

	"podpath/datapath/agent"
	"podpath/scenarios/probe"
	"podpath/topology/catalog"
)

// BenchmarkThroughputNodePortXDP measures a single TCP stream (iperf3) from the
// client ext through node1's NodePort to pod2a on node2 (SNAT), with the tc path
// (services-snat) and with XDP acceleration (xdp-snat), interleaved in the same run;
// xdp/tc is the ratio. Both topologies get the NIC-like wire of the xdp-nodeport step
// (topology.NodeSpec.NICModel: NAPI on node1's bridge port, complete checksums on
// the veths), so the two paths differ only in the hook.
//
//	go test -run XXX -bench ThroughputNodePortXDP -benchtime 1x ./scenarios/
func BenchmarkThroughputNodePortXDP(b *testing.B) {
	ctx, _, cpus := startThroughput(b)
	spec, err := catalog.Topology("l2-services-agent")
	if err != nil {
		b.Fatal(err)
	}
	var paths []*throughputPath
	var mtu int
	for _, c := range []struct{ name, config, verdict string }{{"tc", "services-snat", "VERDICT_REDIRECT"}, {"xdp", "xdp-snat", "VERDICT_REDIRECT"}} {
		// The xdp topology gets the NIC model from its config; the tc one is given it
		// in its spec, so the two paths differ only in the hook.
		sp := spec.Clone()
		for i := range sp.Nodes {
			sp.Nodes[i].NICModel = true
		}
		t, err := upSameNode(ctx, b, sp, c.config)
		if err != nil {
			b.Fatal(err)
		}
		n1, _ := t.Node("node1")
		pod, _ := t.Pod("pod2a")
		mtu = n1.Interfaces[0].MTU
		svc := agent.Service{Name: "iperf", Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.0.52"), Port: 5201,
			Protocol: "TCP", NodePort: 30201, Backends: []agent.ServiceBackend{{IP: pod.IP, Port: 5201}}}
		for _, node := range []string{"node1", "node2"} {
			cl := agent.NewClient(agent.Socket(filepath.Join(t.Dir(), "agents", node)))
			if err := cl.ServicesUpsert(ctx, []agent.Service{svc}); err != nil {
				b.Fatal(err)
			}
		}
		paths = append(paths, &throughputPath{name: c.name, what: "ext -> node1:30201 -> pod2a (" + c.config + ")", s: t, t: t,
			test:     probe.IPerf3Test{Client: "ext", Server: "pod2a", ServerIP: pod.IP, Connect: netip.AddrPortFrom(n1.InternalIP, 30201)},
			verdicts: []string{c.verdict}})
	}
	med := measurePaths(ctx, b, paths, "tc", cpus, mtu)
	b.ReportMetric(med["xdp"].Gbps()/med["tc"].Gbps(), "xdp/tc")
	b.Logf("NodePort SNAT single stream: xdp/tc %.3f", med["xdp"].Gbps()/med["tc"].Gbps())
}

// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/config/configs"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
	"podpath/topology/agentrun"
	"podpath/topology/catalog"
	"podpath/topology/netns"
	"podpath/topology/topotest"
)

var (
	throughputSeconds = flag.Int("throughput-seconds", 5, "duration of each iperf3 run of the throughput benchmarks")
	throughputRounds  = flag.Int("throughput-rounds", 3, "interleaved rounds of the throughput benchmarks (median reported)")
)

// BenchmarkThroughputSameNode measures a single TCP stream (iperf3) between two pods
// of one node with BPF host routing (bpf_redirect_peer) and with legacy host routing,
// against the limit: a plain veth pair between two namespaces. The three are up at
// once and measured in interleaved rounds; each metric is the median of the rounds.
// Client and server are pinned to CPUs 0 and 1. It runs once whatever b.N is.
//
//	go test -run XXX -bench ThroughputSameNode -benchtime 1x ./scenarios/ \
//	    [-throughput-seconds 5] [-throughput-rounds 3]
func BenchmarkThroughputSameNode(b *testing.B) {
	ctx, spec, cpus := startThroughput(b)
	r, err := spec.Resolve()
	if err != nil {
		b.Fatal(err)
	}
	mtu := r.Nodes[0].Pods[0].MTU

	veth, err := probe.VethPairUp(ctx, mtu)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = veth.Down(context.Background()) })
	peer, err := upSameNode(ctx, b, spec, "native-routing")
	if err != nil {
		b.Fatal(err)
	}
	legacy, err := upSameNode(ctx, b, spec, "native-routing-legacy")
	if err != nil {
		b.Fatal(err)
	}
	pod1b, _ := peer.Pod("pod1b")
	paths := []*throughputPath{
		{name: "veth", what: "plain veth pair", s: veth,
			test: probe.IPerf3Test{Client: veth.A.Member, Server: veth.B.Member, ServerIP: veth.B.Addr.Addr()}},
		{name: "redirect_peer", what: "pod1a -> pod1b, BPF host routing", s: peer, t: peer, verdicts: []string{"VERDICT_REDIRECT_PEER"},
			test: probe.IPerf3Test{Client: "pod1a", Server: "pod1b", ServerIP: pod1b.IP}},
		{name: "legacy", what: "pod1a -> pod1b, legacy host routing", s: legacy, t: legacy, verdicts: []string{"PASS_LEGACY_HOST_ROUTING"},
			test: probe.IPerf3Test{Client: "pod1a", Server: "pod1b", ServerIP: pod1b.IP}},
	}
	med := measurePaths(ctx, b, paths, "veth", cpus, mtu)
	ratioVeth := med["redirect_peer"].Gbps() / med["veth"].Gbps()
	ratioLegacy := med["redirect_peer"].Gbps() / med["legacy"].Gbps()
	b.ReportMetric(ratioVeth, "redirect_peer/veth")
	b.ReportMetric(ratioLegacy, "redirect_peer/legacy")
	b.Logf("redirect_peer/veth %.3f (target >= 0.9), redirect_peer/legacy %.3f (target > 1)", ratioVeth, ratioLegacy)
}

// BenchmarkThroughputCrossNode measures a single TCP stream from a pod on node1 to a pod
// on node2 with native routing, VXLAN and Geneve, against the limit: node1 to node2 over
// the same underlay, no pods. Same rounds, pinning and medians as the same-node one.
//
//	go test -run XXX -bench ThroughputCrossNode -benchtime 1x ./scenarios/
func BenchmarkThroughputCrossNode(b *testing.B) {
	ctx, spec, cpus := startThroughput(b)
	// The host-to-host limit gets a topology of its own: its traffic would fill the trace
	// ring buffer that proves the native stream's path.
	hosts, err := upSameNode(ctx, b, spec, "native-routing")
	if err != nil {
		b.Fatal(err)
	}
	native, err := upSameNode(ctx, b, spec, "native-routing")
	if err != nil {
		b.Fatal(err)
	}
	vxlan, err := upSameNode(ctx, b, spec, "vxlan")
	if err != nil {
		b.Fatal(err)
	}
	geneve, err := upSameNode(ctx, b, spec, "geneve")
	if err != nil {
		b.Fatal(err)
	}
	pod2a, _ := native.Pod("pod2a")
	node2, _ := native.Node("node2")
	pods := probe.IPerf3Test{Client: "pod1a", Server: "pod2a", ServerIP: pod2a.IP}
	paths := []*throughputPath{
		{name: "host", what: "node1 -> node2 over the underlay", s: hosts,
			test: probe.IPerf3Test{Client: "node1", Server: "node2", ServerIP: node2.InternalIP}},
		{name: "native", what: "pod1a -> pod2a, native routing", s: native, t: native, test: pods,
			verdicts: []string{"VERDICT_REDIRECT", "VERDICT_REDIRECT_NEIGH"}},
		{name: "vxlan", what: "pod1a -> pod2a, VXLAN", s: vxlan, t: vxlan, test: pods, verdicts: []string{"VERDICT_REDIRECT"}},
		{name: "geneve", what: "pod1a -> pod2a, Geneve", s: geneve, t: geneve, test: pods,
			verdicts: []string{"VERDICT_REDIRECT", "VERDICT_REDIRECT_NEIGH"}},
	}
	med := measurePaths(ctx, b, paths, "host", cpus, node2.Interfaces[0].MTU)
	for _, p := range []string{"native", "vxlan", "geneve"} {
		b.ReportMetric(med[p].Gbps()/med["host"].Gbps(), p+"/host")
	}
	b.Logf("native/host %.3f (target >= 0.9), vxlan/host %.3f and geneve/host %.3f (targets >= 0.7)",
		med["native"].Gbps()/med["host"].Gbps(), med["vxlan"].Gbps()/med["host"].Gbps(), med["geneve"].Gbps()/med["host"].Gbps())
}

// startThroughput is the start of both throughput benchmarks: it skips without root or
// iperf3, points PODPATH_AGENT at an agent built from this tree, and returns the
// benchmark's context, the l2-two-node-agent topology and the CPUs client and server
// are pinned to (none on a machine of one CPU).
func startThroughput(b *testing.B) (context.Context, *topology.Spec, []int) {
	b.Helper()
	testutil.RequireRoot(b)
	if _, err := exec.LookPath("iperf3"); err != nil {
		b.Skip("iperf3 not installed")
	}
	topotest.UseAgent(b)
	spec, err := catalog.Topology("l2-two-node-agent")
	if err != nil {
		b.Fatal(err)
	}
	var cpus []int
	if runtime.NumCPU() >= 2 {
		cpus = []int{0, 1}
	}
	return b.Context(), spec, cpus
}

// throughputPath is one path of a throughput benchmark.
type throughputPath struct {
	name, what string
	s          probe.Starter
	test       probe.IPerf3Test
	t          topology.Cluster
	verdicts   []string // node1 must trace the stream with one of these (none: no datapath)
	runs       []probe.ThroughputResult
}

// measurePaths runs every path for -throughput-seconds in -throughput-rounds
// interleaved rounds (the order rotates, so no path always goes first), checks node1
// traced each stream with the verdict meant, reports each median's Gbit/s, and logs a
// table of ratios to baseline.
func measurePaths(ctx context.Context, b *testing.B, paths []*throughputPath, baseline string, cpus []int, mtu int) map[string]probe.ThroughputResult {
	secs, rounds := *throughputSeconds, max(1, *throughputRounds)
	b.ResetTimer()
	for round := range rounds {
		for i := range paths {
			p := paths[(i+round)%len(paths)]
			p.test.Seconds, p.test.CPUs = secs, cpus
			res, err := p.test.Run(ctx, p.s)
			if err != nil {
				b.Fatalf("%s: %v", p.name, err)
			}
			p.runs = append(p.runs, res)
		}
	}
	b.StopTimer()
	for _, p := range paths {
		if p.t == nil {
			continue
		}
		verdicts, err := streamVerdicts(p.t, "node1", uint16(probe.IPerf3Port))
		if err != nil {
			b.Fatalf("%s: %v", p.name, err)
		}
		b.Logf("%s: trace records of the iperf3 stream on node1: %v", p.name, verdicts)
		if !slices.ContainsFunc(p.verdicts, func(v string) bool { return verdicts[v] > 0 }) {
			b.Fatalf("%s: no %v record for the iperf3 stream on node1: not the path meant", p.name, p.verdicts)
		}
	}
	med := map[string]probe.ThroughputResult{}
	for _, p := range paths {
		med[p.name] = median(p.runs)
		b.ReportMetric(med[p.name].Gbps(), p.name+"-Gbit/s")
	}
	b.ReportMetric(0, "ns/op")
	var tab strings.Builder
	fmt.Fprintf(&tab, "single TCP stream, %d rounds x %ds, MTU %d, client/server on CPUs %v of %d; median of rounds\n",
		rounds, secs, mtu, cpus, runtime.NumCPU())
	fmt.Fprintf(&tab, "%-14s %-36s %7s %9s %7s %5s %8s %8s  %s\n", "path", "", "Gbit/s", "x "+baseline, "retr", "mss", "cpu cli", "cpu srv", "rounds (Gbit/s)")
	for _, p := range paths {
		m := med[p.name]
		var each []string
		for _, r := range p.runs {
			each = append(each, fmt.Sprintf("%.2f", r.Gbps()))
		}
		fmt.Fprintf(&tab, "%-14s %-36s %7.2f %9.3f %7d %5d %7.0f%% %7.0f%%  %s\n", p.name, p.what, m.Gbps(),
			m.Gbps()/med[baseline].Gbps(), m.Retransmits, m.MSS, m.ClientCPU, m.ServerCPU, strings.Join(each, " "))
	}
	b.Log("\n" + tab.String())
	return med
}

// median returns the run with the median receiver throughput (the upper one of an
// even count).
func median(runs []probe.ThroughputResult) probe.ThroughputResult {
	s := slices.Clone(runs)
	slices.SortFunc(s, func(a, b probe.ThroughputResult) int { return cmp.Compare(a.BitsPerSecond, b.BitsPerSecond) })
	return s[len(s)/2]
}

// upSameNode brings up spec with agents configured by configs/<config>.yaml; the
// benchmark's cleanup tears it down and checks no namespace of it is left.
func upSameNode(ctx context.Context, b *testing.B, spec *topology.Spec, config string) (topology.Cluster, error) {
	t, err := netns.Up(ctx, spec)
	if err != nil {
		return nil, err
	}
	b.Cleanup(func() {
		if err := t.Down(context.WithoutCancel(ctx)); err != nil {
			b.Errorf("down %s: %v", t.Name(), err)
		}
		if left, err := nsutil.ListPrefix(t.Prefix()); err != nil {
			b.Error(err)
		} else if len(left) > 0 {
			b.Errorf("namespaces left after Down: %v", left)
		}
	})
	cfg, err := configs.Write(t.Dir(), config)
	if err != nil {
		return nil, err
	}
	if _, err := agentrun.Start(ctx, t, cfg); err != nil {
		return nil, err
	}
	return t, nil
}

// streamVerdicts drains node's trace ring buffer and counts the verdicts (with their
// pass reason) of TCP records to or from port. With monitor-aggregation none and no
// consumer the buffer holds the first records of the stream.
func streamVerdicts(t topology.Cluster, node string, port uint16) (map[string]int, error) {
	m, err := ebpf.LoadPinnedMap(scenarios.TraceEventsPath(t, node), nil)
	if err != nil {
		return nil, err
	}
	defer m.Close()
	rd, err := trace.NewReader(m)
	if err != nil {
		return nil, err
	}
	defer rd.Close()
	names, err := trace.DefaultNames()
	if err != nil {
		return nil, err
	}
	recs, err := rd.Drain()
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, r := range recs {
		if r.Pkt.IPProto != 6 || (r.Pkt.DstPort != port && r.Pkt.SrcPort != port) {
			continue
		}
		out[names.Verdict(r.Verdict)]++
		if r.PassReason != 0 {
			out[names.PassReason(r.PassReason)]++
		}
	}
	return out, nil
}

// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"podpath/datapath/agent"
	"podpath/datapath/config/configs"
	"podpath/internal/testutil"
	"podpath/topology"
	"podpath/topology/agentrun"
	"podpath/topology/netns"
	"podpath/topology/topotest"
)

// bgpBenchSpec is n nodes, ten to a segment, behind one router running BIRD as an iBGP
// route reflector (hold time 3 s), one pod per node, no static PodCIDR routes.
func bgpBenchSpec(n int) *topology.Spec {
	s := &topology.Spec{
		Name: fmt.Sprintf("bgp-bench-%d", n), PodNetwork: topology.PodNetworkAgent,
		BGP: &topology.BGPTopologySpec{HoldTime: 3, KeepaliveTime: 1},
	}
	r := topology.RouterSpec{Name: "r1", BGP: &topology.BGPSpec{ASN: 65000, RouteReflector: true}}
	for i := range (n + 9) / 10 {
		seg := fmt.Sprintf("seg%d", i)
		s.Segments = append(s.Segments, topology.SegmentSpec{Name: seg, CIDR: fmt.Sprintf("10.0.%d.0/24", i+1)})
		r.Interfaces = append(r.Interfaces, topology.InterfaceSpec{Segment: seg})
	}
	s.Routers = []topology.RouterSpec{r}
	for i := range n {
		s.Nodes = append(s.Nodes, topology.NodeSpec{
			Name: fmt.Sprintf("node%d", i+1), PodCIDR: fmt.Sprintf("10.244.%d.0/24", i+1),
			BGP:        &topology.BGPSpec{ASN: 65000},
			Interfaces: []topology.InterfaceSpec{{Segment: fmt.Sprintf("seg%d", i/10)}},
			Pods:       []topology.PodSpec{{Name: fmt.Sprintf("pod%d", i+1)}},
		})
	}
	return s
}

// benchPolicy is a node's peering policy toward the route reflector.
func benchPolicy(spec *topology.Spec, node string) agent.BGPPeeringPolicy {
	vr := agent.BGPVirtualRouter{LocalASN: 65000, ExportPodCIDR: true}
	for _, p := range spec.BGPNeighbors(node) {
		vr.Neighbors = append(vr.Neighbors, agent.BGPNeighbor{PeerAddress: p.Address.String() + "/32", PeerASN: p.ASN,
			HoldTimeSeconds: 3, KeepAliveTimeSeconds: 1, ConnectRetryTimeSeconds: 1})
	}
	return agent.BGPPeeringPolicy{VirtualRouters: []agent.BGPVirtualRouter{vr}}
}

// BenchmarkBGPConvergence measures, with 10 and 50 nodes, the time from a node's agent
// starting (it peers with the route reflector from its saved policy and announces its
// PodCIDR) until a ping from every other node reaches the pod on it: the route has
// crossed BIRD, every other agent installed it, and the datapath forwards. Before each
// round the node's agent is stopped and the benchmark waits until every other node's
// kernel dropped the route. Reported: ms/converge (the slowest node) and
// ms/first-node (the fastest).
func BenchmarkBGPConvergence(b *testing.B) {
	testutil.RequireRoot(b)
	topotest.UseAgent(b)
	for _, n := range []int{10, 50} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) { benchBGPConvergence(b, n) })
	}
}

func benchBGPConvergence(b *testing.B, n int) {
	ctx := b.Context()
	spec := bgpBenchSpec(n)
	t, err := netns.Up(ctx, spec)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := t.Down(context.WithoutCancel(ctx)); err != nil {
			b.Errorf("down %s: %v", t.Name(), err)
		}
	})
	cfg, err := configs.Write(t.Dir(), "bgp-native")
	if err != nil {
		b.Fatal(err)
	}
	agents, err := agentrun.Start(ctx, t, cfg)
	if err != nil {
		b.Fatal(err)
	}
	r := t.Spec()
	for _, node := range t.Nodes() {
		if err := agents.Client(node.Name).BGPPolicySet(ctx, benchPolicy(r, node.Name)); err != nil {
			b.Fatal(err)
		}
	}
	added := t.Nodes()[n-1]
	pod := added.Pods[0]
	others := t.Nodes()[:n-1]
	routed := func(node string, want bool) error {
		out, err := t.Exec(ctx, node, "ip", "route", "show", "exact", added.PodCIDR.String())
		if err != nil {
			return err
		}
		if has := strings.Contains(string(out), "proto bgp"); has != want {
			return fmt.Errorf("%s: route to %s present=%v, want %v: %q", node, added.PodCIDR, has, want, out)
		}
		return nil
	}
	// waitAll polls each(node) for every other node, 8 at a time, until it holds; it
	// returns each node's time since start.
	waitAll := func(start time.Time, limit time.Duration, each func(node string) error) ([]time.Duration, error) {
		took := make([]time.Duration, len(others))
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		sem := make(chan struct{}, 8)
		for i, o := range others {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sem <- struct{}{}
				defer func() { <-sem }()
				deadline := time.Now().Add(limit)
				for {
					err := each(o.Name)
					if err == nil {
						took[i] = time.Since(start)
						return
					}
					if time.Now().After(deadline) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			return nil, fmt.Errorf("%d of %d nodes: first: %w", len(errs), len(others), errs[0])
		}
		return took, nil
	}
	reachable := func(node string) error {
		if err := routed(node, true); err != nil {
			return err
		}
		_, err := t.Exec(ctx, node, "ping", "-c", "1", "-W", "0.2", pod.IP.String())
		return err
	}
	// Everything converged once before the rounds start.
	if _, err := waitAll(time.Now(), 90*time.Second, reachable); err != nil {
		b.Fatal(err)
	}
	var total, first time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := agents.Stop(added.Name, false); err != nil {
			b.Fatal(err)
		}
		if _, err := waitAll(time.Now(), 30*time.Second, func(node string) error { return routed(node, false) }); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		if err := agents.Start(ctx, added.Name); err != nil {
			b.Fatal(err)
		}
		took, err := waitAll(start, 60*time.Second, reachable)
		if err != nil {
			b.Fatal(err)
		}
		slowest, fastest := time.Duration(0), time.Hour
		for _, d := range took {
			slowest, fastest = max(slowest, d), min(fastest, d)
		}
		total += slowest
		first += fastest
		b.Logf("nodes=%d: %s's agent started, its pod %s reachable from all %d other nodes after %v (first after %v)",
			n, added.Name, pod.IP, len(others), slowest.Round(time.Millisecond), fastest.Round(time.Millisecond))
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/converge")
	b.ReportMetric(float64(first.Milliseconds())/float64(b.N), "ms/first-node")
}

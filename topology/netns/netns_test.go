// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"podpath/internal/nsutil"
)

// TestMain fails the run if a topology brought up by this test process outlives it.
func TestMain(m *testing.M) {
	code := m.Run()
	if os.Geteuid() == 0 {
		entries, _ := os.ReadDir(StateRoot)
		for _, e := range entries {
			if st, err := readState(e.Name()); err == nil && st.Owner.PID == os.Getpid() {
				fmt.Fprintf(os.Stderr, "leak: run %s (%s) still up after the tests\n", st.RunID, st.Name)
				_ = teardown(context.Background(), st.RunID, st.Namespaces, st.Processes, nil)
				code = 1
			}
		}
	}
	os.Exit(code)
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
	if _, err := exec.LookPath("ping"); err != nil {
		t.Skip("needs ping (iputils) inside the namespaces")
	}
}

func loadSpec(t *testing.T, path string) *topology.Spec {
	t.Helper()
	s, err := topology.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// upT brings spec up with b (the default backend when nil) and tears it down at cleanup.
func upT(t *testing.T, b *Backend, spec *topology.Spec) *Topology {
	t.Helper()
	if b == nil {
		b = &Backend{}
	}
	topo, err := b.up(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Down(context.Background()); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	return topo
}

func ping(t *testing.T, topo *Topology, from, to string, extra ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	argv := append([]string{"ping", "-c1", "-W2"}, extra...)
	out, err := topo.Exec(ctx, from, append(argv, to)...)
	return string(out), err
}

func pingAll(t *testing.T, topo *Topology) {
	t.Helper()
	for _, src := range topo.Pods() {
		for _, dst := range topo.Pods() {
			if _, err := ping(t, topo, src.Name, dst.IP.String()); err != nil {
				t.Errorf("pod %s -> pod %s (%s): %v", src.Name, dst.Name, dst.IP, err)
			}
		}
	}
}

// assertGone checks that nothing of run runID is left: no namespace, no state dir.
func assertGone(t *testing.T, runID string) {
	t.Helper()
	names, err := nsutil.List()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if strings.HasPrefix(n, nsPrefix(runID)) {
			t.Errorf("namespace %s still in %s", n, nsutil.NamedDir)
		}
	}
	if _, err := os.Stat(runDir(runID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir %s still there (%v)", runDir(runID), err)
	}
}

// Two nodes on one segment, two pods each: every pod reaches every pod.
func TestL2TwoNode(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	spec := loadSpec(t, "../testdata/l2-two-node.yaml")
	var lines []string
	b := &Backend{Progress: func(l string) { lines = append(lines, l) }}
	start := time.Now()
	topo := upT(t, b, spec)
	upTime := time.Since(start)
	if len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), "wiring segment lan") {
		t.Errorf("progress lines missing wiring step: %q", lines)
	}
	if len(topo.Pods()) != 4 {
		t.Fatalf("want 4 pods, got %d", len(topo.Pods()))
	}
	pingAll(t, topo)

	// Kernel state matches the resolved data.
	pod, _ := topo.Pod("pod1a")
	out, err := topo.Exec(context.Background(), "pod1a", "ip", "-o", "link", "show", "eth0")
	if err != nil || !strings.Contains(string(out), pod.MAC.String()) || !strings.Contains(string(out), "mtu 1500") {
		t.Errorf("pod1a eth0: want MAC %s MTU 1500, got %s (%v)", pod.MAC, out, err)
	}
	out, err = topo.Exec(context.Background(), "node1", "ip", "route", "show", pod.IP.String())
	if err != nil || !strings.Contains(string(out), "dev "+pod.HostVeth+" scope link") {
		t.Errorf("node1 route to pod1a: %s (%v)", out, err)
	}

	start = time.Now()
	if err := topo.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	downTime := time.Since(start)
	assertGone(t, topo.RunID())
	t.Logf("l2-two-node (%d namespaces): up %v, down %v", len(topo.Members()), upTime.Round(time.Microsecond), downTime.Round(time.Microsecond))
}

// node1 (segment a, MTU 1500) - r1 - node2 (segment b, MTU 9000).
func TestRoutedTwoNode(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	topo := upT(t, nil, loadSpec(t, "../testdata/routed-two-node.yaml"))
	pingAll(t, topo)
	assertDistinctPeerIndexes(t, topo)
	if out, err := topo.Exec(context.Background(), "b", "ip", "-o", "link", "show", "br0"); err != nil || !strings.Contains(string(out), "mtu 9000") {
		t.Errorf("bridge of segment b: want mtu 9000, got %s (%v)", out, err)
	}
	pod1, _ := topo.Pod("pod1")
	pod2, _ := topo.Pod("pod2")
	if pod1.MTU != 1500 || pod2.MTU != 9000 {
		t.Fatalf("pod MTUs %d/%d, want 1500/9000", pod1.MTU, pod2.MTU)
	}
	// A full 1500-byte packet with DF fits the whole path, both ways.
	if out, err := ping(t, topo, "pod1", pod2.IP.String(), "-M", "do", "-s", "1472"); err != nil {
		t.Errorf("DF 1472 pod1 -> pod2: %v\n%s", err, out)
	}
	if out, err := ping(t, topo, "pod2", pod1.IP.String(), "-M", "do", "-s", "1472"); err != nil {
		t.Errorf("DF 1472 pod2 -> pod1: %v\n%s", err, out)
	}
	// From the 9000 side a larger DF packet leaves pod2 and node2, and r1 answers it with
	// ICMP frag-needed (later pings hit the learned PMTU: "message too long").
	out, err := ping(t, topo, "pod2", pod1.IP.String(), "-M", "do", "-s", "2000")
	if err == nil {
		t.Fatalf("DF 2000 pod2 -> pod1 passed, want frag-needed:\n%s", out)
	}
	if !strings.Contains(out, "Frag needed") && !strings.Contains(out, "message too long") {
		t.Fatalf("DF 2000 pod2 -> pod1: want frag-needed, got %v\n%s", err, out)
	}
	if !strings.Contains(out, "mtu = 1500") && !strings.Contains(out, "mtu=1500") {
		t.Errorf("frag-needed should report mtu 1500:\n%s", out)
	}
}

// assertDistinctPeerIndexes checks that no veth shares its ifindex with its peer: the
// kernel would delay its link events by up to a second (see firstIfindex).
func assertDistinctPeerIndexes(t *testing.T, topo *Topology) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^(\d+): ([^@:]+)@if(\d+):`)
	for _, m := range topo.Members() {
		out, err := topo.Exec(context.Background(), m.Name, "ip", "-o", "link", "show", "type", "veth")
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range re.FindAllStringSubmatch(string(out), -1) {
			if f[1] == f[3] {
				t.Errorf("%s: veth %s has ifindex %s, same as its peer", m.Name, f[2], f[1])
			}
		}
	}
}

// Two routers in parallel: the nodes get an ECMP route and traffic flows.
func TestDiamondECMP(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	spec := &topology.Spec{
		Name:     "diamond",
		Segments: []topology.SegmentSpec{{Name: "a", CIDR: "10.0.1.0/24"}, {Name: "b", CIDR: "10.0.2.0/24"}},
		Routers: []topology.RouterSpec{
			{Name: "r1", Interfaces: []topology.InterfaceSpec{{Segment: "a"}, {Segment: "b"}}},
			{Name: "r2", Interfaces: []topology.InterfaceSpec{{Segment: "a"}, {Segment: "b"}}},
		},
		Nodes: []topology.NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []topology.InterfaceSpec{{Segment: "a"}}, Pods: []topology.PodSpec{{Name: "pod1"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []topology.InterfaceSpec{{Segment: "b"}}, Pods: []topology.PodSpec{{Name: "pod2"}}},
		},
		Clients: []topology.ClientSpec{{Name: "ext", Interfaces: []topology.InterfaceSpec{{Segment: "a"}}}},
	}
	topo := upT(t, nil, spec)
	out, err := topo.Exec(context.Background(), "node1", "ip", "route", "show", "10.244.2.0/24")
	if err != nil || strings.Count(string(out), "nexthop via") != 2 {
		t.Fatalf("node1 route to node2 pods: want 2 nexthops, got %s (%v)", out, err)
	}
	pingAll(t, topo)
	// The client reaches node2's segment (segment routes only).
	if _, err := ping(t, topo, "ext", "10.0.2.3"); err != nil {
		t.Errorf("client -> node2: %v", err)
	}
}

// Down removes every namespace and the state dir, kills started processes, and is
// idempotent; DownByName and Open find a run by name.
func TestDownRemovesEverything(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	topo := upT(t, nil, loadSpec(t, "../testdata/l2-two-node.yaml"))

	opened, err := Open(topo.Name())
	if err != nil {
		t.Fatal(err)
	}
	if opened.RunID() != topo.RunID() || len(opened.Pods()) != 4 {
		t.Fatalf("Open: got run %s with %d pods", opened.RunID(), len(opened.Pods()))
	}
	sleeper, err := opened.Start(context.Background(), "pod2b", "sleep", "300")
	if err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- sleeper.Wait() }()
	// A process not started through the topology, but living in one of its namespaces.
	stray := exec.Command("ip", "netns", "exec", topo.Members()[0].Netns, "sleep", "300")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	strayDone := make(chan error, 1)
	go func() { strayDone <- stray.Wait() }()
	time.Sleep(100 * time.Millisecond) // let ip netns exec switch namespaces

	if err := DownByName(context.Background(), topo.RunID()); err != nil {
		t.Fatal(err)
	}
	assertGone(t, topo.RunID())
	for name, ch := range map[string]chan error{"started": waited, "stray": strayDone} {
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Errorf("%s process survived Down", name)
		}
	}
	if err := topo.Down(context.Background()); err != nil {
		t.Errorf("second Down: %v", err)
	}
	if err := DownByName(context.Background(), topo.Name()); !errors.Is(err, topology.ErrNotFound) {
		t.Errorf("DownByName of a removed run: want topology.ErrNotFound, got %v", err)
	}
	if _, err := Open(topo.RunID()); !errors.Is(err, topology.ErrNotFound) {
		t.Errorf("Open of a removed run: want topology.ErrNotFound, got %v", err)
	}
}

// Up failing half-way, at any step, leaves nothing behind.
func TestUpFailureLeavesNothing(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	spec := loadSpec(t, "../testdata/routed-two-node.yaml")
	for _, step := range []string{"namespaces", "sysctls", "segments", "interfaces", "routes", "pods", "carrier"} {
		t.Run(step, func(t *testing.T) {
			var runID string
			injected := errors.New("injected failure")
			b := &Backend{failHook: func(id, s string) error {
				runID = id
				if _, err := os.Stat(runDir(id)); err != nil {
					t.Errorf("state dir missing during Up: %v", err)
				}
				if s == step {
					return injected
				}
				return nil
			}}
			topo, err := b.up(context.Background(), spec)
			if topo != nil {
				_ = topo.Down(context.Background())
			}
			if !errors.Is(err, injected) {
				t.Fatalf("want the injected error, got %v", err)
			}
			if !strings.Contains(err.Error(), "after "+step) {
				t.Errorf("error should name the step: %v", err)
			}
			assertGone(t, runID)
		})
	}
	// A cancelled context stops Up too.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Up(ctx, spec); !errors.Is(err, context.Canceled) {
		t.Fatalf("Up with a cancelled context: %v", err)
	}
}

// Two Ups of the same spec at once get distinct runs that both work.
func TestParallelUps(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	spec := loadSpec(t, "../testdata/l2-two-node.yaml")
	topos := make([]*Topology, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i := range topos {
		wg.Add(1)
		go func() {
			defer wg.Done()
			topos[i], errs[i] = Up(context.Background(), spec)
		}()
	}
	wg.Wait()
	for i, topo := range topos {
		if topo != nil {
			t.Cleanup(func() { _ = topo.Down(context.Background()) })
		}
		if errs[i] != nil {
			t.Fatalf("Up #%d: %v", i, errs[i])
		}
	}
	if topos[0].RunID() == topos[1].RunID() {
		t.Fatalf("both runs got id %s", topos[0].RunID())
	}
	for _, topo := range topos {
		pingAll(t, topo)
	}
	if _, err := Open(spec.Name); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("Open by a spec name with two runs: want ambiguous, got %v", err)
	}
}

// Clean removes a run whose owner died and orphan namespaces, and leaves live runs alone.
func TestClean(t *testing.T) {
	requireRoot(t)
	t.Parallel()
	spec := loadSpec(t, "../testdata/l2-two-node.yaml")
	live := upT(t, nil, spec)
	crashed := upT(t, nil, spec)
	detached := upT(t, &Backend{Detached: true}, spec)

	// Fake a dead owner: a process that has exited.
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	deadOwner := procRef{PID: gone.ProcessState.Pid(), Start: 1}
	if err := updateState(crashed.RunID(), func(st *state) { st.Owner = deadOwner }); err != nil {
		t.Fatal(err)
	}
	// An orphan namespace: a run prefix with no state dir.
	var orphan string
	for {
		var b [3]byte
		_, _ = rand.Read(b[:])
		id := hex.EncodeToString(b[:])
		if _, err := os.Stat(runDir(id)); errors.Is(err, os.ErrNotExist) {
			orphan = nsName(id, "node1")
			break
		}
	}
	if err := nsutil.Create(orphan); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(orphan) })

	removed, err := Clean(context.Background(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Clean removed %q", removed)
	has := func(s string) bool {
		for _, r := range removed {
			if r == s {
				return true
			}
		}
		return false
	}
	if !has(crashed.Name()) || !has(orphan) {
		t.Errorf("Clean should have removed %s and %s, removed %q", crashed.Name(), orphan, removed)
	}
	if has(live.Name()) || has(detached.Name()) {
		t.Errorf("Clean removed a live run: %q", removed)
	}
	assertGone(t, crashed.RunID())
	if _, err := os.Stat(nsutil.Path(orphan)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("orphan namespace %s still there", orphan)
	}
	for _, topo := range []*Topology{live, detached} {
		if _, err := os.Stat(runDir(topo.RunID())); err != nil {
			t.Errorf("live run %s lost its state: %v", topo.Name(), err)
		}
		if _, err := ping(t, topo, "pod1a", "10.244.2.11"); err != nil {
			t.Errorf("live run %s broken after Clean: %v", topo.Name(), err)
		}
	}
}

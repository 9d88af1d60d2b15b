// SPDX-License-Identifier: Apache-2.0

package k8swatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	ktesting "k8s.io/client-go/testing"

	"podpath/datapath/agent"
	"podpath/datapath/k8swatch/k8stest"
)

// memTarget is an agent in memory: deletes of what it lacks are *agent.InputError, as
// the agent answers them.
type memTarget struct {
	mu       sync.Mutex
	nodes    map[string]agent.Node
	services map[string]agent.Service
	upserts  int
	batches  int    // ServicesUpsert calls
	refuse   string // a service name to refuse, as an agent without kube-proxy replacement does
}

func newMemTarget() *memTarget {
	return &memTarget{nodes: map[string]agent.Node{}, services: map[string]agent.Service{}}
}

func (m *memTarget) NodeUpsert(_ context.Context, n agent.Node) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upserts++
	m.nodes[n.Name] = n
	return nil
}

func (m *memTarget) NodeDelete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.nodes[name]; !ok {
		return &agent.InputError{Err: fmt.Errorf("node %s: not found", name)}
	}
	delete(m.nodes, name)
	return nil
}

func (m *memTarget) NodeList(context.Context) ([]agent.Node, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.nodes)), nil
}

func (m *memTarget) ServiceUpsert(_ context.Context, s agent.Service) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.upserts++
	if s.Name == m.refuse {
		return &agent.InputError{Err: errors.New("kube-proxy-replacement is off")}
	}
	m.services[s.Name] = s
	return nil
}

// ServicesUpsert takes all or nothing, as the agent does.
func (m *memTarget) ServicesUpsert(_ context.Context, list []agent.Service) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.batches++
	for _, s := range list {
		if s.Name == m.refuse {
			return &agent.InputError{Err: errors.New("kube-proxy-replacement is off")}
		}
	}
	for _, s := range list {
		m.upserts++
		m.services[s.Name] = s
	}
	return nil
}

func (m *memTarget) ServiceDelete(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.services[name]; !ok {
		return &agent.InputError{Err: fmt.Errorf("service %s: not found", name)}
	}
	delete(m.services, name)
	return nil
}

func (m *memTarget) ServiceList(context.Context) ([]agent.Service, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Collect(maps.Values(m.services)), nil
}

// state returns the sorted node and service names and the upsert count.
func (m *memTarget) state() (nodes, services []string, upserts int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Sorted(maps.Keys(m.nodes)), slices.Sorted(maps.Keys(m.services)), m.upserts
}

func (m *memTarget) service(name string) agent.Service {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.services[name]
}

// startWatcher runs a watcher of node1 over a fake API server holding objs, with
// target, until the test ends.
func startWatcher(t *testing.T, target Target, objs ...runtime.Object) (*Watcher, *fake.Clientset) {
	t.Helper()
	cs := fake.NewClientset(objs...)
	w, err := New(Options{Client: cs, Node: "node1", Target: target, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	k8stest.Run(t, w)
	return w, cs
}

func wantNames(got []string, want ...string) error {
	if !slices.Equal(got, want) {
		return fmt.Errorf("have %v, want %v", got, want)
	}
	return nil
}

// TestWatcher drives a watcher through a fake API server: the first sync programs the
// cluster and deletes what it lacks; then node, service and endpoint slice changes
// reach the agent, and changes that change nothing for it do not.
func TestWatcher(t *testing.T) {
	target := newMemTarget()
	ctx := context.Background()
	_ = target.NodeUpsert(ctx, agent.Node{Name: "gone"})
	_ = target.ServiceUpsert(ctx, agent.Service{Name: "old.default.80-tcp"})
	webSlice := k8stest.Slice("web", []discoveryv1.EndpointPort{k8stest.EndpointPort("http", 8080, corev1.ProtocolTCP)}, k8stest.Endpoint("10.244.1.11", nil, nil, nil))
	_, cs := startWatcher(t, target,
		k8stest.Node("node1", "10.244.1.0/24", k8stest.InternalIP("10.0.0.1")),
		k8stest.Node("node2", "", k8stest.InternalIP("10.0.0.2")), // no PodCIDR yet
		k8stest.WebService(80), webSlice)

	nodes, services, upserts := target.state()
	if err := errors.Join(wantNames(nodes, "node1"), wantNames(services, "web.default.80-tcp")); err != nil {
		t.Fatalf("after the first sync: %v", err)
	}
	if target.batches != 1 {
		t.Errorf("the first sync sent %d ServicesUpsert batches, want 1 (every Service in one request)", target.batches)
	}
	if b := target.service("web.default.80-tcp").Backends; len(b) != 1 || !reflect.DeepEqual(b[0], backend("10.244.1.11", 8080, "")) {
		t.Errorf("backends = %+v", b)
	}

	// A node status change that changes nothing for the agent is not applied again.
	n1, _ := cs.CoreV1().Nodes().Get(ctx, "node1", metav1.GetOptions{})
	n1.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := cs.CoreV1().Nodes().UpdateStatus(ctx, n1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// node2 gets its PodCIDR.
	n2 := k8stest.Node("node2", "10.244.2.0/24", k8stest.InternalIP("10.0.0.2"))
	if _, err := cs.CoreV1().Nodes().Update(ctx, n2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "node2 registered", func() error { n, _, _ := target.state(); return wantNames(n, "node1", "node2") })
	time.Sleep(100 * time.Millisecond)
	if _, _, u := target.state(); u != upserts+1 {
		t.Errorf("%d upserts after one node change, want %d: the unchanged node1 was upserted again", u, upserts+1)
	}

	// An endpoint becomes ready in a new slice.
	more := k8stest.Slice("web", []discoveryv1.EndpointPort{k8stest.EndpointPort("http", 8080, corev1.ProtocolTCP)}, k8stest.Endpoint("10.244.2.10", new(true), nil, nil))
	more.Name = "web-y"
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, more, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "second backend", func() error {
		if b := target.service("web.default.80-tcp").Backends; len(b) != 2 {
			return fmt.Errorf("backends %+v", b)
		}
		return nil
	})
	// The first slice's endpoint starts terminating.
	webSlice.Endpoints[0] = k8stest.Endpoint("10.244.1.11", new(false), new(true), new(true))
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(ctx, webSlice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "terminating backend", func() error {
		if b := target.service("web.default.80-tcp").Backends; len(b) != 2 || b[0].State != "terminating" {
			return fmt.Errorf("backends %+v", b)
		}
		return nil
	})

	// The service port changes: the agent service of the old port goes.
	if _, err := cs.CoreV1().Services("default").Update(ctx, k8stest.WebService(8000), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "port change", func() error { _, s, _ := target.state(); return wantNames(s, "web.default.8000-tcp") })

	// A service the agent refuses is not retried in a loop.
	target.mu.Lock()
	target.refuse = "db.default.5432-tcp"
	target.mu.Unlock()
	db := k8stest.WebService(5432)
	db.Name, db.Spec.ClusterIP, db.Spec.ClusterIPs = "db", "10.96.0.11", []string{"10.96.0.11"}
	_, _, base := target.state()
	if _, err := cs.CoreV1().Services("default").Create(ctx, db, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "refused service tried", func() error {
		if _, _, u := target.state(); u == base {
			return errors.New("no upsert")
		}
		return nil
	})
	_, _, before := target.state()
	time.Sleep(500 * time.Millisecond)
	if _, _, after := target.state(); after != before {
		t.Errorf("refused service retried: %d upserts, then %d", before, after)
	}

	// Deletes.
	if err := cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().Nodes().Delete(ctx, "node1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "deletes", func() error {
		n, s, _ := target.state()
		return errors.Join(wantNames(n, "node2"), wantNames(s))
	})
}

func pod(name, nodeName, address string, phase corev1.PodPhase) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "scn", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: nodeName}, Status: corev1.PodStatus{Phase: phase},
	}
	if address != "" {
		p.Annotations = map[string]string{AnnotationAddress: address}
	}
	return p
}

// TestPodAddress: the annotation of a pod of this node, from the cache or, for a pod
// the cache does not have, from the API server.
func TestPodAddress(t *testing.T) {
	w, cs := startWatcher(t, newMemTarget(),
		pod("pod1a", "node1", "10.244.1.10", corev1.PodRunning),
		pod("pod1b", "node1", "10.244.1.11", corev1.PodPending),
		pod("done", "node1", "10.244.1.12", corev1.PodSucceeded),
		pod("bad", "node1", "ten", corev1.PodPending),
		pod("plain", "node1", "", corev1.PodPending),
		pod("pod2a", "node2", "10.244.2.10", corev1.PodRunning))
	ctx := context.Background()
	tests := []struct {
		name, uid string
		want      string // "": asks for none
		err       bool
	}{
		{"pod1a", "", "10.244.1.10", false},
		{"pod1b", "uid-pod1b", "10.244.1.11", false},
		{"plain", "", "", false},
		{"missing", "", "", false},
		{"bad", "", "", true},
		{"pod1a", "uid-of-a-replaced-pod", "", false},
	}
	for _, tt := range tests {
		got, ok, err := w.PodAddress(ctx, "scn", tt.name, tt.uid)
		var in *agent.InputError
		switch {
		case tt.err:
			if !errors.As(err, &in) {
				t.Errorf("%s: err %v, want an *agent.InputError", tt.name, err)
			}
		case err != nil || ok != (tt.want != "") || (ok && got != netip.MustParseAddr(tt.want)):
			t.Errorf("%s (uid %q): %v %v %v, want %q", tt.name, tt.uid, got, ok, err, tt.want)
		}
	}

	// A pod created a moment ago may not be in the cache yet: the API server has it.
	late := pod("late", "node1", "10.244.1.20", corev1.PodPending)
	if _, err := w.pods.Pods("scn").Get("late"); err == nil {
		t.Fatal("late pod is in the cache before it exists")
	}
	if _, err := cs.CoreV1().Pods("scn").Create(ctx, late, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if got, ok, err := w.PodAddress(ctx, "scn", "late", ""); err != nil || !ok || got != netip.MustParseAddr("10.244.1.20") {
		t.Errorf("late pod: %v %v %v", got, ok, err)
	}

	k8stest.Eventually(t, "reserved", func() error {
		got := w.Reserved()
		slices.SortFunc(got, netip.Addr.Compare)
		want := []netip.Addr{netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.11"), netip.MustParseAddr("10.244.1.20")}
		if !slices.Equal(got, want) {
			return fmt.Errorf("Reserved() = %v, want %v (this node's pods that run or will)", got, want)
		}
		return nil
	})
}

// TestPodAddressAPIDown: an API server that fails is "try again later" for CNI ADD.
func TestPodAddressAPIDown(t *testing.T) {
	w, cs := startWatcher(t, newMemTarget())
	cs.PrependReactor("get", "pods", func(ktesting.Action) (bool, runtime.Object, error) {
		return true, nil, errors.New("connection refused")
	})
	if _, _, err := w.PodAddress(context.Background(), "scn", "x", ""); !errors.Is(err, agent.ErrUnavailable) {
		t.Errorf("err = %v, want agent.ErrUnavailable", err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"podpath/datapath/agent"
	"podpath/datapath/config/configs"
	"podpath/datapath/k8swatch"
	"podpath/datapath/k8swatch/k8stest"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
	"podpath/topology"
	"podpath/topology/agentrun"
	"podpath/topology/topotest"
)

// echoServer answers the first line of every TCP connection on port with
// "<pod>: <line>", from inside the pod's namespace, until the test ends.
func echoServer(t *testing.T, topo topology.Cluster, pod string, port int) {
	t.Helper()
	m, err := topo.Member(pod)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := nsutil.ServeTCP(m.NsPath, fmt.Sprintf(":%d", port), func(c net.Conn) {
		r := bufio.NewReader(c)
		line, _ := r.ReadString('\n')
		fmt.Fprintf(c, "%s: %s", pod, line)
		// The client closes first, so its port stays in TIME_WAIT and the next
		// connection is a new flow, not a reuse of a conntrack entry.
		_, _ = io.Copy(io.Discard, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
}

// dial connects from pod to addr, sends a line and returns who answered.
func dial(topo topology.Cluster, pod string, addr netip.AddrPort) (string, error) {
	m, err := topo.Member(pod)
	if err != nil {
		return "", err
	}
	var c net.Conn
	if err := nsutil.Do(m.NsPath, func() (err error) { c, err = net.DialTimeout("tcp", addr.String(), 2*time.Second); return err }); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := fmt.Fprintln(c, "hello"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", err
	}
	who, rest, _ := strings.Cut(strings.TrimSpace(line), ": ")
	if rest != "hello" {
		return "", fmt.Errorf("answer %q", line)
	}
	return who, nil
}

// TestWatcherWithAgent feeds a real agent (two-node topology, kube-proxy replacement)
// from a fake API server through its API socket, the way the agent's own watcher feeds
// it in-process: the first sync deletes a service the cluster does not have, the
// cluster's Service reaches the agent and a pod gets answers through its cluster IP,
// an endpoint that stops being ready stops getting new connections, and node and
// service deletes reach the agent.
func TestWatcherWithAgent(t *testing.T) {
	testutil.RequireRoot(t)
	topotest.UseAgent(t)
	ctx := t.Context()
	topo := topotest.Up(t, "l2-services-agent", "k8swatch", true)
	cfg, err := configs.Write(topo.Dir(), "services-snat")
	if err != nil {
		t.Fatal(err)
	}
	agents, err := agentrun.Start(ctx, topo, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := agents.Client("node1")
	if err := c.ServiceUpsert(ctx, agent.Service{Name: "stale", Type: "ClusterIP", ClusterIP: netip.MustParseAddr("10.96.0.99"), Port: 80, Protocol: "TCP"}); err != nil {
		t.Fatal(err)
	}

	ip := func(pod string) string {
		p, err := topo.Pod(pod)
		if err != nil {
			t.Fatal(err)
		}
		return p.IP.String()
	}
	var objs []*corev1.Node
	for _, n := range topo.Nodes() {
		objs = append(objs, k8stest.Node(n.Name, n.PodCIDR.String(), k8stest.InternalIP(n.InternalIP.String())))
	}
	svc := k8stest.WebService(80)
	svc.Spec.Type, svc.Spec.Ports[0].NodePort = corev1.ServiceTypeNodePort, 30080
	webSlice := k8stest.Slice("web", []discoveryv1.EndpointPort{k8stest.EndpointPort("http", 8080, corev1.ProtocolTCP)},
		k8stest.Endpoint(ip("pod1b"), nil, nil, nil), k8stest.Endpoint(ip("pod2a"), new(true), nil, nil))
	// A watcher of node1 over a fake API server, feeding the agent of node1.
	cs := fake.NewClientset(objs[0], objs[1], svc, webSlice)
	w, err := k8swatch.New(k8swatch.Options{Client: cs, Node: "node1", Target: c, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	k8stest.Run(t, w)

	services, err := c.ServiceList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(services) != 1 || services[0].Name != "web.default.80-tcp" || len(services[0].Backends) != 2 || services[0].NodePort != 30080 {
		t.Fatalf("agent services after the first sync: %+v", services)
	}
	echoServer(t, topo, "pod1b", 8080)
	echoServer(t, topo, "pod2a", 8080)
	vip := netip.AddrPortFrom(netip.MustParseAddr("10.96.0.10"), 80)
	seen := map[string]bool{}
	for range 8 {
		who, err := dial(topo, "pod1a", vip)
		if err != nil {
			t.Fatalf("pod1a -> %s: %v", vip, err)
		}
		seen[who] = true
	}
	if !seen["pod1b"] && !seen["pod2a"] {
		t.Errorf("answers from %v, want the backends", seen)
	}

	// pod2a stops being ready: new connections go to pod1b only.
	webSlice.Endpoints[1] = k8stest.Endpoint(ip("pod2a"), new(false), new(false), new(false))
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Update(ctx, webSlice, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "pod2a removed from the agent's backends", func() error {
		s, err := c.ServiceList(ctx)
		if err != nil || len(s) != 1 || len(s[0].Backends) != 1 || s[0].Backends[0].IP.String() != ip("pod1b") {
			return fmt.Errorf("services %+v, %v", s, err)
		}
		return nil
	})
	// GET /v1/services shows the desired state, which the agent saves before it
	// programs the maps: the datapath follows a moment later.
	k8stest.Eventually(t, "new connections only to pod1b", func() error {
		for range 6 {
			if who, err := dial(topo, "pod1a", vip); err != nil || who != "pod1b" {
				return fmt.Errorf("pod1a -> %s after pod2a left: %q, %v; want pod1b", vip, who, err)
			}
		}
		return nil
	})

	// A third node joins and leaves; the service goes.
	if _, err := cs.CoreV1().Nodes().Create(ctx, k8stest.Node("node3", "10.244.3.0/24", k8stest.InternalIP("10.0.0.99")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "node3 registered", func() error {
		ns, err := c.NodeList(ctx)
		if !slices.ContainsFunc(ns, func(n agent.Node) bool {
			return n.Name == "node3" && n.IP == netip.MustParseAddr("10.0.0.99") && n.PodCIDR == netip.MustParsePrefix("10.244.3.0/24")
		}) {
			return fmt.Errorf("nodes %+v, %v", ns, err)
		}
		return nil
	})
	if err := errors.Join(cs.CoreV1().Nodes().Delete(ctx, "node3", metav1.DeleteOptions{}),
		cs.CoreV1().Services("default").Delete(ctx, "web", metav1.DeleteOptions{})); err != nil {
		t.Fatal(err)
	}
	k8stest.Eventually(t, "node3 and the service gone", func() error {
		ns, err1 := c.NodeList(ctx)
		ss, err2 := c.ServiceList(ctx)
		if len(ns) != 2 || len(ss) != 0 {
			return fmt.Errorf("nodes %+v, services %+v, %v", ns, ss, errors.Join(err1, err2))
		}
		return nil
	})
	if st, err := c.Status(ctx); err != nil || len(st.Problems) != 0 {
		t.Errorf("agent problems: %v %v", st.Problems, err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package k8stest

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Node is a node named name with podCIDR as its only pod CIDR (none if empty) and
// addrs as its status addresses.
func Node(name, podCIDR string, addrs ...corev1.NodeAddress) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.NodeStatus{Addresses: addrs}}
	if podCIDR != "" {
		n.Spec.PodCIDR, n.Spec.PodCIDRs = podCIDR, []string{podCIDR}
	}
	return n
}

// InternalIP is a node's InternalIP address ip.
func InternalIP(ip string) corev1.NodeAddress {
	return corev1.NodeAddress{Type: corev1.NodeInternalIP, Address: ip}
}

// WebService is the ClusterIP Service default/web at 10.96.0.10 with one TCP port
// "http" on port.
func WebService(port int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, ClusterIP: "10.96.0.10", ClusterIPs: []string{"10.96.0.10"},
			Ports: []corev1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: port}}},
	}
}

// Slice is the IPv4 EndpointSlice default/<svc>-x of Service svc with ports and eps.
func Slice(svc string, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: svc + "-x", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4, Ports: ports, Endpoints: eps,
	}
}

// Endpoint is an endpoint at ip with the given conditions (nil: not set).
func Endpoint(ip string, ready, serving, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Serving: serving, Terminating: terminating}}
}

// EndpointPort is an EndpointSlice port named name.
func EndpointPort(name string, port int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: new(name), Port: new(port), Protocol: new(proto)}
}

// Watcher is what Run needs of a k8swatch.Watcher (this package cannot name that
// type: k8swatch's own tests import it).
type Watcher interface {
	Run(ctx context.Context) error
	Synced() <-chan struct{}
}

// Run runs w until the test ends, fails the test if w.Run returns an error, and
// waits up to 10 seconds for w's first sync.
func Run(t *testing.T, w Watcher) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("watcher: %v", err)
		}
	})
	select {
	case <-w.Synced():
	case <-time.After(10 * time.Second):
		t.Fatal("watcher did not sync")
	}
}

// Eventually polls cond every 20 ms until it returns nil, and fails the test with
// what and cond's last error after 10 seconds.
func Eventually(t *testing.T, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

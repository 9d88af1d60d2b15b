// SPDX-License-Identifier: Apache-2.0

package k8swatch

import (
	"context"
	"fmt"
	"net/netip"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"podpath/datapath/agent"
)

// AnnotationAddress on a pod is the address it asks for; the kind backend sets it on
// the scenario pods to their topology addresses (kind.AnnotationAddress).
const AnnotationAddress = "podpath.io/address"

// PodAddress returns the address pod namespace/name asks for in its
// podpath.io/address annotation. It reads the cache of this node's pods, and the API
// server when the pod is not there yet or is another pod of that name (uid differs).
// A pod the API server does not know asks for nothing; an API server that does not
// answer is agent.ErrUnavailable (CNI: try again later), an annotation that is not an
// IPv4 address an *agent.InputError.
func (w *Watcher) PodAddress(ctx context.Context, namespace, name, uid string) (netip.Addr, bool, error) {
	p, err := w.pods.Pods(namespace).Get(name)
	if err != nil || (uid != "" && p.UID != types.UID(uid)) {
		p, err = w.opts.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return netip.Addr{}, false, nil
		}
		if err != nil {
			return netip.Addr{}, false, fmt.Errorf("get pod %s/%s: %v: %w", namespace, name, err, agent.ErrUnavailable)
		}
		if uid != "" && p.UID != types.UID(uid) {
			return netip.Addr{}, false, nil // the sandbox is of a pod that was replaced
		}
	}
	return podAddress(p)
}

func podAddress(p *corev1.Pod) (netip.Addr, bool, error) {
	s, ok := p.Annotations[AnnotationAddress]
	if !ok {
		return netip.Addr{}, false, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return netip.Addr{}, false, &agent.InputError{Err: fmt.Errorf("pod %s/%s: annotation %s: %q is not an IPv4 address", p.Namespace, p.Name, AnnotationAddress, s)}
	}
	return a, true, nil
}

// PodLabels returns pod namespace/name's labels with its namespace as
// io.kubernetes.pod.namespace, as Cilium derives identities (agent.PodLabeler).
func (w *Watcher) PodLabels(ctx context.Context, namespace, name string) (map[string]string, error) {
	p, err := w.pods.Pods(namespace).Get(name)
	if err != nil {
		if p, err = w.opts.Client.CoreV1().Pods(namespace).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return nil, fmt.Errorf("get pod %s/%s: %w", namespace, name, err)
		}
	}
	out := map[string]string{"io.kubernetes.pod.namespace": namespace}
	for k, v := range p.Labels {
		out[k] = v
	}
	return out, nil
}

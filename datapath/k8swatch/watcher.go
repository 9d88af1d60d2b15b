// SPDX-License-Identifier: Apache-2.0

package k8swatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"podpath/datapath/agent"
)

// Target is what the watcher drives: the agent's own operations (*agent.Agent, in the
// agent's process) or its API (*agent.Client); both have these methods.
type Target interface {
	NodeUpsert(ctx context.Context, n agent.Node) error
	NodeDelete(ctx context.Context, name string) error
	NodeList(ctx context.Context) ([]agent.Node, error)
	ServiceUpsert(ctx context.Context, s agent.Service) error
	ServicesUpsert(ctx context.Context, list []agent.Service) error
	ServiceDelete(ctx context.Context, name string) error
	ServiceList(ctx context.Context) ([]agent.Service, error)
}

var (
	_ Target = (*agent.Agent)(nil)
	_ Target = (*agent.Client)(nil)
)

// Options configure a Watcher.
type Options struct {
	Client kubernetes.Interface
	// Node is this node's name: only its pods are watched (for their addresses).
	Node   string
	Target Target
	Log    *slog.Logger
}

// Watcher keeps the agent's nodes and services in line with the cluster's and answers
// which address a pod of this node asks for (agent.PodAddresses).
//
// Kubernetes is the source of truth: after the first sync, nodes and services the agent
// has and the cluster does not are deleted, and from then on every change is applied.
type Watcher struct {
	opts     Options
	shared   informers.SharedInformerFactory
	local    informers.SharedInformerFactory // pods of this node
	nodes    corelisters.NodeLister
	services corelisters.ServiceLister
	slices   discoverylisters.EndpointSliceLister
	pods     corelisters.PodLister
	queue    workqueue.TypedRateLimitingInterface[string]
	synced   chan struct{}

	// Touched by the one worker only (and by the first sync before it starts).
	nodeSeen map[string]agent.Node      // as last upserted
	svcSeen  map[string]agent.Service   // as last upserted, by agent name
	owned    map[string]map[string]bool // service key -> agent service names
}

var _ agent.PodAddresses = (*Watcher)(nil)

// Queue keys: node/NAME and service/NAMESPACE/NAME.
const (
	nodeKey    = "node/"
	serviceKey = "service/"
)

// New sets the informers up; Run starts them.
func New(opts Options) (*Watcher, error) {
	if opts.Client == nil || opts.Target == nil || opts.Node == "" {
		return nil, errors.New("k8s watcher: client, target and node are required")
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	w := &Watcher{
		opts:   opts,
		shared: informers.NewSharedInformerFactory(opts.Client, 0),
		local: informers.NewSharedInformerFactoryWithOptions(opts.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", opts.Node).String()
		})),
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](100*time.Millisecond, 30*time.Second),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "podpath-k8s"}),
		synced:   make(chan struct{}),
		nodeSeen: map[string]agent.Node{},
		svcSeen:  map[string]agent.Service{},
		owned:    map[string]map[string]bool{},
	}
	nodes := w.shared.Core().V1().Nodes()
	services := w.shared.Core().V1().Services()
	slices := w.shared.Discovery().V1().EndpointSlices()
	pods := w.local.Core().V1().Pods()
	w.nodes, w.services, w.slices, w.pods = nodes.Lister(), services.Lister(), slices.Lister(), pods.Lister()
	enqueue := func(prefix string) cache.ResourceEventHandlerFuncs {
		add := func(obj any) {
			if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				w.queue.Add(prefix + k)
			}
		}
		return cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, obj any) { add(obj) }, DeleteFunc: add}
	}
	sliceEvent := func(obj any) {
		if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = t.Obj
		}
		if sl, ok := obj.(*discoveryv1.EndpointSlice); ok && sl.Labels[discoveryv1.LabelServiceName] != "" {
			w.queue.Add(serviceKey + sl.Namespace + "/" + sl.Labels[discoveryv1.LabelServiceName])
		}
	}
	for _, reg := range []struct {
		inf cache.SharedIndexInformer
		h   cache.ResourceEventHandler
	}{
		{nodes.Informer(), enqueue(nodeKey)},
		{services.Informer(), enqueue(serviceKey)},
		{slices.Informer(), cache.ResourceEventHandlerFuncs{AddFunc: sliceEvent, UpdateFunc: func(_, o any) { sliceEvent(o) }, DeleteFunc: sliceEvent}},
		{pods.Informer(), cache.ResourceEventHandlerFuncs{}},
	} {
		if _, err := reg.inf.AddEventHandler(reg.h); err != nil {
			return nil, fmt.Errorf("k8s watcher: %w", err)
		}
	}
	return w, nil
}

// Synced is closed once the caches are filled and the agent holds the cluster's nodes
// and services.
func (w *Watcher) Synced() <-chan struct{} { return w.synced }

// Run fills the caches, brings the agent in line with the cluster (deleting what the
// cluster no longer has), then applies every change until ctx ends.
func (w *Watcher) Run(ctx context.Context) error {
	defer w.queue.ShutDown()
	w.shared.Start(ctx.Done())
	w.local.Start(ctx.Done())
	defer w.shared.Shutdown()
	defer w.local.Shutdown()
	for _, f := range []informers.SharedInformerFactory{w.shared, w.local} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				return fmt.Errorf("k8s watcher: %v cache did not sync: %w", typ, context.Cause(ctx))
			}
		}
	}
	if err := w.initialSync(ctx); err != nil {
		w.opts.Log.Warn("k8s first sync", "err", err)
	}
	close(w.synced)
	w.opts.Log.Info("k8s watcher synced", "nodes", len(w.nodeSeen), "services", len(w.svcSeen))
	go func() {
		<-ctx.Done()
		w.queue.ShutDown()
	}()
	for w.next(ctx) {
	}
	return nil
}

// next processes one queued key; false once the queue is shut down.
func (w *Watcher) next(ctx context.Context) bool {
	key, shutdown := w.queue.Get()
	if shutdown {
		return false
	}
	defer w.queue.Done(key)
	if err := w.sync(ctx, key); err != nil {
		w.opts.Log.Warn("k8s sync, retrying", "key", key, "err", err, "attempt", w.queue.NumRequeues(key)+1)
		w.queue.AddRateLimited(key)
		return true
	}
	w.queue.Forget(key)
	return true
}

func (w *Watcher) sync(ctx context.Context, key string) error {
	if name, ok := strings.CutPrefix(key, nodeKey); ok {
		return w.syncNode(ctx, name)
	}
	if k, ok := strings.CutPrefix(key, serviceKey); ok {
		return w.syncService(ctx, k)
	}
	return nil
}

// initialSync upserts every node and service of the cluster, then deletes the nodes
// and services the agent has that the cluster does not.
func (w *Watcher) initialSync(ctx context.Context) error {
	var errs []error
	nodes, err := w.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	inCluster := map[string]bool{}
	for _, n := range nodes {
		inCluster[n.Name] = true
		errs = append(errs, w.syncNode(ctx, n.Name))
	}
	services, err := w.services.List(labels.Everything())
	if err != nil {
		return err
	}
	wanted := map[string]bool{}
	errs = append(errs, w.upsertAll(ctx, services))
	for _, s := range services {
		for name := range w.owned[s.Namespace+"/"+s.Name] {
			wanted[name] = true
		}
	}
	have, err := w.opts.Target.NodeList(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, n := range have {
		if !inCluster[n.Name] {
			w.opts.Log.Info("k8s: node gone from the cluster", "node", n.Name)
			errs = append(errs, ignoreInput(w.opts.Target.NodeDelete(ctx, n.Name)))
		}
	}
	svcs, err := w.opts.Target.ServiceList(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, s := range svcs {
		if !wanted[s.Name] {
			w.opts.Log.Info("k8s: service gone from the cluster", "service", s.Name)
			errs = append(errs, ignoreInput(w.opts.Target.ServiceDelete(ctx, s.Name)))
		}
	}
	return errors.Join(errs...)
}

// syncNode upserts or deletes one node. A node that is not ready for the agent (no
// PodCIDR yet) is left as the agent has it until it is.
func (w *Watcher) syncNode(ctx context.Context, name string) error {
	n, err := w.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		delete(w.nodeSeen, name)
		return ignoreInput(w.opts.Target.NodeDelete(ctx, name))
	}
	if err != nil {
		return err
	}
	an, err := NodeFromK8s(n)
	if err != nil {
		w.opts.Log.Info("k8s: node not ready for the agent", "err", err)
		return nil
	}
	if seen, ok := w.nodeSeen[name]; ok && reflect.DeepEqual(seen, an) {
		return nil
	}
	if err := w.opts.Target.NodeUpsert(ctx, an); err != nil {
		return w.refused(err, "node", name)
	}
	w.nodeSeen[name] = an
	return nil
}

// upsertAll gives the agent every cluster Service in one request (ServicesUpsert:
// its Maglev tables are installed together, seconds for thousands of services instead
// of a grace period each). When the agent refuses the batch, the Services go one by
// one, so only the invalid ones are left out.
func (w *Watcher) upsertAll(ctx context.Context, services []*corev1.Service) error {
	var batch []agent.Service
	owned := map[string]map[string]bool{}
	for _, svc := range services {
		key := svc.Namespace + "/" + svc.Name
		want, err := w.wanted(key)
		if err != nil {
			return err
		}
		owned[key] = map[string]bool{}
		for _, s := range want {
			owned[key][s.Name] = true
		}
		batch = append(batch, want...)
	}
	var in *agent.InputError
	switch err := w.opts.Target.ServicesUpsert(ctx, batch); {
	case errors.As(err, &in):
		w.opts.Log.Info("k8s: the agent refused the services as a batch; one by one", "err", err)
		var errs []error
		for _, svc := range services {
			errs = append(errs, w.syncService(ctx, svc.Namespace+"/"+svc.Name))
		}
		return errors.Join(errs...)
	case err != nil:
		return err
	}
	for _, s := range batch {
		w.svcSeen[s.Name] = s
	}
	for key, names := range owned {
		if len(names) > 0 {
			w.owned[key] = names
		}
	}
	return nil
}

// wanted are the agent services of Service key (namespace/name): none when it is gone.
func (w *Watcher) wanted(key string) ([]agent.Service, error) {
	ns, name, _ := strings.Cut(key, "/")
	svc, err := w.services.Services(ns).Get(name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, err
	}
	eps, err := w.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: name}))
	if err != nil {
		return nil, err
	}
	want, notes := ServicesFromK8s(svc, eps)
	for _, n := range notes {
		w.opts.Log.Info("k8s: " + n)
	}
	for i := range want {
		for _, warning := range want[i].Warnings() {
			w.opts.Log.Warn("k8s: " + warning)
		}
	}
	return want, nil
}

// syncService upserts the agent services of one Service (key namespace/name) and
// deletes those it no longer gives (ports removed, Service deleted).
func (w *Watcher) syncService(ctx context.Context, key string) error {
	want, err := w.wanted(key)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	var errs []error
	for _, s := range want {
		names[s.Name] = true
		if seen, ok := w.svcSeen[s.Name]; ok && reflect.DeepEqual(seen, s) {
			continue
		}
		if err := w.opts.Target.ServiceUpsert(ctx, s); err != nil {
			errs = append(errs, w.refused(err, "service", s.Name))
			continue
		}
		w.svcSeen[s.Name] = s
	}
	for old := range w.owned[key] {
		if !names[old] {
			delete(w.svcSeen, old)
			errs = append(errs, ignoreInput(w.opts.Target.ServiceDelete(ctx, old)))
		}
	}
	if len(names) == 0 {
		delete(w.owned, key)
	} else {
		w.owned[key] = names
	}
	return errors.Join(errs...)
}

// refused logs what the agent refuses as invalid (retrying would not help: the next
// change of the object tries again) and returns other errors, which are retried.
func (w *Watcher) refused(err error, kind, name string) error {
	var in *agent.InputError
	if errors.As(err, &in) {
		w.opts.Log.Warn("k8s: the agent refuses "+kind, kind, name, "err", err)
		return nil
	}
	return err
}

// ignoreInput drops the agent's "not found" answers to deletes: what is gone is gone.
func ignoreInput(err error) error {
	var in *agent.InputError
	if errors.As(err, &in) {
		return nil
	}
	return err
}

// Reserved returns the addresses the pods of this node ask for in their
// podpath.io/address annotation (pods that have finished excepted).
func (w *Watcher) Reserved() []netip.Addr {
	pods, err := w.pods.List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, p := range pods {
		if p.Spec.NodeName != w.opts.Node || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		if a, ok, err := podAddress(p); err == nil && ok {
			out = append(out, a)
		}
	}
	return out
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"podpath/datapath/kvstore"
	"podpath/datapath/maps"
)

// identityInit is Cilium's reserved identity of an endpoint still waiting for its own.
const identityInit = 5

// identityGCInterval is how often an agent collects unused identities (Cilium's
// identity-gc-interval defaults to 15 minutes; shorter here, as in tests).
const identityGCInterval = time.Minute

// kvstoreMode says whether the config asks for etcd (kvstore: etcd).
func (a *Agent) kvstoreMode() bool { return a.cfg.KVStore == "etcd" }

// kvIdentities says whether identities come from etcd (identity-allocation-mode: kvstore).
func (a *Agent) kvIdentities() bool {
	return a.kvstoreMode() && a.cfg.IdentityAllocationMode == "kvstore"
}

func (a *Agent) clusterName() string {
	if a.opts.ClusterName != "" {
		return a.opts.ClusterName
	}
	if a.cfg.ClusterName != "" {
		return a.cfg.ClusterName
	}
	return "default"
}

// clusterID is cluster-id: the flag's, else the config's (0: no mesh).
func (a *Agent) clusterID() uint32 {
	if a.opts.ClusterID != 0 {
		return a.opts.ClusterID
	}
	if n, err := strconv.ParseUint(strings.TrimSpace(a.cfg.Raw["cluster-id"]), 10, 8); err == nil {
		return uint32(n)
	}
	return 0
}

// etcdConfig reads the etcd-config file given to the agent, or the config's inline key.
func (a *Agent) etcdConfig() (*kvstore.EtcdConfig, error) {
	if a.opts.EtcdConfig != "" {
		data, err := os.ReadFile(a.opts.EtcdConfig)
		if err != nil {
			return nil, fmt.Errorf("kvstore: %w", err)
		}
		return kvstore.ParseEtcdConfig(data)
	}
	inline := a.cfg.EtcdConfig
	if strings.TrimSpace(inline) == "" {
		return nil, fmt.Errorf("kvstore: etcd: no etcd-config in the cilium-config and no --etcd-config file")
	}
	return kvstore.ParseEtcdConfig([]byte(inline))
}

// startKVStore connects to etcd (an etcd that is down is no error: the agent says so
// in its status and resyncs when it is back), registers the node, its endpoints and
// services, and watches the other agents' endpoints into the ipcache.
func (a *Agent) startKVStore(ctx context.Context) error {
	if !a.kvstoreMode() {
		return nil
	}
	cfg, err := a.etcdConfig()
	var kv *kvstore.Store
	if err == nil {
		kv, err = kvstore.New(cfg, kvstore.Options{Node: a.opts.Node, NodeIP: a.dp.nodeIP.String(), Cluster: a.clusterName(), ClusterID: a.clusterID(), Log: a.opts.Log})
	}
	if err != nil {
		// A config that names an etcd this machine cannot use (the seed's, with its
		// certificate paths): Cilium would wait for it; podpath runs without a kvstore
		// and says so, in the log and as a problem in status: identities then come
		// from label hashes and no endpoint is shared through etcd.
		msg := fmt.Sprintf("kvstore etcd not usable, running without it (identities from label hashes, nothing shared through etcd): %v", err)
		a.opts.Log.Error("kvstore", "err", err)
		a.setProblem("kvstore", msg)
		return nil
	}
	a.mu.Lock()
	a.kv = kv
	a.mu.Unlock()
	go kv.Run(ctx)
	if a.kvIdentities() {
		// Every agent collects (the deletions hold the labels' lock, so several
		// collectors are safe); an unused identity goes after two rounds.
		go kv.RunIdentityGC(ctx, identityGCInterval)
	}
	kv.OnResync(func() { a.kvResync(ctx) })
	if err := kv.RegisterNode(ctx, kvstore.NewNodeValue(a.opts.Node, a.clusterName(), a.clusterID(), a.dp.nodeIP, a.opts.PodCIDR)); err != nil {
		a.opts.Log.Warn("kvstore register node", "err", err)
	}
	for _, ep := range a.store.endpoints() {
		a.kvEndpointUpsert(ctx, ep)
	}
	for _, s := range a.store.services() {
		a.kvServiceUpsert(ctx, s)
	}
	go kv.Watch(ctx, kvstore.IPPrefix+kvstore.AddressSpace+"/", a.remoteEndpoint)
	// This cluster's nodes read back from etcd: those the API did not give become
	// nodes of the agent too (meshNode).
	cluster := a.clusterName()
	go kv.Watch(ctx, kvstore.NodesPrefix+cluster+"/", func(ev kvstore.Event) { a.meshNode(ctx, cluster, ev) })
	return nil
}

// allocateIdentity is a new endpoint's identity: from etcd with
// identity-allocation-mode kvstore (init, 5, while etcd cannot be reached: the resync
// allocates it), else derived from the name.
func (a *Agent) allocateIdentity(ctx context.Context, ep Endpoint) (uint32, error) {
	a.mu.Lock()
	kv := a.kv
	a.mu.Unlock()
	if !a.kvIdentities() || kv == nil {
		return a.podIdentity(ep.Labels)
	}
	id, err := kv.AllocateIdentity(ctx, kvstore.CanonicalLabels(ep.Labels, ""))
	if err != nil {
		a.opts.Log.Warn("kvstore identity: endpoint waits with the init identity", "endpoint", ep.Name, "err", err)
		return identityInit, nil
	}
	return id, nil
}

// kvResync runs after etcd is back: endpoints still on the init identity get theirs.
func (a *Agent) kvResync(ctx context.Context) {
	for _, ep := range a.store.endpoints() {
		if ep.Identity != identityInit || !a.kvIdentities() {
			continue
		}
		ep.Identity = 0
		if err := a.EndpointAdd(ctx, ep); err != nil {
			a.opts.Log.Warn("kvstore resync endpoint", "endpoint", ep.Name, "err", err)
		}
	}
}

// kvEndpointUpsert registers a local endpoint's ip -> identity (caller holds a.mu).
func (a *Agent) kvEndpointUpsert(ctx context.Context, ep Endpoint) {
	if a.kv == nil || ep.Identity == identityInit {
		return
	}
	if err := a.kv.EndpointUpsert(ctx, ep.IP, ep.Identity, ep.Name); err != nil {
		a.opts.Log.Warn("kvstore endpoint", "endpoint", ep.Name, "err", err)
	}
}

// kvEndpointDelete removes a local endpoint's ip key and, when no other local
// endpoint has its labels, this node's hold on their identity (the identity GC
// deletes the master key once no node holds it). The caller holds a.mu; the endpoint
// is already gone from the store.
func (a *Agent) kvEndpointDelete(ctx context.Context, ep Endpoint) {
	if a.kv == nil {
		return
	}
	if err := a.kv.EndpointDelete(ctx, ep.IP); err != nil {
		a.opts.Log.Warn("kvstore endpoint delete", "endpoint", ep.Name, "err", err)
	}
	if !a.kvIdentities() {
		return
	}
	labels := kvstore.CanonicalLabels(ep.Labels, "")
	for _, o := range a.store.endpoints() {
		if o.Name != ep.Name && kvstore.CanonicalLabels(o.Labels, "") == labels {
			return
		}
	}
	if err := a.kv.ReleaseIdentity(ctx, labels); err != nil {
		a.opts.Log.Warn("kvstore identity release", "endpoint", ep.Name, "err", err)
	}
}

// kvServiceUpsert mirrors a service into services/v1/<cluster>/default/<name>.
func (a *Agent) kvServiceUpsert(ctx context.Context, s Service) {
	a.mu.Lock()
	kv := a.kv
	a.mu.Unlock()
	if kv == nil {
		return
	}
	port := servicePortName(s)
	g, _ := ParseGlobalService(s.Annotations)
	cs := kvstore.ClusterService{Namespace: "default", Name: s.Name, Shared: g.Shared, IncludeExternal: g.Global,
		Frontends: map[string]map[string]kvstore.PortConfig{s.ClusterIP.String(): {port: {Protocol: s.Protocol, Port: s.Port}}},
		Backends:  map[string]map[string]kvstore.PortConfig{}}
	for _, b := range s.Backends {
		cs.Backends[b.IP.String()] = map[string]kvstore.PortConfig{port: {Protocol: s.Protocol, Port: b.Port}}
	}
	if err := kv.ServiceUpsert(ctx, cs); err != nil {
		a.opts.Log.Warn("kvstore service", "service", s.Name, "err", err)
	}
}

// kvServiceDelete removes a service from services/v1.
func (a *Agent) kvServiceDelete(ctx context.Context, s Service) {
	a.mu.Lock()
	kv := a.kv
	a.mu.Unlock()
	if kv == nil {
		return
	}
	if err := kv.ServiceDelete(ctx, "default", s.Name); err != nil {
		a.opts.Log.Warn("kvstore service delete", "service", s.Name, "err", err)
	}
}

// remoteEndpoint programs another node's endpoint from etcd: its /32 in the ipcache
// with the identity and the node as tunnel endpoint; a deletion removes it.
func (a *Agent) remoteEndpoint(ev kvstore.Event) {
	ip, p, err := kvstore.ParseIPEvent(ev)
	if err != nil {
		a.opts.Log.Warn("kvstore watch", "err", err)
		return
	}
	if a.opts.PodCIDR.Contains(ip) {
		return // a local endpoint: programmed by EndpointAdd
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p == nil {
		if err := a.dp.dp.Maps.IPCacheDelete(netip.PrefixFrom(ip, 32)); err != nil {
			a.opts.Log.Debug("kvstore remote endpoint delete", "ip", ip, "err", err)
		}
		return
	}
	host, err := netip.ParseAddr(p.HostIP)
	if err != nil {
		a.opts.Log.Warn("kvstore watch: bad HostIP", "ip", ip, "value", p.HostIP)
		return
	}
	if err := a.dp.dp.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.PrefixFrom(ip, 32), Identity: p.ID, TunnelEndpoint: host}); err != nil {
		a.opts.Log.Warn("kvstore remote endpoint", "ip", ip, "err", err)
	}
}

// kvStatus is the KVStore status (nil without kvstore mode).
func (a *Agent) kvStatus() *kvstore.Status {
	if a.kv == nil {
		return nil
	}
	st := a.kv.Status()
	return &st
}

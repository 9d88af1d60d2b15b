// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"

	"podpath/datapath/kvstore"
)

// Cluster mesh: every file of the clustermesh-config directory names a remote cluster
// and holds its etcd-config. The agent watches each remote etcd as Cilium does: the
// remote cluster's nodes (nodes/v1/<cluster>/) become nodes of this agent (tunnel
// endpoint, PodCIDR route), its endpoints (ip/v1/default/) ipcache entries with the
// identities the remote cluster allocated (its cluster-id in bits 16-23), and its
// global services (services/v1/<cluster>/) extra backends of the local service of the
// same namespace and name.

// Global service annotations, both spellings Cilium accepts (service.cilium.io/* and
// the older io.cilium/*).
var (
	annotGlobal   = []string{"service.cilium.io/global", "io.cilium/global-service"}
	annotShared   = []string{"service.cilium.io/shared", "io.cilium/shared-service"}
	annotAffinity = []string{"service.cilium.io/affinity", "io.cilium/service-affinity"}
)

// GlobalService is what a service's annotations say about the mesh.
type GlobalService struct {
	// Global: backends of the same service in other clusters are merged in.
	Global bool
	// Shared: this cluster's backends are offered to the others (default true).
	Shared bool
	// Affinity: "local", "remote" or "none" (default): which side's backends are
	// preferred while it has any.
	Affinity string
}

func annotation(a map[string]string, names []string) (string, bool) {
	for _, n := range names {
		if v, ok := a[n]; ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}

// ParseGlobalService reads the global service annotations; a value out of range is an
// error naming the annotation and the accepted values.
func ParseGlobalService(a map[string]string) (GlobalService, error) {
	g := GlobalService{Shared: true, Affinity: "none"}
	boolean := func(names []string, dst *bool) error {
		v, ok := annotation(a, names)
		if !ok {
			return nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("annotations: %s: %q is not true or false", names[0], v)
		}
		*dst = b
		return nil
	}
	if err := boolean(annotGlobal, &g.Global); err != nil {
		return g, err
	}
	if err := boolean(annotShared, &g.Shared); err != nil {
		return g, err
	}
	if v, ok := annotation(a, annotAffinity); ok {
		switch strings.ToLower(v) {
		case "local", "remote", "none":
			g.Affinity = strings.ToLower(v)
		case "":
		default:
			return g, fmt.Errorf("annotations: %s: %q is not one of local, remote, none", annotAffinity[0], v)
		}
	}
	return g, nil
}

// mesh is the agent's view of the remote clusters.
type mesh struct {
	mu sync.Mutex
	// remotes are the remote clusters' stores by name.
	remotes map[string]*kvstore.Store
	// nodes learned from etcd (remote clusters, and this cluster's own nodes the API
	// did not give): name -> cluster.
	nodes map[string]string
	// services are the remote clusters' services: "ns/name" -> cluster -> service.
	services map[string]map[string]*kvstore.ClusterService
	// endpoints counts remote endpoints per cluster (status).
	endpoints map[string]map[netip.Addr]bool
}

func newMesh() *mesh {
	return &mesh{remotes: map[string]*kvstore.Store{}, nodes: map[string]string{},
		services: map[string]map[string]*kvstore.ClusterService{}, endpoints: map[string]map[netip.Addr]bool{}}
}

// startClusterMesh connects to every remote cluster of the clustermesh-config
// directory and starts its watches.
func (a *Agent) startClusterMesh(ctx context.Context) error {
	if a.opts.ClusterMeshConfig == "" {
		return nil
	}
	remotes, err := kvstore.ReadClusterMeshConfig(a.opts.ClusterMeshConfig, a.clusterName())
	if err != nil {
		return err
	}
	for _, r := range remotes {
		st, err := kvstore.New(r.Config, kvstore.Options{Node: a.opts.Node, NodeIP: a.dp.nodeIP.String(), Cluster: r.Name, Log: a.opts.Log})
		if err != nil {
			return fmt.Errorf("clustermesh %s: %w", r.Name, err)
		}
		a.mesh.mu.Lock()
		a.mesh.remotes[r.Name] = st
		a.mesh.mu.Unlock()
		go st.Run(ctx)
		cluster := r.Name
		go st.Watch(ctx, kvstore.NodesPrefix+cluster+"/", func(ev kvstore.Event) { a.meshNode(ctx, cluster, ev) })
		go st.Watch(ctx, kvstore.IPPrefix+kvstore.AddressSpace+"/", func(ev kvstore.Event) { a.meshEndpoint(cluster, ev) })
		go st.Watch(ctx, kvstore.ServicesPrefix+cluster+"/", func(ev kvstore.Event) { a.meshService(cluster, ev) })
		a.opts.Log.Info("clustermesh: watching remote cluster", "cluster", cluster, "endpoints", r.Config.Endpoints)
	}
	return nil
}

// meshNode installs (or removes) a node read back from etcd: a remote cluster's, or one
// of this cluster's the API did not give. Nodes the API gave are left to it.
func (a *Agent) meshNode(ctx context.Context, cluster string, ev kvstore.Event) {
	name, v, err := kvstore.ParseNodeEvent(ev)
	if err != nil {
		a.opts.Log.Warn("clustermesh node", "cluster", cluster, "err", err)
		return
	}
	if name == a.opts.Node {
		return
	}
	a.mesh.mu.Lock()
	_, learned := a.mesh.nodes[name]
	a.mesh.mu.Unlock()
	if !learned {
		for _, n := range a.store.nodes() {
			if n.Name == name {
				return // the API's
			}
		}
	}
	if v == nil {
		if learned {
			a.mesh.mu.Lock()
			delete(a.mesh.nodes, name)
			a.mesh.mu.Unlock()
			if err := a.NodeDelete(ctx, name); err != nil {
				a.opts.Log.Warn("clustermesh node delete", "cluster", cluster, "node", name, "err", err)
			}
		}
		return
	}
	ip, err := v.InternalIP()
	if err == nil {
		var cidr netip.Prefix
		if cidr, err = v.PodCIDR(); err == nil {
			a.mesh.mu.Lock()
			a.mesh.nodes[name] = cluster
			a.mesh.mu.Unlock()
			err = a.NodeUpsert(ctx, Node{Name: name, IP: ip, PodCIDR: cidr})
		}
	}
	if err != nil {
		a.opts.Log.Warn("clustermesh node", "cluster", cluster, "node", name, "err", err)
	}
}

// meshEndpoint places a remote cluster's endpoint in the ipcache (remoteEndpoint) and
// counts it.
func (a *Agent) meshEndpoint(cluster string, ev kvstore.Event) {
	ip, p, err := kvstore.ParseIPEvent(ev)
	if err == nil {
		a.mesh.mu.Lock()
		if a.mesh.endpoints[cluster] == nil {
			a.mesh.endpoints[cluster] = map[netip.Addr]bool{}
		}
		if p == nil {
			delete(a.mesh.endpoints[cluster], ip)
		} else {
			a.mesh.endpoints[cluster][ip] = true
		}
		a.mesh.mu.Unlock()
	}
	a.remoteEndpoint(ev)
}

// meshService records a remote cluster's service and reprograms the local service of
// the same name with the merged backends.
func (a *Agent) meshService(cluster string, ev kvstore.Event) {
	id, v, err := kvstore.ParseServiceEvent(ev)
	if err != nil {
		a.opts.Log.Warn("clustermesh service", "cluster", cluster, "err", err)
		return
	}
	a.mesh.mu.Lock()
	if v == nil {
		delete(a.mesh.services[id], cluster)
	} else {
		if a.mesh.services[id] == nil {
			a.mesh.services[id] = map[string]*kvstore.ClusterService{}
		}
		a.mesh.services[id][cluster] = v
	}
	a.mesh.mu.Unlock()
	ns, name, _ := strings.Cut(id, "/")
	if ns != "default" {
		return
	}
	for _, s := range a.store.services() {
		if s.Name == name {
			a.mu.Lock()
			err := a.programServices([]Service{s})
			a.mu.Unlock()
			if err != nil {
				a.opts.Log.Warn("clustermesh service", "service", name, "err", err)
			}
		}
	}
}

// servicePortName names a port in services/v1 values.
func servicePortName(s Service) string {
	return strings.ToLower(s.Protocol) + "-" + strconv.Itoa(int(s.Port))
}

// withGlobalBackends is s as the datapath programs it: a global service gets the
// backends the other clusters share, then affinity keeps the preferred side while it
// has an active backend (Cilium: local or remote preferred, failing over to the other
// side when the preferred one has none).
func (a *Agent) withGlobalBackends(s Service) Service {
	g, err := ParseGlobalService(s.Annotations)
	if err != nil || !g.Global || a.mesh == nil {
		return s
	}
	a.mesh.mu.Lock()
	byCluster := a.mesh.services["default/"+s.Name]
	clusters := make([]string, 0, len(byCluster))
	for c := range byCluster {
		clusters = append(clusters, c)
	}
	sort.Strings(clusters)
	var remote []ServiceBackend
	port := servicePortName(s)
	for _, c := range clusters {
		cs := byCluster[c]
		if !cs.IncludeExternal || !cs.Shared {
			continue
		}
		ips := make([]string, 0, len(cs.Backends))
		for ip := range cs.Backends {
			ips = append(ips, ip)
		}
		sort.Strings(ips)
		for _, ip := range ips {
			pc, ok := cs.Backends[ip][port]
			addr, err := netip.ParseAddr(ip)
			if !ok || err != nil || !strings.EqualFold(pc.Protocol, s.Protocol) {
				continue
			}
			remote = append(remote, ServiceBackend{IP: addr, Port: pc.Port})
		}
	}
	a.mesh.mu.Unlock()
	local := s.Backends
	active := func(list []ServiceBackend) bool {
		for _, b := range list {
			if b.State == "" || b.State == "active" {
				return true
			}
		}
		return false
	}
	out := s
	switch {
	case g.Affinity == "local" && active(local):
		out.Backends = local
	case g.Affinity == "remote" && active(remote):
		out.Backends = remote
	default:
		out.Backends = append(append([]ServiceBackend{}, local...), remote...)
	}
	return out
}

// MeshStatus is one remote cluster as the agent sees it.
type MeshStatus struct {
	Cluster   string `json:"cluster"`
	Ready     bool   `json:"ready"`
	Nodes     int    `json:"nodes"`
	Endpoints int    `json:"endpoints"`
	Services  int    `json:"services"`
	KVStore   string `json:"kvstore"`
}

// meshStatus lists the remote clusters (nil without a mesh).
func (a *Agent) meshStatus() []MeshStatus {
	if a.mesh == nil {
		return nil
	}
	a.mesh.mu.Lock()
	defer a.mesh.mu.Unlock()
	var out []MeshStatus
	for name, st := range a.mesh.remotes {
		ks := st.Status()
		m := MeshStatus{Cluster: name, Ready: ks.HasQuorum, Endpoints: len(a.mesh.endpoints[name]), KVStore: ks.String()}
		for _, c := range a.mesh.nodes {
			if c == name {
				m.Nodes++
			}
		}
		for _, byCluster := range a.mesh.services {
			if _, ok := byCluster[name]; ok {
				m.Services++
			}
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Cluster < out[j].Cluster })
	return out
}

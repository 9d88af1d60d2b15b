// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"context"
	"fmt"
	"slices"
)

// EtcdSpec declares a real etcd cluster on the underlay: Members namespaces called
// etcd1..etcdN, each on Segment with an address of it, each running one etcd member.
// With TLS, the harness generates a CA for the run and every member and client
// authenticates with a certificate of it.
type EtcdSpec struct {
	// Members is the cluster size: 1, 3 or 5.
	Members int `json:"members"`
	// TLS: https with client certificates (peers too); false: plain http.
	TLS bool `json:"tls,omitempty"`
	// Segment the members attach to (their clients reach them over the underlay).
	Segment string `json:"segment"`
}

// EtcdMemberName is the member (namespace) name of etcd member i (1-based).
func EtcdMemberName(i int) string { return fmt.Sprintf("etcd%d", i) }

// ClusterEtcdMemberName is member i (1-based) of cluster's own etcd in a mesh.
func ClusterEtcdMemberName(cluster string, i int) string { return fmt.Sprintf("etcd%d-%s", i, cluster) }

// EtcdGroup is one etcd cluster of a topology: the top-level one (Cluster "") or a
// mesh cluster's own.
type EtcdGroup struct {
	Cluster string
	Spec    EtcdSpec
	Members []string
	// path is the field path of its spec (etcd, clusters[i].etcd).
	path string
}

// EtcdGroups lists the etcd clusters of the spec: the top-level one, then one per
// mesh cluster that declares its own.
func (s *Spec) EtcdGroups() []EtcdGroup {
	var out []EtcdGroup
	if s.Etcd != nil {
		g := EtcdGroup{Spec: *s.Etcd, path: "etcd"}
		for i := 1; i <= s.Etcd.Members; i++ {
			g.Members = append(g.Members, EtcdMemberName(i))
		}
		out = append(out, g)
	}
	for ci, c := range s.Clusters {
		if c.Etcd == nil {
			continue
		}
		g := EtcdGroup{Cluster: c.Name, Spec: *c.Etcd, path: fmt.Sprintf("clusters[%d].etcd", ci)}
		for i := 1; i <= c.Etcd.Members; i++ {
			g.Members = append(g.Members, ClusterEtcdMemberName(c.Name, i))
		}
		out = append(out, g)
	}
	return out
}

// EtcdGroupOf returns the etcd cluster a member belongs to.
func (s *Spec) EtcdGroupOf(member string) (EtcdGroup, bool) {
	for _, g := range s.EtcdGroups() {
		if slices.Contains(g.Members, member) {
			return g, true
		}
	}
	return EtcdGroup{}, false
}

// EtcdGroupOfCluster returns the etcd of a mesh cluster ("" : the top-level one).
func (s *Spec) EtcdGroupOfCluster(cluster string) (EtcdGroup, bool) {
	for _, g := range s.EtcdGroups() {
		if g.Cluster == cluster {
			return g, true
		}
	}
	return EtcdGroup{}, false
}

// HasEtcd says whether the topology runs any etcd.
func (s *Spec) HasEtcd() bool { return len(s.EtcdGroups()) > 0 }

// EtcdMembers lists the etcd member names of every etcd of the spec (none without etcd).
func (s *Spec) EtcdMembers() []string {
	var out []string
	for _, g := range s.EtcdGroups() {
		out = append(out, g.Members...)
	}
	return out
}

// checkEtcd adds the rules of the etcd blocks.
func (s *Spec) checkEtcd(e *errs) {
	groups := s.EtcdGroups()
	member := map[string]string{} // member -> segment
	for _, g := range groups {
		if !slices.Contains([]int{1, 3, 5}, g.Spec.Members) {
			e.add(g.path+".members", "%d is not one of 1, 3, 5 (an odd number keeps a quorum)", g.Spec.Members)
		}
		if !slices.Contains(s.segmentNames(), g.Spec.Segment) {
			e.add(g.path+".segment", "%q is not a segment (have: %v)", g.Spec.Segment, s.segmentNames())
		}
		for _, m := range g.Members {
			member[m] = g.Spec.Segment
			if !validName(m) {
				e.add(g.path, "member name %q is invalid (%s; a cluster name of at most %d characters leaves room for it)", m, nameRule, MaxNameLen-6)
			}
		}
	}
	if len(groups) == 0 {
		return
	}
	clash := func(path, name string) {
		if _, ok := member[name]; ok {
			e.add(path+".name", "%q is reserved for an etcd member", name)
		}
	}
	for i, n := range s.Nodes {
		clash(fmt.Sprintf("nodes[%d]", i), n.Name)
		for j, p := range n.Pods {
			clash(fmt.Sprintf("nodes[%d].pods[%d]", i, j), p.Name)
		}
	}
	for i, r := range s.Routers {
		clash(fmt.Sprintf("routers[%d]", i), r.Name)
	}
	for i, sg := range s.Segments {
		clash(fmt.Sprintf("segments[%d]", i), sg.Name)
	}
	for i, c := range s.Clients {
		if seg, ok := member[c.Name]; ok && (len(c.Interfaces) != 1 || c.Interfaces[0].Segment != seg) {
			e.add(fmt.Sprintf("clients[%d].name", i), "%q is reserved for an etcd member on segment %s", c.Name, seg)
		}
	}
}

// expandEtcd adds a client per etcd member that is not there yet (resolving again
// adds nothing): the backend brings members up like any client namespace.
func (s *Spec) expandEtcd() {
	for _, g := range s.EtcdGroups() {
		for _, m := range g.Members {
			if !slices.ContainsFunc(s.Clients, func(c ClientSpec) bool { return c.Name == m }) {
				s.Clients = append(s.Clients, ClientSpec{Name: m, Interfaces: []InterfaceSpec{{Segment: g.Spec.Segment}}})
			}
		}
	}
}

// Etcd is a running etcd cluster of a topology: what a backend that runs one offers
// (a Cluster whose spec declares etcd implements it, where the backend can).
type Etcd interface {
	// EtcdEndpoints are the members' client URLs (https://IP:2379 with TLS) of the
	// first etcd (the top-level one, else the first mesh cluster's).
	EtcdEndpoints() []string
	// EtcdClusterEndpoints are the client URLs of a mesh cluster's own etcd.
	EtcdClusterEndpoints(cluster string) []string
	// EtcdClientFiles returns the CA, certificate and key files of a client
	// certificate issued for name (created on first use); empty without TLS.
	EtcdClientFiles(name string) (ca, cert, key string, err error)
	// EtcdStop stops the members (SIGTERM, then SIGKILL), keeping their data.
	EtcdStop(ctx context.Context, members ...string) error
	// EtcdStart starts stopped members again and waits until the cluster is healthy.
	EtcdStart(ctx context.Context, members ...string) error
	// Etcdctl runs etcdctl (the etcd-client package) against member's etcd cluster
	// from inside member with the harness's own client certificate and returns its output.
	Etcdctl(ctx context.Context, member string, args ...string) ([]byte, error)
}

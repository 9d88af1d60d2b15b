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

// EtcdMembers lists the etcd member names of the spec (none without etcd).
func (s *Spec) EtcdMembers() []string {
	if s.Etcd == nil {
		return nil
	}
	var out []string
	for i := 1; i <= s.Etcd.Members; i++ {
		out = append(out, EtcdMemberName(i))
	}
	return out
}

// checkEtcd adds the rules of the etcd block.
func (s *Spec) checkEtcd(e *errs) {
	if s.Etcd == nil {
		return
	}
	if !slices.Contains([]int{1, 3, 5}, s.Etcd.Members) {
		e.add("etcd.members", "%d is not one of 1, 3, 5 (an odd number keeps a quorum)", s.Etcd.Members)
	}
	if !slices.Contains(s.segmentNames(), s.Etcd.Segment) {
		e.add("etcd.segment", "%q is not a segment (have: %v)", s.Etcd.Segment, s.segmentNames())
	}
	member := map[string]bool{}
	for _, m := range s.EtcdMembers() {
		member[m] = true
	}
	clash := func(path, name string) {
		if member[name] {
			e.add(path+".name", "%q is reserved for an etcd member (etcd.members: %d)", name, s.Etcd.Members)
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
		if member[c.Name] && (len(c.Interfaces) != 1 || c.Interfaces[0].Segment != s.Etcd.Segment) {
			e.add(fmt.Sprintf("clients[%d].name", i), "%q is reserved for an etcd member on segment %s", c.Name, s.Etcd.Segment)
		}
	}
}

// expandEtcd adds a client per etcd member that is not there yet (resolving again
// adds nothing): the backend brings members up like any client namespace.
func (s *Spec) expandEtcd() {
	for _, m := range s.EtcdMembers() {
		if !slices.ContainsFunc(s.Clients, func(c ClientSpec) bool { return c.Name == m }) {
			s.Clients = append(s.Clients, ClientSpec{Name: m, Interfaces: []InterfaceSpec{{Segment: s.Etcd.Segment}}})
		}
	}
}

// Etcd is a running etcd cluster of a topology: what a backend that runs one offers
// (a Cluster whose spec declares etcd implements it, where the backend can).
type Etcd interface {
	// EtcdEndpoints are the members' client URLs (https://IP:2379 with TLS).
	EtcdEndpoints() []string
	// EtcdClientFiles returns the CA, certificate and key files of a client
	// certificate issued for name (created on first use); empty without TLS.
	EtcdClientFiles(name string) (ca, cert, key string, err error)
	// EtcdStop stops the members (SIGTERM, then SIGKILL), keeping their data.
	EtcdStop(ctx context.Context, members ...string) error
	// EtcdStart starts stopped members again and waits until the cluster is healthy.
	EtcdStart(ctx context.Context, members ...string) error
	// Etcdctl runs etcdctl (the etcd-client package) against the cluster from inside
	// member with the harness's own client certificate and returns its output.
	Etcdctl(ctx context.Context, member string, args ...string) ([]byte, error)
}

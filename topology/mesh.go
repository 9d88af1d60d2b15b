// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// ClusterSpec is one cluster of a cluster mesh: a name and an ID as Cilium's
// cluster-name and cluster-id, and the cluster's own etcd. Every node of the topology
// names its cluster; each cluster's agents watch the other clusters' etcd.
type ClusterSpec struct {
	// Name is cluster-name: lowercase letters, digits and '-' (Cilium's rule).
	Name string `json:"name"`
	// ID is cluster-id, 1-255, unique in the mesh: bits 16-23 of the cluster's
	// identities.
	ID int `json:"id"`
	// Etcd is the cluster's own etcd (members etcd<i>-<name>).
	Etcd *EtcdSpec `json:"etcd"`
	// RoutingMode, when set, is the routing mode the cluster's config must have
	// (tunnel or native); every cluster of a mesh must declare the same.
	RoutingMode string `json:"routingMode,omitempty"`
}

// Cluster mesh limits (Cilium's).
const (
	MinClusterID = 1
	MaxClusterID = 255
)

var clusterNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

const clusterNameRule = "want lowercase letters, digits and '-', starting and ending with a letter or digit"

// ClusterOfNode returns the mesh cluster of node (nil without a mesh).
func (s *Spec) ClusterOfNode(node string) *ClusterSpec {
	for _, n := range s.Nodes {
		if n.Name != node || n.Cluster == "" {
			continue
		}
		for i := range s.Clusters {
			if s.Clusters[i].Name == n.Cluster {
				return &s.Clusters[i]
			}
		}
	}
	return nil
}

// IsMesh says whether the topology declares a cluster mesh.
func (s *Spec) IsMesh() bool { return len(s.Clusters) > 0 }

// checkMesh adds the cluster mesh rules: names and IDs valid and unique, every node
// in a declared cluster, PodCIDRs and node segments disjoint across clusters, one
// routing mode, and each cluster's own etcd (no top-level one beside them).
func (s *Spec) checkMesh(e *errs) {
	if len(s.Clusters) == 0 {
		for i, n := range s.Nodes {
			if n.Cluster != "" {
				e.add(fmt.Sprintf("nodes[%d].cluster", i), "%q names a cluster, but the topology declares no clusters (want a clusters: list, or no cluster field)", n.Cluster)
			}
		}
		return
	}
	if s.Etcd != nil {
		e.add("etcd", "a cluster mesh gives each cluster its own etcd (clusters[].etcd); remove the top-level etcd")
	}
	names, ids := map[string]int{}, map[int]int{}
	mode, modePath := "", ""
	for i, c := range s.Clusters {
		path := fmt.Sprintf("clusters[%d]", i)
		switch {
		case c.Name == "":
			e.add(path+".name", "must not be empty (%s)", clusterNameRule)
		case strings.ToLower(c.Name) != c.Name:
			e.add(path+".name", "%q has uppercase letters (%s)", c.Name, clusterNameRule)
		case len(c.Name) > MaxNameLen-6 || !clusterNameRE.MatchString(c.Name):
			e.add(path+".name", "%q is invalid (%s, at most %d characters)", c.Name, clusterNameRule, MaxNameLen-6)
		}
		if j, ok := names[c.Name]; ok && c.Name != "" {
			e.add(path+".name", "%q is already the name of clusters[%d] (cluster names must be unique)", c.Name, j)
		}
		names[c.Name] = i
		if c.ID < MinClusterID || c.ID > MaxClusterID {
			e.add(path+".id", "%d is out of range (want %d..%d)", c.ID, MinClusterID, MaxClusterID)
		} else if j, ok := ids[c.ID]; ok {
			e.add(path+".id", "%d is already the ID of clusters[%d] %q (cluster IDs must be unique)", c.ID, j, s.Clusters[j].Name)
		}
		ids[c.ID] = i
		if c.Etcd == nil {
			e.add(path+".etcd", "each cluster of a mesh needs its own etcd (want e.g. {members: 1, tls: true, segment: SEGMENT})")
		}
		switch c.RoutingMode {
		case "":
		case "tunnel", "native":
			if mode == "" {
				mode, modePath = c.RoutingMode, path
			} else if c.RoutingMode != mode {
				e.add(path+".routingMode", "%q differs from %s.routingMode %q (every cluster of a mesh uses the same routing mode)", c.RoutingMode, modePath, mode)
			}
		default:
			e.add(path+".routingMode", "%q is not one of tunnel, native", c.RoutingMode)
		}
	}
	var tls []bool
	for _, c := range s.Clusters {
		if c.Etcd != nil {
			tls = append(tls, c.Etcd.TLS)
		}
	}
	for i := 1; i < len(tls); i++ {
		if tls[i] != tls[0] {
			e.add("clusters", "etcd tls differs between clusters (the run's CA serves all of them: want the same tls on every cluster)")
			break
		}
	}

	type owned struct {
		cluster, path string
		p             netip.Prefix
	}
	var pods []owned
	segOwner := map[string]owned{}
	count := map[string]int{}
	for i, n := range s.Nodes {
		path := fmt.Sprintf("nodes[%d]", i)
		if _, ok := names[n.Cluster]; !ok || n.Cluster == "" {
			e.add(path+".cluster", "%q is not a declared cluster (have: %s)", n.Cluster, strings.Join(s.clusterNames(), ", "))
			continue
		}
		count[n.Cluster]++
		if p, err := netip.ParsePrefix(n.PodCIDR); err == nil {
			for _, o := range pods {
				if o.cluster != n.Cluster && o.p.Overlaps(p) {
					e.add(path+".podCIDR", "%s of cluster %q overlaps %s.podCIDR %s of cluster %q (PodCIDRs must not overlap across a mesh)", p, n.Cluster, o.path, o.p, o.cluster)
				}
			}
			pods = append(pods, owned{n.Cluster, path, p})
		}
		// A node's CIDR is its segment's: two clusters on one segment share one.
		for j, ifc := range n.Interfaces {
			ipath := fmt.Sprintf("%s.interfaces[%d].segment", path, j)
			if o, ok := segOwner[ifc.Segment]; ok && o.cluster != n.Cluster {
				e.add(ipath, "segment %q (node CIDR %s) already carries nodes of cluster %q (%s): node CIDRs must not overlap across a mesh (put each cluster on its own segment, joined by a router)", ifc.Segment, s.segmentCIDR(ifc.Segment), o.cluster, o.path)
			} else if !ok {
				segOwner[ifc.Segment] = owned{cluster: n.Cluster, path: ipath}
			}
		}
	}
	for i, c := range s.Clusters {
		if c.Name != "" && count[c.Name] == 0 {
			e.add(fmt.Sprintf("clusters[%d]", i), "cluster %q has no node (want at least one node with cluster: %s)", c.Name, c.Name)
		}
	}
}

func (s *Spec) clusterNames() []string {
	var out []string
	for _, c := range s.Clusters {
		out = append(out, c.Name)
	}
	return out
}

func (s *Spec) segmentCIDR(name string) string {
	for _, sg := range s.Segments {
		if sg.Name == name {
			return sg.CIDR
		}
	}
	return "?"
}

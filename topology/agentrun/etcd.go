// SPDX-License-Identifier: Apache-2.0

package agentrun

import (
	"fmt"
	"os"
	"path/filepath"

	"podpath/datapath/config"
	"podpath/datapath/kvstore"
	"podpath/topology"
)

// writeEtcdConfig writes node's etcd-config file (the seed's layout: endpoints and the
// TLS files of a client certificate issued for the node) when the topology runs etcd,
// as Kubernetes would mount the etcd-config key at kvstore-opt's etcd.config path.
// It returns "" for a topology without etcd.
// In a cluster mesh the node's cluster's own etcd is named.
func (a *Agents) writeEtcdConfig(node string) (string, error) {
	e, ok := a.t.(topology.Etcd)
	if !ok || !a.t.Spec().HasEtcd() {
		return "", nil
	}
	ca, cert, key, err := e.EtcdClientFiles(node)
	if err != nil {
		return "", fmt.Errorf("etcd-config for %s: %w", node, err)
	}
	eps := e.EtcdEndpoints()
	if c := a.t.Spec().ClusterOfNode(node); c != nil {
		eps = e.EtcdClusterEndpoints(c.Name)
	}
	c := kvstore.EtcdConfig{Endpoints: eps, CAFile: ca, CertFile: cert, KeyFile: key}
	f := filepath.Join(a.stateDir(node), "etcd.config")
	if err := os.WriteFile(f, c.Marshal(), 0o600); err != nil {
		return "", fmt.Errorf("etcd-config for %s: %w", node, err)
	}
	return f, nil
}

// NodeLabels returns the labels the spec gives node (nil: none).
func NodeLabels(s *topology.Spec, node string) map[string]string {
	for _, n := range s.Nodes {
		if n.Name == node {
			return n.Labels
		}
	}
	return nil
}

// meshArgs are node's cluster mesh flags: --cluster-name and --cluster-id of its
// cluster, and --clustermesh-config naming a directory in Cilium's shape (one file
// per cluster, named after it, holding that cluster's etcd-config with the node's
// client certificate, as the clustermesh secret mounts it; the agent skips its own).
func (a *Agents) meshArgs(node string) ([]string, error) {
	s := a.t.Spec()
	c := s.ClusterOfNode(node)
	e, ok := a.t.(topology.Etcd)
	if c == nil || !ok {
		return nil, nil
	}
	ca, cert, key, err := e.EtcdClientFiles(node)
	if err != nil {
		return nil, fmt.Errorf("clustermesh-config for %s: %w", node, err)
	}
	dir := filepath.Join(a.stateDir(node), "clustermesh")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	for _, o := range s.Clusters {
		cfg := kvstore.EtcdConfig{Endpoints: e.EtcdClusterEndpoints(o.Name), CAFile: ca, CertFile: cert, KeyFile: key}
		if err := os.WriteFile(filepath.Join(dir, o.Name), cfg.Marshal(), 0o600); err != nil {
			return nil, fmt.Errorf("clustermesh-config for %s: %w", node, err)
		}
	}
	return []string{"--cluster-name", c.Name, "--cluster-id", fmt.Sprint(c.ID), "--clustermesh-config", dir}, nil
}

// sameCluster says whether two nodes are in one cluster (always without a mesh).
func sameCluster(s *topology.Spec, a, b string) bool {
	ca, cb := s.ClusterOfNode(a), s.ClusterOfNode(b)
	return ca == nil || cb == nil || ca.Name == cb.Name
}

// checkMeshRoutingMode refuses a config whose routing-mode is not the one the mesh's
// clusters declare (Cilium requires one routing mode across a mesh).
func checkMeshRoutingMode(s *topology.Spec, configFile string) error {
	want := ""
	for _, c := range s.Clusters {
		if c.RoutingMode != "" {
			want = c.RoutingMode
		}
	}
	if want == "" {
		return nil
	}
	got := config.RoutingTunnel
	if configFile != "" {
		cfg, _, err := config.ParseFile(configFile)
		if err != nil {
			return err
		}
		got = cfg.RoutingMode
	}
	if string(got) != want {
		return fmt.Errorf("clusters[].routingMode: the clusters declare %s, the cilium-config has routing-mode %s (every cluster of a mesh uses the same routing mode)", want, got)
	}
	return nil
}

// PodLabels returns the labels the spec gives pod (nil: none).
func PodLabels(s *topology.Spec, pod string) map[string]string {
	for _, n := range s.Nodes {
		for _, p := range n.Pods {
			if p.Name == pod {
				return p.Labels
			}
		}
	}
	return nil
}

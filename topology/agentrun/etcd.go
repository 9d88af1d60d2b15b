// SPDX-License-Identifier: Apache-2.0

package agentrun

import (
	"fmt"
	"os"
	"path/filepath"

	"podpath/datapath/kvstore"
	"podpath/topology"
)

// writeEtcdConfig writes node's etcd-config file (the seed's layout: endpoints and the
// TLS files of a client certificate issued for the node) when the topology runs etcd,
// as Kubernetes would mount the etcd-config key at kvstore-opt's etcd.config path.
// It returns "" for a topology without etcd.
func (a *Agents) writeEtcdConfig(node string) (string, error) {
	e, ok := a.t.(topology.Etcd)
	if !ok || a.t.Spec().Etcd == nil {
		return "", nil
	}
	ca, cert, key, err := e.EtcdClientFiles(node)
	if err != nil {
		return "", fmt.Errorf("etcd-config for %s: %w", node, err)
	}
	c := kvstore.EtcdConfig{Endpoints: e.EtcdEndpoints(), CAFile: ca, CertFile: cert, KeyFile: key}
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

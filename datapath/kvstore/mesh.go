// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// RemoteCluster is one entry of Cilium's clustermesh-config directory: a file named
// after the remote cluster whose content is that cluster's etcd-config.
type RemoteCluster struct {
	Name   string
	Config *EtcdConfig
}

// ReadClusterMeshConfig reads a clustermesh-config directory. Names starting with '.'
// are skipped (a Kubernetes Secret volume keeps ..data links there), and so is self:
// an agent does not watch its own cluster as a remote one.
func ReadClusterMeshConfig(dir, self string) ([]RemoteCluster, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("clustermesh-config: %w", err)
	}
	var out []RemoteCluster
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".") || name == self || e.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("clustermesh-config %s: %w", name, err)
		}
		c, err := ParseEtcdConfig(data)
		if err != nil {
			return nil, fmt.Errorf("clustermesh-config %s: %w", name, err)
		}
		out = append(out, RemoteCluster{Name: name, Config: c})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

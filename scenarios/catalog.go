// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"embed"
	"fmt"
	"path"
	"sort"
	"strings"

	"podpath/topology"
)

//go:embed topologies/*.yaml
var topologyFiles embed.FS

// Topologies lists the names of the topologies shipped in the catalog.
func Topologies() []string {
	entries, _ := topologyFiles.ReadDir("topologies")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Topology returns a catalog topology spec by name (e.g. "l2-two-node").
func Topology(name string) (*topology.Spec, error) {
	data, err := topologyFiles.ReadFile(path.Join("topologies", name+".yaml"))
	if err != nil {
		return nil, fmt.Errorf("catalog topology %q: not found (have: %s)", name, strings.Join(Topologies(), ", "))
	}
	return topology.Parse(data)
}

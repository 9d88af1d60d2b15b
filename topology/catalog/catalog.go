// SPDX-License-Identifier: Apache-2.0

package catalog

import (
	"embed"
	"fmt"
	"sort"
	"strings"

	"podpath/topology"
)

// The specs are embedded: a catalog name works from any working directory and from
// an installed binary.
//
//go:embed *.yaml
var files embed.FS

// Names lists the names of the topologies shipped in the catalog.
func Names() []string {
	entries, _ := files.ReadDir(".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Topology returns a catalog topology spec by name (e.g. "l2-two-node").
func Topology(name string) (*topology.Spec, error) {
	data, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("catalog topology %q: not found (have: %s)", name, strings.Join(Names(), ", "))
	}
	return topology.Parse(data)
}

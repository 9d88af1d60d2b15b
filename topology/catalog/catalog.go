// SPDX-License-Identifier: Apache-2.0

package catalog

import (
	"embed"

	"podpath/internal/catalogfs"
	"podpath/topology"
)

// The specs are embedded: a catalog name works from any working directory and from
// an installed binary.
//
//go:embed *.yaml
var files embed.FS

// Names lists the names of the topologies shipped in the catalog.
func Names() []string { return catalogfs.Names(files) }

// Topology returns a catalog topology spec by name (e.g. "l2-two-node").
func Topology(name string) (*topology.Spec, error) {
	data, err := catalogfs.Read(files, "catalog topology", name)
	if err != nil {
		return nil, err
	}
	return topology.Parse(data)
}

// SPDX-License-Identifier: Apache-2.0

// Package catalog holds the topologies shipped with podpath as embedded YAML specs, so
// that scenarios, test helpers and the CLI name them without reading files.
package catalog

// SPDX-License-Identifier: Apache-2.0

// Package topology describes a cluster as a declarative YAML spec, validates it, plans its
// routes, and defines the Backend and Cluster interfaces that topology/netns and
// topology/kind implement.
package topology

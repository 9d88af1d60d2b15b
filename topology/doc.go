// SPDX-License-Identifier: Apache-2.0

// Package topology describes a cluster as a declarative YAML spec, validates and routes it,
// and brings it up as a tree of network namespaces on one machine (the netns backend).
package topology

// SPDX-License-Identifier: Apache-2.0

// Package catalogfs reads a catalog of embedded YAML files, each named by its file name
// without ".yaml" (the topology and cilium-config catalogs).
package catalogfs

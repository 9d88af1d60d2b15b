// SPDX-License-Identifier: Apache-2.0

// Package cni is podpath-cni, the CNI plugin that hands every pod attachment (ADD, DEL,
// CHECK, GC, STATUS) to the node's podpath agent, which owns the addresses and plumbs.
package cni

// SPDX-License-Identifier: Apache-2.0

// Package hops is the hop model of a pod-to-pod packet path and its verification
// against captures: which interfaces a packet crosses with which headers, and what a
// report shows of each hop.
package hops

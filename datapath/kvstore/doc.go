// SPDX-License-Identifier: Apache-2.0

// Package kvstore is the agent's etcd client in Cilium's key layout: node, endpoint (IP
// -> identity) and service registration under leases, watches of the other agents'
// entries, and a race-free identity allocator keyed by a canonical label set.
package kvstore

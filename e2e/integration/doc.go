// SPDX-License-Identifier: Apache-2.0

// Package integration holds plain Go tests that run the datapath's clients (the CNI
// plugin, the Kubernetes watcher) against real agents on a topology brought up by
// topology/topotest: they sit on the top floor, with e2e, so that no package below
// imports topology in its tests.
package integration

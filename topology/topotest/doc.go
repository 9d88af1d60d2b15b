// SPDX-License-Identifier: Apache-2.0

// Package topotest builds podpath's binaries and brings catalog topologies up for tests
// (CNI plugin, Kubernetes watcher, agent CLI); only _test.go files may import it.
package topotest

// SPDX-License-Identifier: Apache-2.0

// Package agenttest builds podpath's binaries and brings catalog topologies up for the
// tests of the packages around the agent (CNI plugin, Kubernetes watcher, agent CLI).
package agenttest

// SPDX-License-Identifier: Apache-2.0

// Package agentrun runs a podpath-agent inside every node of a running topology (state
// under the run's folder, a bpffs private to the run) and registers the nodes and pods
// with them: what scenarios, e2e suites and datapath tests share to get a cluster with
// a datapath.
package agentrun

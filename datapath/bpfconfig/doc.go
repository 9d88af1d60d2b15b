// SPDX-License-Identifier: Apache-2.0

// Package bpfconfig turns a validated cilium-config and the node's facts into the
// podpath_config struct every BPF object reads as its volatile const CONFIG.
package bpfconfig

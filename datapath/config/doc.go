// SPDX-License-Identifier: Apache-2.0

// Package config reads podpath's datapath configuration from Cilium's cilium-config
// ConfigMap keys (a ConfigMap, its data map, or a flattened kubectl-edit dump),
// validates it and resolves it into a typed Config with a report of everything ignored.
// Every rule about which combinations of settings are valid lives here: the agent
// starts with exactly the configs validation accepts (bpfconfig.Build turns them into
// the BPF configuration). The package imports nothing of BPF.
package config

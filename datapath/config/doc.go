// SPDX-License-Identifier: Apache-2.0

// Package config reads podpath's datapath configuration from Cilium's cilium-config
// ConfigMap keys (a ConfigMap, its data map, or a flattened kubectl-edit dump),
// validates it and resolves it into a typed Config with a report of everything ignored.
// Every rule about which combinations of settings are valid lives here: the agent
// starts with exactly the configs validation accepts (bpfconfig.Build turns them into
// the BPF configuration). The package imports nothing of BPF.
//
// Every known key has a Status (keys.go): implemented (changing it changes what
// podpath does, and Key.Proof names the test or catalog witness check that shows
// it), partial (Key.Gap says what is not done), fixed (one value; validation refuses
// the others), differs or ignored (not read: podpath behaves as Key.Assumes), or
// unknown (not audited). A key the input sets that podpath does not do as written is
// a Report warning saying what podpath does instead; a key whose value is what
// podpath does, or that cannot matter to podpath (Key.Inert), is a notice.
// scenarios/steps' TestKeyStatusesAreProven keeps the statuses honest.
package config

// SPDX-License-Identifier: Apache-2.0

// Package scenarios is the scenario runner: the scenario file format, the catalog of
// scenario files (cilium-configs: datapath/config/configs), the registry of step kinds (RegisterStep; the kinds
// themselves live in scenarios/steps) and the run that brings topologies and agents up,
// runs the steps and records checks; README.md describes the file format.
package scenarios

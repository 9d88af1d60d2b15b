// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"fmt"
	"go.yaml.in/yaml/v3"
	"path/filepath"

	"podpath/topology"
)

import ()

// Generic builds the scenario a user gets for their own topology and cilium-config:
// every pod reaches every other pod over ICMP, TCP and UDP, and between the first pods
// of every pair of nodes the path MTU is the topology's (the smallest link on the way,
// less the tunnel overhead in tunnel mode): DF packets of it cross, one byte more is
// refused naming it. configFile may be empty (Cilium's
// defaults); a topology whose pods the harness plumbs (podNetwork: kernel) runs
// without agents, and so without a config. It is a scenario file built in code:
//
//	name: <the topology's name>
//	stages:
//	  - topology: <topologyFile>
//	    config: <configFile>
//	    steps:
//	      - check: connectivity-matrix
//	      - check: node-pair-mtu
func Generic(topologyFile, configFile string) (*Scenario, error) {
	spec, err := topology.Load(topologyFile)
	if err != nil {
		return nil, err
	}
	// Absolute paths: a file reference is told from a catalog name by its slash.
	topoPath, err := filepath.Abs(topologyFile)
	if err != nil {
		return nil, err
	}
	steps := []any{map[string]any{"check": "connectivity-matrix"}, map[string]any{"check": "node-pair-mtu"}}
	if spec.HasBGP() {
		// BGP routes the PodCIDRs: peer the agents as the topology says, wait for every
		// BGP router's table, then the same checks.
		pre := []any{map[string]any{"do": "bgp-peering"}}
		for _, r := range spec.Routers {
			if r.BGP != nil {
				pre = append(pre, map[string]any{"check": "bgp-routes", "with": map[string]any{"router": r.Name}})
			}
		}
		steps = append(pre, steps...)
	}
	stage := map[string]any{"topology": topoPath, "steps": steps}
	if configFile != "" {
		cfgPath, err := filepath.Abs(configFile)
		if err != nil {
			return nil, err
		}
		stage["config"] = cfgPath
	}
	doc := map[string]any{
		"name": spec.Name,
		"description": fmt.Sprintf("generic checks of topology %s with cilium-config %s: connectivity matrix and MTU sweep",
			topologyFile, ConfigRef{Name: configFile}),
		"labels": []string{"generic"},
		"stages": []any{stage},
	}
	data, err := yaml.Marshal(doc)
	if err != nil {
		return nil, err
	}
	f, err := ParseScenario(data, ".")
	if err != nil {
		return nil, fmt.Errorf("generic checks of %s: %w", topologyFile, err)
	}
	f.Source = filepath.Clean(topologyFile)
	return f.Scenario(), nil
}

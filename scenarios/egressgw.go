// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"fmt"

	"go.yaml.in/yaml/v3"

	"podpath/datapath/agent"
	"podpath/datapath/egressgw"
	"podpath/internal/strictyaml"
)

// EgressGatewayPolicySpec is a CiliumEgressGatewayPolicy written in a stage, as in
// Cilium's CRD.
type EgressGatewayPolicySpec struct {
	// Name is the object's metadata.name.
	Name string
	// YAML is the object as written.
	YAML string
}

// DecodeYAML keeps the object's YAML and checks it parses as a
// CiliumEgressGatewayPolicy (errors name the field path and the accepted values).
func (p *EgressGatewayPolicySpec) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	out, err := yaml.Marshal(n)
	if err != nil {
		d.Fail(n, path, "%v", err)
		return
	}
	pol, err := egressgw.Parse(out)
	if err != nil {
		d.Fail(n, path, "%v", err)
		return
	}
	p.Name, p.YAML = pol.Name, string(out)
}

// programEgressGatewayPolicies gives the stage's egress gateway policies to its agents.
func (s *Stage) programEgressGatewayPolicies(ctx context.Context, specs []EgressGatewayPolicySpec) error {
	if len(specs) == 0 {
		return nil
	}
	a, err := s.Agents()
	if err != nil {
		return err
	}
	for i, p := range specs {
		if err := a.EgressGatewayPolicyUpsert(ctx, agent.Policy{Name: p.Name, YAML: p.YAML}); err != nil {
			return fmt.Errorf("%s.egressGatewayPolicies[%d] (%s): %w", s.Spec.Path, i, p.Name, err)
		}
	}
	return nil
}

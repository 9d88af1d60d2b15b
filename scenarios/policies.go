// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"fmt"

	"go.yaml.in/yaml/v3"

	"podpath/datapath/agent"
	"podpath/datapath/policy"
	"podpath/internal/strictyaml"
)

// PolicySpec is a network policy of a stage: a CiliumNetworkPolicy,
// CiliumClusterwideNetworkPolicy or Kubernetes NetworkPolicy object written inline in
// the scenario file, as `kubectl apply` takes it. The agents of every node program it
// before the first step.
type PolicySpec struct {
	// Name is the object's metadata.name.
	Name string
	// YAML is the object as written.
	YAML string
}

// DecodeYAML keeps the object's YAML and checks it parses as a policy.
func (p *PolicySpec) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	out, err := yaml.Marshal(n)
	if err != nil {
		d.Fail(n, path, "%v", err)
		return
	}
	pol, err := policy.ParseOne(out)
	if err != nil {
		d.Fail(n, path, "%v", err)
		return
	}
	p.Name, p.YAML = pol.Name, string(out)
}

// programPolicies gives the stage's policies to its agents.
func (s *Stage) programPolicies(ctx context.Context, specs []PolicySpec) error {
	if len(specs) == 0 {
		return nil
	}
	a, err := s.Agents()
	if err != nil {
		return err
	}
	for i, p := range specs {
		if err := a.PolicyUpsert(ctx, agent.Policy{Name: p.Name, YAML: p.YAML}); err != nil {
			return fmt.Errorf("%s.policies[%d] (%s): %w", s.Spec.Path, i, p.Name, err)
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"

	"podpath/datapath/agent"
	"podpath/datapath/policy"
	"podpath/topology/agentrun"
)

// PolicySpec is a network policy of a stage: a CiliumNetworkPolicy,
// CiliumClusterwideNetworkPolicy or Kubernetes NetworkPolicy object written inline in
// the scenario file.
type PolicySpec = ObjectSpec[networkPolicyKind]

// networkPolicyKind is the objectKind of PolicySpec.
type networkPolicyKind struct{}

func (networkPolicyKind) parse(y []byte) (string, error) {
	pol, err := policy.ParseOne(y)
	if err != nil {
		return "", err
	}
	return pol.Name, nil
}

func (networkPolicyKind) upsert(ctx context.Context, a *agentrun.Agents, p agent.Policy) error {
	return a.PolicyUpsert(ctx, p)
}

func (networkPolicyKind) field() string { return "policies" }

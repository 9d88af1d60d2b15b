// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"

	"podpath/datapath/agent"
	"podpath/datapath/egressgw"
	"podpath/topology/agentrun"
)

// EgressGatewayPolicySpec is a CiliumEgressGatewayPolicy written in a stage, as in
// Cilium's CRD.
type EgressGatewayPolicySpec = ObjectSpec[egressGatewayPolicyKind]

// egressGatewayPolicyKind is the objectKind of EgressGatewayPolicySpec.
type egressGatewayPolicyKind struct{}

func (egressGatewayPolicyKind) parse(y []byte) (string, error) {
	pol, err := egressgw.Parse(y)
	if err != nil {
		return "", err
	}
	return pol.Name, nil
}

func (egressGatewayPolicyKind) upsert(ctx context.Context, a *agentrun.Agents, p agent.Policy) error {
	return a.EgressGatewayPolicyUpsert(ctx, p)
}

func (egressGatewayPolicyKind) field() string { return "egressGatewayPolicies" }

// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[matrixWith, none]{
		Name:    "connectivity-matrix",
		Summary: "every pod reaches every other pod: one check per protocol over all ordered pod pairs",
		With:    matrixWith{Protocols: probeProtocols},
		Run:     runConnectivityMatrix,
	})
	scenarios.RegisterStep(scenarios.StepDef[none, nodePairMTUExpect]{
		Name: "node-pair-mtu",
		Summary: "between the first pods of every pair of nodes: DF packets of the path MTU cross, one byte more " +
			"is refused",
		Run: runNodePairMTU,
	})
}

type matrixWith struct {
	Protocols []probe.Protocol `json:"protocols" doc:"the probes"`
}

func runConnectivityMatrix(ctx context.Context, s *scenarios.Stage, w matrixWith, _ none) error {
	pods := s.T.Pods()
	for _, p := range w.Protocols {
		var errs []error
		pairs := 0
		for _, a := range pods {
			for _, b := range pods {
				if a.Name == b.Name {
					continue
				}
				pairs++
				if err := probe.Exchange(ctx, s.T, p, a.Name, b.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
		s.Check(fmt.Sprintf("connectivity matrix: %s between all %d ordered pod pairs", p, pairs),
			"the answer of the echo server (or ping) in every destination pod", errors.Join(errs...))
	}
	return nil
}

type nodePairMTUExpect struct {
	MTU int `json:"mtu" range:"0..65535" doc:"the path MTU (default: the sending node's agent's route MTU, or without agents the sending pod's MTU)"`
}

// runNodePairMTU sweeps between the first pods of every pair of nodes.
func runNodePairMTU(ctx context.Context, s *scenarios.Stage, _ none, e nodePairMTUExpect) error {
	t := s.T
	nodes := t.Nodes()
	for _, na := range nodes {
		for _, nb := range nodes {
			if na.Name == nb.Name || len(na.Pods) == 0 || len(nb.Pods) == 0 {
				continue
			}
			src, dst := na.Pods[0], nb.Pods[0]
			mtu := src.MTU
			switch {
			case e.MTU != 0:
				mtu = e.MTU
			case agentsOf(s) != nil:
				st, err := agentsOf(s).Client(na.Name).Status(ctx)
				if err != nil {
					return err
				}
				mtu = st.MTU.Route
			}
			fits, err := probe.PingSized(ctx, t, src.Name, dst.IP, mtu-28, true)
			var ferr error
			if err != nil {
				ferr = fmt.Errorf("%d-byte DF packet did not cross: %w: %s", mtu, err, fits)
			}
			over, err := probe.PingSized(ctx, t, src.Name, dst.IP, mtu-27, true)
			if err == nil {
				ferr = errors.Join(ferr, fmt.Errorf("%d-byte DF packet crossed a path of MTU %d: %s", mtu+1, mtu, over))
			}
			s.Check(fmt.Sprintf("MTU %s (%s) -> %s (%s): DF packets of %d bytes cross, %d are refused", src.Name, na.Name, dst.Name, nb.Name, mtu, mtu+1),
				"ping -M do -s "+strconv.Itoa(mtu-28)+" and "+strconv.Itoa(mtu-27), ferr)
		}
	}
	return nil
}

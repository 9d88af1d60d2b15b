// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[connectivityWith, none]{
		Name:    "connectivity",
		Summary: "ICMP, TCP and UDP exchanges between two pods, one way or both: one check per protocol and direction",
		With:    connectivityWith{Protocols: probeProtocols},
		Run:     runConnectivity,
	})
}

type connectivityWith struct {
	From      scenarios.PodRef `json:"from" required:"true" doc:"the pod that sends"`
	To        scenarios.PodRef `json:"to" required:"true" doc:"the pod that answers"`
	BothWays  bool             `json:"bothWays" doc:"also from to to from"`
	Protocols []probe.Protocol `json:"protocols" doc:"the probes"`
	Label     string           `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

func runConnectivity(ctx context.Context, s *scenarios.Stage, w connectivityWith, _ none) error {
	label := s.Label(w.Label)
	pairs := [][2]string{{string(w.From), string(w.To)}}
	if w.BothWays {
		pairs = append(pairs, [2]string{string(w.To), string(w.From)})
	}
	for _, p := range w.Protocols {
		for _, c := range pairs {
			s.Check(fmt.Sprintf("%s: %s %s -> %s delivered", label, p, c[0], c[1]),
				"the answer of the echo server in "+c[1], probe.Exchange(ctx, s.T, p, c[0], c[1]))
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"time"

	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[podPairWith, none]{
		Name: "ttl-expiry",
		Summary: "a ping with TTL 1 from a pod to a pod of another node: the pod's own node answers ICMP time " +
			"exceeded (the datapath's forwarding must leave TTL-1 packets to the stack, as a router does), " +
			"and no echo reply comes back",
		Agents: true,
		Run:    runTTLExpiry,
	})
}

// timeExceeded matches iputils ping's line for an ICMP time exceeded answer.
var timeExceeded = regexp.MustCompile(`From ([0-9.]+)[^\n]*Time to live exceeded`)

func runTTLExpiry(ctx context.Context, s *scenarios.Stage, w podPairWith, _ none) error {
	from, err := s.T.Pod(string(w.From))
	if err != nil {
		return err
	}
	to, err := s.T.Pod(string(w.To))
	if err != nil {
		return err
	}
	// The node's addresses, from the topology: its interfaces and the pods' gateway.
	owned := map[netip.Addr]bool{from.Gateway: true}
	ifs, err := s.T.Interfaces(from.Node)
	if err != nil {
		return err
	}
	for _, ifc := range ifs {
		if ifc.Address.IsValid() {
			owned[ifc.Address.Addr()] = true
		}
	}
	out, _ := probe.Exec(ctx, s.T, 3*time.Second, string(w.From), "ping", "-n", "-c1", "-W2", "-t", "1", to.IP.String())
	err = nil
	switch m := timeExceeded.FindSubmatch(out); {
	case m == nil:
		err = fmt.Errorf("no time exceeded answer; ping printed %q", out)
	case !owned[netip.MustParseAddr(string(m[1]))]:
		err = fmt.Errorf("time exceeded came from %s, not from %s (its addresses and the pods' gateway %s); ping printed %q",
			m[1], from.Node, from.Gateway, out)
	case regexp.MustCompile(`bytes from`).Match(out):
		err = fmt.Errorf("an echo reply came back: the TTL-1 request was forwarded; ping printed %q", out)
	}
	s.Check(fmt.Sprintf("%s: TTL 1 from %s to %s expires at %s (ICMP time exceeded from the node)", s.Label(w.Label), w.From, w.To, from.Node),
		fmt.Sprintf("ping -t 1 %s in %s", to.IP, w.From), err)
	return nil
}

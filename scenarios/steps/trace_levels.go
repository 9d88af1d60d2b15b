// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"

	"podpath/datapath/config"
	"podpath/datapath/trace"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[podPairWith, none]{
		Name: "trace-aggregation",
		Summary: "an ICMP exchange between two pods, and the trace records both nodes emit for it, against what " +
			"the configured monitor-aggregation level lets through: none and low everything, medium drops, " +
			"redirects and exceptional passes but no routine pass, maximum drops only",
		Agents: true,
		Run:    runTraceAggregation,
	})
}

// routinePasses are the pass reasons trace.h documents as routine (the stack simply
// takes the packet): medium aggregation leaves them out; the exceptions (TTL expired,
// FIB errors, frag-needed, ...) stay.
var routinePasses = map[string]bool{
	"PASS_NONE": true, "PASS_NOT_IPV4": true, "PASS_LEGACY_HOST_ROUTING": true, "PASS_TO_HOST": true,
	"PASS_NOT_ENDPOINT": true, "PASS_OUTSIDE_NATIVE_CIDR": true, "PASS_TUNNEL_MODE": true,
	"PASS_NO_TUNNEL_ENDPOINT": true, "PASS_TO_OVERLAY": true, "PASS_FIB_NOT_FWDED": true,
}

func runTraceAggregation(ctx context.Context, s *scenarios.Stage, w podPairWith, _ none) error {
	from, err := s.T.Pod(string(w.From))
	if err != nil {
		return err
	}
	to, err := s.T.Pod(string(w.To))
	if err != nil {
		return err
	}
	level := effectiveConfig(s).MonitorAggregation
	traces, err := s.OpenTraces(s.T, from.Node, to.Node)
	if err != nil {
		return err
	}
	defer traces.Close()
	xerr := probe.Exchange(ctx, s.T, probe.ICMP, string(w.From), string(w.To))
	if err := traces.Collect(); err != nil {
		return err
	}
	n := traces.Names()
	var redirects, routine, total int
	var dump string
	for _, node := range []string{from.Node, to.Node} {
		recs := traces.Find(node, func(r trace.Record) bool {
			return r.Pkt.IPProto == 1 && (r.Pkt.Src == from.IP && r.Pkt.Dst == to.IP || r.Pkt.Src == to.IP && r.Pkt.Dst == from.IP)
		})
		for _, r := range recs {
			total++
			switch v := n.Verdict(r.Verdict); {
			case v == "VERDICT_REDIRECT" || v == "VERDICT_REDIRECT_PEER" || v == "VERDICT_REDIRECT_NEIGH":
				redirects++
			case v == "VERDICT_PASS" && routinePasses[n.PassReason(r.PassReason)]:
				routine++
			}
		}
		dump += formatRecords(n, node, recs)
		if from.Node == to.Node {
			break
		}
	}
	errs := []error{xerr}
	switch {
	case level >= config.AggregationMaximum:
		if total > 0 {
			errs = append(errs, fmt.Errorf("maximum traces drops only, yet %d records of the exchange were emitted", total))
		}
	default:
		if redirects == 0 {
			errs = append(errs, fmt.Errorf("no redirect record: level %s traces every redirect", level))
		}
		if level == config.AggregationMedium && routine > 0 {
			errs = append(errs, fmt.Errorf("%d routine pass record(s): medium leaves them out", routine))
		}
	}
	err = errors.Join(errs...)
	if err != nil {
		err = fmt.Errorf("%w\nrecords of the exchange:\n%s", err, dump)
	}
	s.Check(fmt.Sprintf("%s: monitor-aggregation %s: the records of an ICMP exchange %s <-> %s are those the level lets through (%d redirects, %d routine passes)",
		s.Label(w.Label), level, w.From, w.To, redirects, routine),
		fmt.Sprintf("trace rings of %s and %s", from.Node, to.Node), err)
	return nil
}

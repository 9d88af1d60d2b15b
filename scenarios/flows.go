// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"podpath/internal/capture"
	"podpath/scenarios/hops"
	"podpath/topology"
)

// RecordFlow adds a packet path to the run's report: hops as planned, seen and err as
// hops.VerifyPath returned them; s (may be nil) names each hop's pcap and, when the path
// failed, finds the packet as the failing hop saw it, if it was there at all.
func (r *Run) RecordFlow(name string, s *capture.Session, path []hops.Hop, seen []capture.Packet, err error) {
	o := hops.FlowOptions{Kind: r.memberKind}
	if s != nil {
		o.Pcap = func(h hops.Hop) string { return s.PcapPath(h.Member, h.Interface) }
		if err != nil && len(seen) > 0 && len(seen) < len(path) {
			h := path[len(seen)]
			for _, p := range s.Packets(h.Member, h.Interface, hops.SamePacket(seen[0])) {
				if p.Outgoing == h.Outgoing {
					o.AtFailure = &p
					break
				}
			}
		}
	}
	r.Flows = append(r.Flows, hops.NewFlowRecord(name, path, seen, err, o))
}

// VerifyPath is hops.VerifyPath that also records the path as flow name in the report.
func (r *Run) VerifyPath(name string, s *capture.Session, path []hops.Hop, f capture.Filter) ([]capture.Packet, error) {
	seen, err := hops.VerifyPath(s, path, f)
	r.RecordFlow(name, s, path, seen, err)
	return seen, err
}

func (r *Run) memberKind(member string) topology.Kind {
	for _, t := range r.topologies {
		if m, err := t.Member(member); err == nil {
			return m.Kind
		}
	}
	return ""
}

// RecordCheckedFlow adds a packet checked hop by hop against expectations (the `path`
// step) to the run's report; s (may be nil) names each hop's pcap.
func (r *Run) RecordCheckedFlow(name string, s *capture.Session, hs []hops.ExpectedHop, err error) {
	o := hops.FlowOptions{Kind: r.memberKind}
	if s != nil {
		o.Pcap = func(h hops.Hop) string { return s.PcapPath(h.Member, h.Interface) }
	}
	r.Flows = append(r.Flows, hops.NewCheckedFlowRecord(name, hs, err, o))
}

// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"slices"

	"podpath/datapath/config"
)

// WithDatapath returns a copy of s for nodes whose agents run cilium-config c: with
// bpf-lb-acceleration on (native or best-effort) every node gets the NIC model
// (NodeSpec.NICModel), so the wire is NIC-like from the moment the links exist,
// whichever step or benchmark then sends over it. Nil c: Cilium's defaults (off).
func (s *Spec) WithDatapath(c *config.Config) *Spec {
	r := s.Clone()
	if c == nil || c.LBAcceleration == config.LBAccelerationDisabled {
		return r
	}
	for i := range r.Nodes {
		r.Nodes[i].NICModel = true
	}
	return r
}

// NICModelSegments are the segments whose wire the NIC model covers: those of a
// device (NodeSpec.Devices, default every interface) of a node with NICModel.
// A segment is one wire: every interface on it must send complete checksums, since
// any of them may send to the accelerated device.
func (s *Spec) NICModelSegments() []string {
	var segs []string
	for _, n := range s.Nodes {
		if !n.NICModel {
			continue
		}
		for _, ifc := range n.Interfaces {
			if len(n.Devices) > 0 && !slices.Contains(n.Devices, ifc.Name) {
				continue
			}
			if !slices.Contains(segs, ifc.Segment) {
				segs = append(segs, ifc.Segment)
			}
		}
	}
	return segs
}

// NICModelDevice says whether member's interface ifname is a device of a node with
// the NIC model: its bridge port gets the NAPI program.
func (s *Spec) NICModelDevice(member, ifname string) bool {
	for _, n := range s.Nodes {
		if n.Name == member && n.NICModel {
			for _, ifc := range n.Interfaces {
				if ifc.Name == ifname {
					return len(n.Devices) == 0 || slices.Contains(n.Devices, ifname)
				}
			}
		}
	}
	return false
}

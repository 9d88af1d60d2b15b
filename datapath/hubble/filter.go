// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"net/netip"
	"slices"
	"strings"

	flowpb "github.com/cilium/cilium/api/v1/flow"
)

// Matches reports whether f passes a request's filters: it matches one of the
// whitelist filters (or there are none) and none of the blacklist ones. Inside one
// filter every field given must match; inside a field, any of its values.
func Matches(f *flowpb.Flow, whitelist, blacklist []*flowpb.FlowFilter) bool {
	if len(whitelist) > 0 && !slices.ContainsFunc(whitelist, func(ff *flowpb.FlowFilter) bool { return matchOne(f, ff) }) {
		return false
	}
	return !slices.ContainsFunc(blacklist, func(ff *flowpb.FlowFilter) bool { return matchOne(f, ff) })
}

func matchOne(f *flowpb.Flow, ff *flowpb.FlowFilter) bool {
	if len(ff.GetVerdict()) > 0 && !slices.Contains(ff.GetVerdict(), f.GetVerdict()) {
		return false
	}
	if !matchIPs(f.GetIP().GetSource(), ff.GetSourceIp()) || !matchIPs(f.GetIP().GetDestination(), ff.GetDestinationIp()) {
		return false
	}
	if !matchPods(f.GetSource(), ff.GetSourcePod()) || !matchPods(f.GetDestination(), ff.GetDestinationPod()) {
		return false
	}
	if !matchIdentity(f.GetSource(), ff.GetSourceIdentity()) || !matchIdentity(f.GetDestination(), ff.GetDestinationIdentity()) {
		return false
	}
	if len(ff.GetProtocol()) > 0 && !slices.ContainsFunc(ff.GetProtocol(), func(p string) bool { return strings.EqualFold(p, protocol(f)) }) {
		return false
	}
	if len(ff.GetNodeName()) > 0 && !slices.ContainsFunc(ff.GetNodeName(), func(n string) bool { return n == f.GetNodeName() }) {
		return false
	}
	return true
}

// matchIPs: an address or a CIDR, as hubble observe --ip-src passes them.
func matchIPs(ip string, want []string) bool {
	if len(want) == 0 {
		return true
	}
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return false
	}
	for _, w := range want {
		if p, err := netip.ParsePrefix(w); err == nil && p.Contains(addr) {
			return true
		}
		if a, err := netip.ParseAddr(w); err == nil && a == addr {
			return true
		}
	}
	return false
}

// matchPods: "namespace/pod-prefix" (the hubble CLI adds the namespace), or a pod
// name prefix alone.
func matchPods(ep *flowpb.Endpoint, want []string) bool {
	if len(want) == 0 {
		return true
	}
	for _, w := range want {
		ns, pod, ok := strings.Cut(w, "/")
		if !ok {
			ns, pod = "", w
		}
		if ns != "" && ns != ep.GetNamespace() {
			continue
		}
		if ep.GetPodName() != "" && strings.HasPrefix(ep.GetPodName(), pod) {
			return true
		}
		if pod == "" && ep.GetNamespace() != "" {
			return true
		}
	}
	return false
}

func matchIdentity(ep *flowpb.Endpoint, want []uint32) bool {
	return len(want) == 0 || slices.Contains(want, ep.GetIdentity())
}

// protocol is the flow's L4 protocol as hubble's --protocol names it.
func protocol(f *flowpb.Flow) string {
	switch {
	case f.GetL4().GetTCP() != nil:
		return "tcp"
	case f.GetL4().GetUDP() != nil:
		return "udp"
	case f.GetL4().GetICMPv4() != nil:
		return "icmp"
	}
	return ""
}

// SPDX-License-Identifier: Apache-2.0

package hops_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"podpath/scenarios/hops/hopstest"
)

// A flow record names the program at every hop and what changed there, and marks the
// hops of a failed path.
func TestFlowRecordChanges(t *testing.T) {
	f := hopstest.NativeFlow(t, "L2: ICMP echo request pod1a -> pod2a", nil, 7)
	if !f.Passed() || len(f.Hops) != 7 {
		t.Fatalf("flow %+v", f)
	}
	for _, tc := range []struct {
		hop     int
		program string
		changed []string
		change  string
	}{
		{0, "pod (sends)", nil, ""},
		{1, "from-container (tcx ingress)", nil, ""},
		{2, "to-netdev (tcx egress)", []string{"outer.eth.src", "outer.eth.dst", "outer.ttl"}, "TTL 64 → 63"},
		{3, "bridge", nil, ""},
		{5, "from-netdev (tcx ingress)", nil, ""},
		{6, "pod (receives)", []string{"outer.eth.src", "outer.eth.dst", "outer.ttl"}, "MACs rewritten"},
	} {
		h := f.Hops[tc.hop]
		if h.Program != tc.program {
			t.Errorf("hop %d program %q, want %q", tc.hop, h.Program, tc.program)
		}
		if len(h.Changed) != len(tc.changed) {
			t.Errorf("hop %d changed %v, want %v", tc.hop, h.Changed, tc.changed)
		}
		for _, k := range tc.changed {
			if !h.Changed[k] {
				t.Errorf("hop %d: %s not marked changed: %v", tc.hop, k, h.Changed)
			}
		}
		if tc.change != "" && !strings.Contains(strings.Join(h.Changes, "\n"), tc.change) {
			t.Errorf("hop %d changes %q, want one with %q", tc.hop, h.Changes, tc.change)
		}
	}
	if got := f.Hops[2].Offset; got != 14600*time.Nanosecond {
		t.Errorf("hop 2 offset %s", got)
	}

	v := hopstest.VXLANFlow(t)
	enc := v.Hops[1]
	if enc.Tunnel != "VXLAN vni=12345" || enc.Inner == nil || enc.Outer.IPSrc != "192.168.0.1" || enc.Inner.TTL != 63 {
		t.Fatalf("encapsulated hop %+v", enc)
	}
	if !strings.HasPrefix(enc.Changes[0], "encapsulated: outer IPv4 192.168.0.1 > 192.168.0.2, UDP 51234 > 8472, VXLAN vni=12345") ||
		!enc.Changed["tunnel"] || !enc.Changed["inner.ttl"] || enc.Changed["inner.ip.src"] {
		t.Errorf("encapsulation changes %q %v", enc.Changes, enc.Changed)
	}
	dec := v.Hops[2]
	if dec.Program != "from-overlay (tcx ingress)" || !strings.HasPrefix(dec.Changes[0], "decapsulated: VXLAN vni=12345") || dec.Changed["outer.ttl"] {
		t.Errorf("decapsulated hop %+v", dec)
	}

	failed := hopstest.NativeFlow(t, "routed: ICMP echo request pod1a -> pod2a", errors.New("packet not seen at hop 3"), 3)
	states := []string{}
	for _, h := range failed.Hops {
		states = append(states, h.State)
	}
	if got := strings.Join(states, " "); got != "seen seen seen failed unchecked unchecked unchecked" {
		t.Errorf("states of a path failing at hop 3: %s", got)
	}
}

// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"net/netip"
	"testing"

	flowpb "github.com/cilium/cilium/api/v1/flow"

	"podpath/datapath/trace"
)

type fakeResolver map[netip.Addr]EndpointInfo

func (f fakeResolver) Endpoint(ip netip.Addr) (EndpointInfo, bool) { e, ok := f[ip]; return e, ok }
func (f fakeResolver) Service(addr netip.AddrPort, _ uint8) (string, string, bool) {
	return "default", "web", addr == netip.MustParseAddrPort("10.96.0.10:80")
}

func code(t *testing.T, m map[uint64]string, name string) uint16 {
	t.Helper()
	for v, s := range m {
		if s == name {
			return uint16(v)
		}
	}
	t.Fatalf("no %s in the datapath's enums", name)
	return 0
}

func TestFlow(t *testing.T) {
	names, err := trace.DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	a, b := netip.MustParseAddr("10.244.1.10"), netip.MustParseAddr("10.244.1.11")
	res := fakeResolver{a: {Identity: 300, Namespace: "default", PodName: "pod1a"}, b: {Identity: 301, Namespace: "default", PodName: "pod1b"}}
	conv := NewConverter(names, "node1", res)
	pkt := trace.Summary{Src: a, Dst: b, EthProto: 0x0800, IPProto: 1, ICMPType: 8, HasIPv4: true}
	tcp := trace.Summary{Src: a, Dst: b, EthProto: 0x0800, IPProto: 6, SrcPort: 40000, DstPort: 8080, HasIPv4: true, HasTransport: true}
	for _, tc := range []struct {
		name    string
		rec     trace.Record
		verdict flowpb.Verdict
		reason  flowpb.DropReason
		point   flowpb.TraceObservationPoint
		reply   *bool
		service string
	}{
		{"redirect peer", trace.Record{ObsPoint: code(t, names.ObsPoints, "OBS_FROM_CONTAINER"), Verdict: code(t, names.Verdicts, "VERDICT_REDIRECT_PEER"), Pkt: pkt},
			flowpb.Verdict_FORWARDED, 0, flowpb.TraceObservationPoint_FROM_ENDPOINT, nil, ""},
		{"spoofed", trace.Record{ObsPoint: code(t, names.ObsPoints, "OBS_FROM_NETDEV"), Verdict: code(t, names.Verdicts, "VERDICT_DROP"),
			DropReason: code(t, names.DropReasons, "DROP_SPOOFED_SOURCE"), Pkt: pkt},
			flowpb.Verdict_DROPPED, flowpb.DropReason_INVALID_SOURCE_IP, flowpb.TraceObservationPoint_FROM_NETWORK, nil, ""},
		{"unmapped reason", trace.Record{Verdict: code(t, names.Verdicts, "VERDICT_DROP"), DropReason: code(t, names.DropReasons, "DROP_TUNNEL_ECN"), Pkt: pkt},
			flowpb.Verdict_DROPPED, flowpb.DropReason_DROP_REASON_UNKNOWN, flowpb.TraceObservationPoint_UNKNOWN_POINT, nil, ""},
		{"service new", trace.Record{ObsPoint: code(t, names.ObsPoints, "OBS_FROM_CONTAINER"), Verdict: code(t, names.Verdicts, "VERDICT_REDIRECT_PEER"), Pkt: tcp,
			LB: trace.LBInfo{Action: uint8(code(t, names.LBActions, "TRACE_LB_DNAT")), CT: uint8(code(t, names.CTStates, "TRACE_CT_NEW")),
				OrigDst: netip.MustParseAddrPort("10.96.0.10:80")}},
			flowpb.Verdict_FORWARDED, 0, flowpb.TraceObservationPoint_FROM_ENDPOINT, new(false), "web"},
		{"reply", trace.Record{Verdict: code(t, names.Verdicts, "VERDICT_REDIRECT_PEER"), Pkt: tcp,
			LB: trace.LBInfo{Action: uint8(code(t, names.LBActions, "TRACE_LB_REVNAT")), CT: uint8(code(t, names.CTStates, "TRACE_CT_REPLY"))}},
			flowpb.Verdict_FORWARDED, 0, flowpb.TraceObservationPoint_UNKNOWN_POINT, new(true), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := conv.Flow(tc.rec)
			if f.GetVerdict() != tc.verdict || f.GetDropReasonDesc() != tc.reason || f.GetTraceObservationPoint() != tc.point {
				t.Errorf("got %v %v %v, want %v %v %v", f.GetVerdict(), f.GetDropReasonDesc(), f.GetTraceObservationPoint(), tc.verdict, tc.reason, tc.point)
			}
			if f.GetSource().GetPodName() != "pod1a" || f.GetDestination().GetIdentity() != 301 || f.GetNodeName() != "node1" {
				t.Errorf("endpoints: %v -> %v on %s", f.GetSource(), f.GetDestination(), f.GetNodeName())
			}
			if (tc.reply == nil) != (f.GetIsReply() == nil) || (tc.reply != nil && *tc.reply != f.GetIsReply().GetValue()) {
				t.Errorf("is_reply %v, want %v", f.GetIsReply(), tc.reply)
			}
			if f.GetDestinationService().GetName() != tc.service {
				t.Errorf("service %q, want %q", f.GetDestinationService().GetName(), tc.service)
			}
		})
	}
}

func TestMatches(t *testing.T) {
	f := &flowpb.Flow{Verdict: flowpb.Verdict_DROPPED, IP: &flowpb.IP{Source: "10.244.1.10", Destination: "10.244.1.11"},
		Source: &flowpb.Endpoint{PodName: "pod1a", Namespace: "default", Identity: 300},
		L4:     &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: 8}}}}
	for _, tc := range []struct {
		name string
		w, b []*flowpb.FlowFilter
		want bool
	}{
		{"none", nil, nil, true},
		{"verdict", []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}, nil, true},
		{"other verdict", []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_FORWARDED}}}, nil, false},
		{"pod", []*flowpb.FlowFilter{{SourcePod: []string{"default/pod1"}}}, nil, true},
		{"pod other ns", []*flowpb.FlowFilter{{SourcePod: []string{"kube-system/pod1a"}}}, nil, false},
		{"cidr", []*flowpb.FlowFilter{{DestinationIp: []string{"10.244.1.0/24"}}}, nil, true},
		{"identity", []*flowpb.FlowFilter{{SourceIdentity: []uint32{301}}}, nil, false},
		{"protocol and", []*flowpb.FlowFilter{{Protocol: []string{"tcp"}, SourceIdentity: []uint32{300}}}, nil, false},
		{"either filter", []*flowpb.FlowFilter{{Protocol: []string{"tcp"}}, {Protocol: []string{"ICMP"}}}, nil, true},
		{"blacklist", nil, []*flowpb.FlowFilter{{SourceIp: []string{"10.244.1.10"}}}, false},
	} {
		if got := Matches(f, tc.w, tc.b); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Add(&flowpb.Flow{NodeName: string(rune('a' + i))})
	}
	held, seq, _ := r.Snapshot()
	if len(held) != 3 || held[0].NodeName != "c" || held[2].NodeName != "e" || seq != 5 {
		t.Fatalf("snapshot %v seq %d", held, seq)
	}
	r.Add(&flowpb.Flow{NodeName: "f"})
	fresh, seq, _ := r.Since(5)
	if len(fresh) != 1 || fresh[0].NodeName != "f" || seq != 6 {
		t.Fatalf("since: %v seq %d", fresh, seq)
	}
	if n, c, s := r.Stats(); n != 3 || c != 3 || s != 6 {
		t.Fatalf("stats %d %d %d", n, c, s)
	}
}

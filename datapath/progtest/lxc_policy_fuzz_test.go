// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"testing"

	"podpath/datapath/bpfobj"
	"podpath/datapath/identity"
	"podpath/datapath/policy"
	"podpath/datapath/testrun"
)

// fuzzEntries decodes up to 12 policy entries of pod B's ingress from data, 6 bytes
// each: kind, peer, protocol, port (2 bytes), prefix level. Later entries of the same
// key replace earlier ones, as the map does.
func fuzzEntries(data []byte) []policy.Entry {
	peers := []identity.ID{0, idPodA, idOther}
	protos := []uint8{policy.ProtoTCP, policy.ProtoUDP}
	byKey := map[bpfobj.LxcPolicyKey]int{}
	var out []policy.Entry
	for i := 0; i+6 <= len(data) && len(out) < 12; i += 6 {
		b := data[i : i+6]
		e := policy.Entry{Dir: policy.Ingress, Kind: policy.Allow, Rule: uint32(i/6 + 1)}
		if b[0]&1 == 1 {
			e.Kind = policy.Deny
		}
		switch lvl := int(b[5]) % 19; {
		case lvl == 0:
			e.Level, e.Kind = policy.LevelEndpoint, policy.DefaultDeny
		case lvl == 1:
			e.Level = policy.LevelIdentity
		default:
			e.Level = policy.LevelProto + lvl - 2 // 0..16 port bits
		}
		if e.Level > policy.LevelEndpoint {
			e.Identity = peers[int(b[1])%len(peers)]
		}
		if e.Level > policy.LevelIdentity {
			e.Proto = protos[int(b[2])%len(protos)]
		}
		if bits := e.Level - policy.LevelProto; bits > 0 {
			e.Port = (uint16(b[3])<<8 | uint16(b[4])) & (uint16(0xffff) << (16 - bits))
		}
		k := e.Key(lxcBIfindex)
		if j, ok := byKey[k]; ok {
			out[j] = e
			continue
		}
		byKey[k] = len(out)
		out = append(out, e)
	}
	return out
}

// FuzzPolicyLookup: for any set of pod B's ingress entries and any TCP or UDP port,
// from_container decides what policy.Evaluate (the reference model) decides, with the
// drop reason of the entry kind that decided.
func FuzzPolicyLookup(f *testing.F) {
	f.Add([]byte{0, 1, 0, 0, 80, 18}, true, uint16(80))
	f.Add([]byte{0, 1, 0, 0, 80, 18, 0, 0, 0, 0, 0, 0}, true, uint16(81))
	f.Add([]byte{1, 0, 0, 0, 0, 1, 0, 1, 0, 0, 80, 18}, true, uint16(80))
	f.Add([]byte{0, 1, 0, 0x1f, 0x40, 15, 1, 2, 1, 0, 0, 2}, false, uint16(8005))
	e := newPolicyEnv(f, "polfuzz", fixtureConfig())
	f.Fuzz(func(t *testing.T, data []byte, tcp bool, port uint16) {
		entries := fuzzEntries(data)
		e.program(t, nil, entries)
		e.flushCT(t)
		proto, pkt := uint8(policy.ProtoUDP), udpTo(fromPodA(podBIP), 5353, port)
		if tcp {
			proto, pkt = policy.ProtoTCP, tcpTo(fromPodA(podBIP), 40000, port)
		}
		want := policy.Evaluate(entries, policy.Ingress, idPodA, proto, port)
		v, recs := e.run(t, e.f.lxc0, pkt)
		wantV, reason := testrun.Redirect, ""
		switch want {
		case policy.Deny:
			wantV, reason = testrun.Shot, "VERDICT_DROP/DROP_POLICY_DENY_RULE@OBS_FROM_CONTAINER"
		case policy.DefaultDeny:
			wantV, reason = testrun.Shot, "VERDICT_DROP/DROP_POLICY_DENIED@OBS_FROM_CONTAINER"
		}
		if v != wantV || (reason != "" && (len(recs) == 0 || recs[len(recs)-1] != reason)) {
			t.Fatalf("entries %+v, %d/%d: verdict %v records %v; model says kind %d", entries, proto, port, v, recs, want)
		}
	})
}

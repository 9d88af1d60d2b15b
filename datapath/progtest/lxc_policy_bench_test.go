// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"podpath/datapath/bpfobj"
	"podpath/datapath/identity"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/policy"
	"podpath/datapath/testrun"
)

// benchEgressEP is from_container's device in a benchmark run: test-run without a
// context runs on the namespace's loopback.
const benchEgressEP = 1

func policyBenchDatapath(b *testing.B, suffix string, on bool) (*fibNS, *loader.Datapath) {
	f := setupFibNS(b, suffix)
	cfg := fixtureConfig()
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	cfg.PolicyVerdictEvents = 0
	if !on {
		cfg.PolicyEnabled = 0
	}
	d, _ := loadDatapath(b, cfg)
	for _, c := range []maps.IPCacheEntry{
		{Prefix: netip.PrefixFrom(podAIP, 32), Identity: uint32(idPodA)},
		{Prefix: netip.PrefixFrom(podBIP, 32), Identity: uint32(idPodB)},
	} {
		if err := d.Maps.IPCacheUpsert(c); err != nil {
			b.Fatal(err)
		}
	}
	return f, d
}

// ruleEntries are n ingress allow entries over n/10 identities (10 ports each, 80
// among them for pod A's identity), with the default-deny marker.
func ruleEntries(n int) []policy.Entry {
	out := []policy.Entry{{Dir: policy.Ingress, Level: policy.LevelEndpoint, Kind: policy.DefaultDeny}}
	ids := max(n/10, 1)
	for i := 0; i < ids; i++ {
		id := identity.ID(2000 + i)
		if i == 0 {
			id = idPodA
		}
		for p := 0; p < 10 && len(out) <= n; p++ {
			out = append(out, policy.Entry{Dir: policy.Ingress, Identity: id, Proto: policy.ProtoTCP,
				Port: uint16(80 + p*100), Level: policy.LevelFull, Kind: policy.Allow, Rule: 1})
		}
	}
	return out
}

// BenchmarkPolicyEstablished: an established flow pod A -> pod B (same node), with
// policy off (enable-policy: never) and on (egress and ingress policy selecting both
// pods, the flow allowed): on costs one conntrack lookup per direction checked.
func BenchmarkPolicyEstablished(b *testing.B) {
	pkt := fromPodA(podBIP).tcpSYN()
	for _, on := range []bool{false, true} {
		name := map[bool]string{false: "policy-off", true: "policy-on"}[on]
		b.Run(name, func(b *testing.B) {
			f, d := policyBenchDatapath(b, "pbe"+name[7:], on)
			if on {
				pm := &policy.Maps{Policy: d.Lxc.Policy, Revision: d.Lxc.PolicyRev}
				egress := []policy.Entry{{Dir: policy.Egress, Level: policy.LevelEndpoint, Kind: policy.DefaultDeny},
					{Dir: policy.Egress, Identity: idPodB, Level: policy.LevelIdentity, Kind: policy.Allow, Rule: 1}}
				if err := pm.Sync(benchEgressEP, egress); err != nil {
					b.Fatal(err)
				}
				if err := pm.Sync(lxcBIfindex, ruleEntries(10)); err != nil {
					b.Fatal(err)
				}
			}
			testrun.BenchPath(b, f.path, d.FromContainer, pkt, testrun.Redirect, nil)
		})
	}
}

// BenchmarkPolicyLookup: a new flow (no conntrack entry) judged against 10 and 10,000
// ingress rules over 1 and 1,000 identities: the LPM lookup does not grow with the
// number of rules.
func BenchmarkPolicyLookup(b *testing.B) {
	pkt := fromPodA(podBIP).tcpSYN()
	for _, n := range []int{10, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			f, d := policyBenchDatapath(b, fmt.Sprintf("pbl%d", n), true)
			pm := &policy.Maps{Policy: d.Lxc.Policy, Revision: d.Lxc.PolicyRev}
			if err := pm.Sync(lxcBIfindex, ruleEntries(n)); err != nil {
				b.Fatal(err)
			}
			reset := func() error { return flushPolicyCT(d) }
			testrun.BenchPath(b, f.path, d.FromContainer, pkt, testrun.Redirect, reset)
		})
	}
}

func flushPolicyCT(d *loader.Datapath) error {
	var k bpfobj.LxcPolicyCtKey
	var v bpfobj.LxcPolicyCtEntry
	var keys []bpfobj.LxcPolicyCtKey
	it := d.Lxc.PolicyCt.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for i := range keys {
		if err := d.Lxc.PolicyCt.Delete(&keys[i]); err != nil {
			return err
		}
	}
	return it.Err()
}

// TestPolicyProgram10k: 10,000 rules over 1,000 identities (one policy, 1,000 peer
// label sets, 10 ports each) are computed and written into the policy map in under
// a second, as the agent does.
func TestPolicyProgram10k(t *testing.T) {
	e := newPolicyEnv(t, "pol10k", fixtureConfig())
	var peers []policy.Peer
	var values []string
	for i := 0; i < 1000; i++ {
		v := fmt.Sprintf("c%d", i)
		values = append(values, v)
		peers = append(peers, policy.Peer{ID: identity.ID(5000 + i), Labels: map[string]string{"client": v, policy.NamespaceLabel: "default"}})
	}
	var ports strings.Builder
	for p := 0; p < 10; p++ {
		fmt.Fprintf(&ports, "{port: \"%d\", protocol: TCP},", 8000+p*7)
	}
	doc := fmt.Sprintf("apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: big}\nspec:\n  endpointSelector: {matchLabels: {app: b}}\n"+
		"  ingress: [{fromEndpoints: [{matchExpressions: [{key: client, operator: In, values: [%s]}]}], toPorts: [{ports: [%s]}]}]\n",
		strings.Join(values, ","), strings.TrimSuffix(ports.String(), ","))
	start := time.Now()
	pols, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ep := policy.Endpoint{Labels: map[string]string{"app": "b", policy.NamespaceLabel: "default"}}
	entries := policy.Compute("default", pols, ep, peers, nil)
	computed := time.Since(start)
	if err := e.pm.Sync(lxcBIfindex, entries); err != nil {
		t.Fatal(err)
	}
	if err := e.pm.Bump(); err != nil {
		t.Fatal(err)
	}
	took := time.Since(start)
	t.Logf("%d entries (10,000 rules over 1,000 identities + default deny): computed in %v, programmed in %v total", len(entries), computed, took)
	if len(entries) != 10001 {
		t.Errorf("%d entries, want 10,001", len(entries))
	}
	if took > time.Second {
		t.Errorf("programming took %v, want under 1s", took)
	}
}

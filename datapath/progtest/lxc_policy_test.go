// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/identity"
	"podpath/datapath/maps"
	"podpath/datapath/policy"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
)

// Identities of the policy fixtures, in the ipcache: pod A (the sender, lxc0), pod B
// (same node, lxcBIfindex) and a third one nobody allows.
const (
	idPodA  = identity.ID(1000)
	idPodB  = identity.ID(1001)
	idOther = identity.ID(1002)
)

// policyEnv is node 1 with both pods' identities in the ipcache and pod A as a local
// endpoint too, so replies can be delivered to it.
type policyEnv struct {
	*fixtureEnv
	pm *policy.Maps
}

func newPolicyEnv(t testing.TB, suffix string, cfg bpfconfig.Config) *policyEnv {
	t.Helper()
	f := setupFibNS(t, suffix)
	d, rd := loadDatapath(t, cfg)
	e := &fixtureEnv{f: f, d: d, rd: rd}
	for _, c := range []maps.IPCacheEntry{
		{Prefix: netip.PrefixFrom(podAIP, 32), Identity: uint32(idPodA)},
		{Prefix: netip.PrefixFrom(podBIP, 32), Identity: uint32(idPodB)},
		{Prefix: netip.PrefixFrom(remotePodIP, 32), Identity: uint32(idOther)},
	} {
		if err := e.d.Maps.IPCacheUpsert(c); err != nil {
			t.Fatal(err)
		}
	}
	podA := maps.Endpoint{IP: podAIP, Ifindex: uint32(e.f.lxc0), MAC: podAMAC, HostMAC: lxcAMAC, Identity: uint32(idPodA)}
	if err := e.d.Maps.EndpointUpsert(podA); err != nil {
		t.Fatal(err)
	}
	return &policyEnv{fixtureEnv: e, pm: &policy.Maps{Policy: e.d.Lxc.Policy, Revision: e.d.Lxc.PolicyRev}}
}

// program makes the entries of pod A (egress) and pod B (ingress) exactly these,
// forgets every tracked flow and raises the revision.
func (e *policyEnv) program(t testing.TB, egressA, ingressB []policy.Entry) {
	t.Helper()
	if err := e.pm.Sync(uint32(e.f.lxc0), egressA); err != nil {
		t.Fatal(err)
	}
	if err := e.pm.Sync(lxcBIfindex, ingressB); err != nil {
		t.Fatal(err)
	}
	if err := e.pm.Bump(); err != nil {
		t.Fatal(err)
	}
}

func (e *policyEnv) flushCT(t testing.TB) {
	t.Helper()
	var k bpfobj.LxcPolicyCtKey
	var v bpfobj.LxcPolicyCtEntry
	var keys []bpfobj.LxcPolicyCtKey
	it := e.d.Lxc.PolicyCt.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	for i := range keys {
		_ = e.d.Lxc.PolicyCt.Delete(&keys[i])
	}
}

// run sends pkt through from_container of dev and returns the verdict and the
// records as "VERDICT/DROP_REASON@OBS" strings.
func (e *policyEnv) run(t testing.TB, dev int, pkt []byte) (testrun.Verdict, []string) {
	t.Helper()
	var res testrun.Result
	err := nsutil.Do(e.f.path, func() (err error) {
		res, err = testrun.RunContext(e.d.FromContainer, pkt, e.f.ctx(dev))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := e.rd.Drain()
	if err != nil {
		t.Fatal(err)
	}
	n := names(t)
	var out []string
	for _, r := range recs {
		s := n.Verdict(r.Verdict)
		if r.DropReason != 0 {
			s += "/" + n.DropReason(r.DropReason)
		}
		out = append(out, s+"@"+n.ObsPoint(r.ObsPoint))
	}
	return res.Verdict, out
}

// tcpTo is a TCP SYN from p's source port sport to dport.
func tcpTo(p pktSpec, sport, dport uint16) []byte {
	return testrun.MustBuild(p.eth(), p.ip(layers.IPProtocolTCP),
		&layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: true, Window: 64240, Seq: 1},
		gopacket.Payload(nil))
}

func udpTo(p pktSpec, sport, dport uint16) []byte {
	return testrun.MustBuild(p.eth(), p.ip(layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}, gopacket.Payload(make([]byte, 8)))
}

// entries computes pod B's ingress entries from a rule written as a CNP ingress
// section (YAML), with pod A and B's labels as peers.
func ingressEntries(t *testing.T, rules string) []policy.Entry {
	t.Helper()
	doc := "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: fx}\nspec:\n  endpointSelector: {matchLabels: {app: b}}\n" + rules
	pols, err := policy.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	ns := map[string]string{policy.NamespaceLabel: "default"}
	with := func(k, v string) map[string]string {
		m := map[string]string{k: v}
		for a, b := range ns {
			m[a] = b
		}
		return m
	}
	peers := []policy.Peer{{ID: idPodA, Labels: with("app", "a")}, {ID: idPodB, Labels: with("app", "b")}, {ID: idOther, Labels: with("app", "other")}}
	return policy.Compute("default", pols, policy.Endpoint{Labels: with("app", "b")}, peers, policy.CIDRIdentities(pols))
}

// TestPolicyFixtures: one fixture per rule kind, ingress at the delivery to pod B on
// the same node (from_container of pod A, before redirect_peer) and egress at pod A.
func TestPolicyFixtures(t *testing.T) {
	e := newPolicyEnv(t, "pol", fixtureConfig())
	toB := fromPodA(podBIP)
	const redirected, shot = testrun.Redirect, testrun.Shot
	denied := []string{"VERDICT_POLICY_DENIED/DROP_POLICY_DENIED@OBS_FROM_CONTAINER", "VERDICT_DROP/DROP_POLICY_DENIED@OBS_FROM_CONTAINER"}
	denyRule := []string{"VERDICT_POLICY_DENIED/DROP_POLICY_DENY_RULE@OBS_FROM_CONTAINER", "VERDICT_DROP/DROP_POLICY_DENY_RULE@OBS_FROM_CONTAINER"}
	allowed := []string{"VERDICT_POLICY_ALLOWED@OBS_FROM_CONTAINER", "VERDICT_REDIRECT_PEER@OBS_FROM_CONTAINER"}
	plain := []string{"VERDICT_REDIRECT_PEER@OBS_FROM_CONTAINER"}
	egressMarker := policy.Entry{Dir: policy.Egress, Level: policy.LevelEndpoint, Kind: policy.DefaultDeny}
	for _, tc := range []struct {
		name    string
		egressA []policy.Entry
		rules   string // pod B's ingress, as CNP YAML
		pkt     []byte
		verdict testrun.Verdict
		records []string
	}{
		{name: "no policy: allowed, no verdict event", pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: plain},
		{name: "ingress selected with no rule: default deny", rules: "  ingress: [{}]\n", pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denied},
		{name: "fromEndpoints matchLabels", rules: "  ingress: [{fromEndpoints: [{matchLabels: {app: a}}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: allowed},
		{name: "fromEndpoints not matching", rules: "  ingress: [{fromEndpoints: [{matchLabels: {app: other}}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denied},
		{name: "fromEndpoints matchExpressions NotIn", rules: "  ingress: [{fromEndpoints: [{matchExpressions: [{key: app, operator: NotIn, values: [other]}]}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: allowed},
		{name: "L4 port 80 allowed", rules: "  ingress: [{fromEndpoints: [{}], toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: allowed},
		{name: "L4 port 81 denied", rules: "  ingress: [{fromEndpoints: [{}], toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 81), verdict: shot, records: denied},
		{name: "L4 protocol: udp 80 against a tcp rule", rules: "  ingress: [{toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]}]\n", pkt: udpTo(toB, 5353, 80), verdict: shot, records: denied},
		{name: "L4 protocol ANY covers udp", rules: "  ingress: [{toPorts: [{ports: [{port: \"53\"}]}]}]\n", pkt: udpTo(toB, 5353, 53), verdict: redirected, records: allowed},
		{name: "port range low end", rules: "  ingress: [{toPorts: [{ports: [{port: \"8000\", endPort: 8010, protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 8000), verdict: redirected, records: allowed},
		{name: "port range high end", rules: "  ingress: [{toPorts: [{ports: [{port: \"8000\", endPort: 8010, protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 8010), verdict: redirected, records: allowed},
		{name: "port range past the end", rules: "  ingress: [{toPorts: [{ports: [{port: \"8000\", endPort: 8010, protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 8011), verdict: shot, records: denied},
		{name: "port range below the start", rules: "  ingress: [{toPorts: [{ports: [{port: \"8000\", endPort: 8010, protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 7999), verdict: shot, records: denied},
		{name: "entity all (wildcard identity)", rules: "  ingress: [{fromEntities: [all], toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: allowed},
		{name: "entity cluster", rules: "  ingress: [{fromEntities: [cluster]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: allowed},
		{name: "entity world does not match a pod", rules: "  ingress: [{fromEntities: [world]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denied},
		{name: "entity host does not match a pod", rules: "  ingress: [{fromEntities: [host]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denied},
		{name: "fromCIDR does not match a pod (it has its identity)", rules: "  ingress: [{fromCIDR: [10.244.0.0/16]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denied},
		{name: "deny overrides a narrower allow", rules: "  ingress: [{fromEndpoints: [{matchLabels: {app: a}}], toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]}]\n  ingressDeny: [{fromEndpoints: [{matchLabels: {app: a}}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denyRule},
		{name: "wildcard deny overrides an identity allow", rules: "  ingress: [{fromEndpoints: [{matchLabels: {app: a}}]}]\n  ingressDeny: [{fromEntities: [all], toPorts: [{ports: [{port: \"80\", protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denyRule},
		{name: "deny of another port leaves 80 allowed", rules: "  ingress: [{fromEndpoints: [{matchLabels: {app: a}}]}]\n  ingressDeny: [{fromEntities: [all], toPorts: [{ports: [{port: \"81\", protocol: TCP}]}]}]\n", pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: allowed},
		{name: "egress default deny at pod A", egressA: []policy.Entry{egressMarker}, pkt: tcpTo(toB, 40000, 80), verdict: shot, records: denied},
		{name: "egress allowed to pod B's identity", egressA: []policy.Entry{egressMarker, {Dir: policy.Egress, Identity: idPodB, Level: policy.LevelIdentity, Kind: policy.Allow, Rule: 1}}, pkt: tcpTo(toB, 40000, 80), verdict: redirected, records: allowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var in []policy.Entry
			if tc.rules != "" {
				in = ingressEntries(t, tc.rules)
			}
			e.program(t, tc.egressA, in)
			e.flushCT(t)
			v, recs := e.run(t, e.f.lxc0, tc.pkt)
			if v != tc.verdict || strings.Join(recs, " ") != strings.Join(tc.records, " ") {
				t.Errorf("verdict %v, records %v; want %v, %v (entries %+v)", v, recs, tc.verdict, tc.records, in)
			}
		})
	}
}

// TestPolicyConntrack: the reply of a flow pod A's egress allowed passes pod A's
// ingress default deny through the policy conntrack; an unrelated packet does not;
// an established flow whose policy changes is judged again at its next packet.
func TestPolicyConntrack(t *testing.T) {
	e := newPolicyEnv(t, "polct", fixtureConfig())
	// Pod A: egress allowed to B on tcp/80, ingress default deny.
	egress := []policy.Entry{
		{Dir: policy.Egress, Level: policy.LevelEndpoint, Kind: policy.DefaultDeny},
		{Dir: policy.Egress, Identity: idPodB, Proto: policy.ProtoTCP, Port: 80, Level: policy.LevelFull, Kind: policy.Allow, Rule: 1},
		{Dir: policy.Ingress, Level: policy.LevelEndpoint, Kind: policy.DefaultDeny},
	}
	e.program(t, egress, nil)
	e.flushCT(t)
	if v, recs := e.run(t, e.f.lxc0, tcpTo(fromPodA(podBIP), 40001, 80)); v != testrun.Redirect {
		t.Fatalf("A -> B:80: %v %v, want redirect", v, recs)
	}
	// B answers from lxc1 (a device without policy): delivered to A through A's
	// conntrack entry, without a verdict event.
	fromB := pktSpec{srcMAC: podBMAC, dstMAC: lxcBMAC, src: podBIP, dst: podAIP}
	if v, recs := e.run(t, e.f.lxc1, tcpTo(fromB, 80, 40001)); v != testrun.Redirect || len(recs) != 1 {
		t.Errorf("reply B:80 -> A:40001: %v %v, want a plain redirect into A", v, recs)
	}
	if v, recs := e.run(t, e.f.lxc1, tcpTo(fromB, 80, 40002)); v != testrun.Shot {
		t.Errorf("B:80 -> A:40002 (no flow): %v %v, want dropped by A's ingress default deny", v, recs)
	}
	// Established, then the allow is gone: the next forward packet is dropped.
	e.program(t, egress[:1], nil)
	if v, recs := e.run(t, e.f.lxc0, tcpTo(fromPodA(podBIP), 40001, 80)); v != testrun.Shot {
		t.Errorf("A -> B:80 after the allow was removed: %v %v, want dropped", v, recs)
	}
	// Unchanged policy (no new revision): the established flow costs no lookup and
	// stays allowed even if an entry is rewritten without a bump.
	e.program(t, egress, nil)
	e.run(t, e.f.lxc0, tcpTo(fromPodA(podBIP), 40003, 80))
	if err := e.pm.Sync(uint32(e.f.lxc0), egress[:1]); err != nil {
		t.Fatal(err)
	}
	if v, recs := e.run(t, e.f.lxc0, tcpTo(fromPodA(podBIP), 40003, 80)); v != testrun.Redirect {
		t.Errorf("established A:40003 -> B:80 without a revision bump: %v %v, want redirect from conntrack", v, recs)
	}
}

// TestPolicyAuditMode: policy-audit-mode delivers what policy denies and records an
// audit verdict naming the reason.
func TestPolicyAuditMode(t *testing.T) {
	cfg := fixtureConfig()
	cfg.PolicyAuditMode = 1
	e := newPolicyEnv(t, "polaudit", cfg)
	e.program(t, nil, ingressEntries(t, "  ingress: [{fromEndpoints: [{matchLabels: {app: other}}]}]\n"))
	v, recs := e.run(t, e.f.lxc0, tcpTo(fromPodA(podBIP), 40000, 80))
	want := "VERDICT_POLICY_AUDIT/DROP_POLICY_DENIED@OBS_FROM_CONTAINER VERDICT_REDIRECT_PEER@OBS_FROM_CONTAINER"
	if v != testrun.Redirect || strings.Join(recs, " ") != want {
		t.Errorf("audit: %v %v, want redirect with %s", v, recs, want)
	}
}

// TestPolicyVerdictEvents: bpf-events-policy-verdict-enabled false leaves only the drop.
func TestPolicyVerdictEvents(t *testing.T) {
	for _, on := range []uint8{1, 0} {
		t.Run(fmt.Sprint("events=", on), func(t *testing.T) {
			cfg := fixtureConfig()
			cfg.PolicyVerdictEvents = on
			e := newPolicyEnv(t, fmt.Sprint("polev", on), cfg)
			e.program(t, nil, ingressEntries(t, "  ingress: [{}]\n"))
			_, recs := e.run(t, e.f.lxc0, tcpTo(fromPodA(podBIP), 40000, 80))
			want := 1 + int(on)
			if len(recs) != want {
				t.Errorf("records %v, want %d", recs, want)
			}
		})
	}
}

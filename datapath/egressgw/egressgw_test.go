// SPDX-License-Identifier: Apache-2.0

package egressgw

import (
	"net/netip"
	"strings"
	"testing"
)

const good = `apiVersion: cilium.io/v2
kind: CiliumEgressGatewayPolicy
metadata: {name: egw}
spec:
  selectors:
  - podSelector:
      matchLabels: {app: egress}
      matchExpressions: [{key: tier, operator: NotIn, values: [db]}]
  destinationCIDRs: [192.168.200.0/24]
  excludedCIDRs: [192.168.200.128/25]
  egressGateway:
    nodeSelector: {matchLabels: {egress-gateway: "true"}}
    interface: eth0
`

func TestParseRejects(t *testing.T) {
	for _, c := range []struct{ name, from, to, want string }{
		{"cidr", "192.168.200.0/24]", "192.168.200.0/33]", "spec.destinationCIDRs[0]: \"192.168.200.0/33\": want an IPv4 CIDR"},
		{"excluded", "192.168.200.128/25]", "nope]", "spec.excludedCIDRs[0]"},
		{"operator", "NotIn", "Near", "spec.selectors[0].podSelector"},
		{"both", "interface: eth0", "interface: eth0\n    egressIP: 10.0.0.9", "egressIP and interface both given"},
		{"egressIP", "interface: eth0", "egressIP: 10.0.0", "spec.egressGateway.egressIP: \"10.0.0\": want an IPv4 address"},
		{"kind", "kind: CiliumEgressGatewayPolicy", "kind: CiliumNetworkPolicy", "kind: \"CiliumNetworkPolicy\": want CiliumEgressGatewayPolicy"},
		{"unknown field", "interface: eth0", "iface: eth0", "unknown field"},
		{"no node selector", "nodeSelector: {matchLabels: {egress-gateway: \"true\"}}", "", "spec.egressGateway.nodeSelector: required"},
	} {
		_, err := Parse([]byte(strings.Replace(good, c.from, c.to, 1)))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want it to contain %q", c.name, err, c.want)
		}
	}
}

func TestCompute(t *testing.T) {
	p, err := Parse([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	a, b, d := netip.MustParseAddr("10.244.1.2"), netip.MustParseAddr("10.244.1.3"), netip.MustParseAddr("10.244.2.2")
	pods := []Pod{{a, map[string]string{"app": "egress"}}, {b, map[string]string{"app": "other"}},
		{d, map[string]string{"app": "egress", "tier": "db"}}}
	gw := Node{Name: "node3", IP: netip.MustParseAddr("10.0.0.3"), Labels: map[string]string{"egress-gateway": "true"}}
	nodes := []Node{{Name: "node1", IP: netip.MustParseAddr("10.0.0.1")}, gw}
	eip := func(*Policy, Node) netip.Addr { return netip.MustParseAddr("10.0.0.3") }
	es, warns := Compute([]Policy{p}, pods, nodes, eip)
	want := []Entry{
		{a, netip.MustParsePrefix("192.168.200.0/24"), gw.IP, gw.IP},
		{a, netip.MustParsePrefix("192.168.200.128/25"), ExcludedCIDR, netip.IPv4Unspecified()},
	}
	if len(warns) != 0 || len(es) != len(want) || es[0] != want[0] || es[1] != want[1] {
		t.Fatalf("entries %v (warnings %v), want %v", es, warns, want)
	}
	es, warns = Compute([]Policy{p}, pods, nodes[:1], eip)
	if len(es) != 2 || es[0].Gateway != NoGateway || len(warns) != 1 {
		t.Fatalf("no gateway node: entries %v warnings %v, want gateway 0.0.0.0 and a warning", es, warns)
	}
}

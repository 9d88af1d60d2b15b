// SPDX-License-Identifier: Apache-2.0

package policy

import (
	"testing"

	"podpath/datapath/identity"
)

const tenantPolicies = `apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata:
  name: web
  namespace: default
spec:
  endpointSelector:
    matchLabels:
      app: web
  ingress:
  - fromEndpoints:
    - matchLabels:
        tenant: a
    toPorts:
    - ports:
      - port: "80"
        protocol: TCP
  ingressDeny:
  - fromEndpoints:
    - matchExpressions:
      - key: role
        operator: In
        values: [evil]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: db
spec:
  podSelector:
    matchLabels:
      app: db
  policyTypes: [Ingress, Egress]
  ingress:
  - ports:
    - port: 5000
      endPort: 5007
---
apiVersion: cilium.io/v2
kind: CiliumClusterwideNetworkPolicy
metadata:
  name: world
spec:
  endpointSelector:
    matchLabels:
      app: web
  egress:
  - toCIDRSet:
    - cidr: 192.0.2.0/24
      except: [192.0.2.128/25]
  - toEntities: [host]
`

func lbl(kv ...string) map[string]string {
	m := map[string]string{NamespaceLabel: "default"}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

func lookup(es []Entry, dir Direction, id identity.ID, proto uint8, port uint16) Kind {
	return Evaluate(es, dir, id, proto, port)
}

func TestCompute(t *testing.T) {
	pols, err := Parse([]byte(tenantPolicies))
	if err != nil {
		t.Fatal(err)
	}
	peers := []Peer{
		{ID: 300, Labels: lbl("tenant", "a", "app", "client")},
		{ID: 301, Labels: lbl("tenant", "b", "app", "client")},
		{ID: 302, Labels: lbl("tenant", "a", "role", "evil")},
		{ID: 303, Labels: lbl("tenant", "a", "app", "web")},
		{ID: 304, Labels: lbl("tenant", "a", "app", "db")},
		{ID: 305, Labels: map[string]string{NamespaceLabel: "other", "tenant": "a"}},
	}
	cidrs := CIDRIdentities(pols)
	web := Compute("default", pols, Endpoint{Labels: peers[3].Labels}, peers, cidrs)
	db := Compute("default", pols, Endpoint{Labels: peers[4].Labels}, peers, cidrs)
	client := Compute("default", pols, Endpoint{Labels: peers[0].Labels}, peers, cidrs)
	in192 := cidrs[mustPrefix("192.0.2.0/24")]
	in192x := cidrs[mustPrefix("192.0.2.128/25")]
	tests := []struct {
		name  string
		es    []Entry
		dir   Direction
		id    identity.ID
		proto uint8
		port  uint16
		want  Kind
	}{
		{"tenant a to web:80", web, Ingress, 300, ProtoTCP, 80, Allow},
		{"tenant a to web:81", web, Ingress, 300, ProtoTCP, 81, DefaultDeny},
		{"tenant a to web:80 udp", web, Ingress, 300, ProtoUDP, 80, DefaultDeny},
		{"tenant b to web:80", web, Ingress, 301, ProtoTCP, 80, DefaultDeny},
		{"other namespace to web:80", web, Ingress, 305, ProtoTCP, 80, DefaultDeny},
		{"deny overrides allow", web, Ingress, 302, ProtoTCP, 80, Deny},
		{"web egress to cidr", web, Egress, in192, ProtoTCP, 443, Allow},
		{"web egress to except", web, Egress, in192x, ProtoTCP, 443, DefaultDeny},
		{"web egress to host", web, Egress, identity.Host, ProtoICMP, 0, Allow},
		{"web egress to world", web, Egress, identity.World, ProtoTCP, 443, DefaultDeny},
		{"db range low", db, Ingress, 301, ProtoTCP, 5000, Allow},
		{"db range high", db, Ingress, 301, ProtoTCP, 5007, Allow},
		{"db range past", db, Ingress, 301, ProtoTCP, 5008, DefaultDeny},
		{"db egress: none allowed", db, Egress, 300, ProtoTCP, 80, DefaultDeny},
		{"client not selected", client, Ingress, 301, ProtoTCP, 80, 0},
	}
	for _, tt := range tests {
		if got := lookup(tt.es, tt.dir, tt.id, tt.proto, tt.port); got != tt.want {
			t.Errorf("%s: got kind %d, want %d", tt.name, got, tt.want)
		}
	}
}

// TestComputeEnforcement: enable-policy decides who is under enforcement.
func TestComputeEnforcement(t *testing.T) {
	ep := Endpoint{Labels: lbl("app", "x")}
	for _, tt := range []struct {
		mode Mode
		want int
	}{{"default", 0}, {"always", 2}, {"never", 0}} {
		if got := len(Compute(tt.mode, nil, ep, nil, nil)); got != tt.want {
			t.Errorf("enable-policy %s: %d entries, want %d", tt.mode, got, tt.want)
		}
	}
}

func TestPortBlocks(t *testing.T) {
	for _, tt := range []struct{ lo, hi uint16 }{{80, 80}, {5000, 5007}, {1, 65535}, {1000, 2000}, {0, 65535}} {
		bs := PortBlocks(tt.lo, tt.hi)
		covered := map[uint32]bool{}
		for _, b := range bs {
			n := uint32(1) << (16 - b.Bits)
			for p := uint32(b.Port); p < uint32(b.Port)+n; p++ {
				covered[p] = true
			}
		}
		if len(covered) != int(tt.hi)-int(tt.lo)+1 || !covered[uint32(tt.lo)] || !covered[uint32(tt.hi)] || len(bs) > 32 {
			t.Errorf("%d-%d: blocks %v cover %d ports", tt.lo, tt.hi, bs, len(covered))
		}
	}
}

func FuzzPortBlocks(f *testing.F) {
	f.Add(uint16(80), uint16(81))
	f.Fuzz(func(t *testing.T, lo, hi uint16) {
		if lo > hi {
			lo, hi = hi, lo
		}
		prev := -1
		for _, b := range PortBlocks(lo, hi) {
			if int(b.Port) <= prev || b.Port < lo {
				t.Fatalf("%d-%d: block %v out of order", lo, hi, b)
			}
			end := int(b.Port) + (1 << (16 - b.Bits)) - 1
			if end > int(hi) {
				t.Fatalf("%d-%d: block %v past the end", lo, hi, b)
			}
			prev = end
		}
		if prev != int(hi) {
			t.Fatalf("%d-%d: blocks end at %d", lo, hi, prev)
		}
	})
}

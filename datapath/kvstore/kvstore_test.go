// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"net/netip"
	"strings"
	"testing"
)

func TestCanonicalLabels(t *testing.T) {
	tests := []struct {
		name   string
		labels map[string]string
		ns     string
		want   string
	}{
		{"none", nil, "", "k8s:io.kubernetes.pod.namespace=default;"},
		{"sorted", map[string]string{"z": "1", "app": "web"}, "", "k8s:app=web;k8s:io.kubernetes.pod.namespace=default;k8s:z=1;"},
		{"namespace", map[string]string{"app": "web"}, "prod", "k8s:app=web;k8s:io.kubernetes.pod.namespace=prod;"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CanonicalLabels(tt.labels, tt.ns); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestParseEtcdConfig(t *testing.T) {
	seed := "---\nendpoints:\n- https://192.168.64.8:2379\n- https://192.168.64.9:2379\n# comment\nca-file: \"/etc/cilium/certs/ca_cert.crt\"\nkey-file: \"/etc/cilium/certs/key.pem\"\ncert-file: \"/etc/cilium/certs/cert.crt\""
	tests := []struct {
		name, in, err string
		want          EtcdConfig
	}{
		{name: "seed", in: seed, want: EtcdConfig{Endpoints: []string{"https://192.168.64.8:2379", "https://192.168.64.9:2379"},
			CAFile: "/etc/cilium/certs/ca_cert.crt", CertFile: "/etc/cilium/certs/cert.crt", KeyFile: "/etc/cilium/certs/key.pem"}},
		{name: "trusted-ca-file", in: "endpoints: [http://a:2379]\ntrusted-ca-file: /ca", want: EtcdConfig{Endpoints: []string{"http://a:2379"}, CAFile: "/ca"}},
		{name: "no endpoints", in: "ca-file: /ca", err: "endpoints"},
		{name: "cert without key", in: "endpoints: [x]\ncert-file: /c", err: "go together"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseEtcdConfig([]byte(tt.in))
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("err %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(c.Endpoints, ",") != strings.Join(tt.want.Endpoints, ",") || c.CAFile != tt.want.CAFile ||
				c.CertFile != tt.want.CertFile || c.KeyFile != tt.want.KeyFile {
				t.Errorf("got %+v, want %+v", c, tt.want)
			}
			// What the harness writes reads back the same.
			back, err := ParseEtcdConfig(c.Marshal())
			if err != nil || back.CAFile != c.CAFile || back.KeyFile != c.KeyFile || len(back.Endpoints) != len(c.Endpoints) {
				t.Errorf("round trip: %+v, %v", back, err)
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	st := Status{HasQuorum: true, Connected: 2, LeaseID: "797e89450e0683a2", LockLease: "797e89450e0b2b6a", Endpoints: []EndpointStatus{
		{URL: "https://10.0.0.3:2379", Version: "3.4.23", Leader: true},
		{URL: "https://10.0.0.4:2379", Version: "3.4.23"},
		{URL: "https://10.0.0.5:2379", Error: "unreachable (no answer within 1s)"}}}
	want := "Ok etcd: 2/3 connected, lease-ID=797e89450e0683a2, lock lease-ID=797e89450e0b2b6a, has-quorum=true: " +
		"https://10.0.0.3:2379 - 3.4.23 (Leader); https://10.0.0.4:2379 - 3.4.23; https://10.0.0.5:2379 - unreachable (no answer within 1s)"
	if got := st.String(); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	st.HasQuorum = false
	if got := st.String(); !strings.HasPrefix(got, "Failure etcd: 2/3 connected") || !strings.Contains(got, "has-quorum=false") {
		t.Errorf("outage: %s", got)
	}
}

func TestKeys(t *testing.T) {
	tests := []struct{ got, want string }{
		{NodeKey("default", "node1"), "cilium/state/nodes/v1/default/node1"},
		{IPKey(netip.MustParseAddr("10.244.1.10")), "cilium/state/ip/v1/default/10.244.1.10"},
		{IdentityIDKey(256), "cilium/state/identities/v1/id/256"},
		{IdentityValueKey("k8s:app=web;", "10.0.0.1"), "cilium/state/identities/v1/value/k8s:app=web;/10.0.0.1"},
		{ServiceKey("default", "default", "web"), "cilium/state/services/v1/default/default/web"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %s, want %s", tt.got, tt.want)
		}
	}
}

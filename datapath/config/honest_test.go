// SPDX-License-Identifier: Apache-2.0

package config

import (
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestSeedWarnings: the seed's cilium-config is warned about exactly where podpath
// does not do what it says, and nowhere else.
func TestSeedWarnings(t *testing.T) {
	// Each warned key, and words its warning must hold: what podpath does instead.
	want := map[string]string{
		"agent-health-port":          "serves no health endpoint",
		"bpf-map-dynamic-size-ratio": "never from a fraction of memory",
		"debug":                      "logs at info level",
		"enable-bpf-clock-probe":     "bpf_ktime_get_ns",
		"kvstore-opt":                "podpath-agent takes the etcd-config file as --etcd-config",
		"monitor-aggregation-flags":  "never because of TCP flags",
	}
	for _, path := range []string{seedFile, seedExcerpt} {
		t.Run(path, func(t *testing.T) {
			c, r, err := ParseFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]string{}
			for _, f := range r.Warnings {
				if _, dup := got[f.Key]; dup {
					t.Errorf("%s: two warnings", f.Key)
				}
				got[f.Key] = f.Message
			}
			if k := slices.Sorted(maps.Keys(got)); !slices.Equal(k, slices.Sorted(maps.Keys(want))) {
				t.Errorf("warned keys:\n%q\nwant\n%q\nreport:\n%s", k, slices.Sorted(maps.Keys(want)), r)
			}
			for k, words := range want {
				if m, ok := got[k]; ok && !strings.Contains(m, words) {
					t.Errorf("%s: warning %q does not say %q", k, m, words)
				}
			}
			// No warning for what podpath does: the keys it reads, and the keys
			// whose value is what podpath behaves as.
			for name := range c.Raw {
				k := lookupKey(name)
				if _, warned := got[name]; warned && k.Read() && name != "monitor-aggregation-flags" {
					t.Errorf("%s: podpath reads it and does what it says, yet it is warned about: %s", name, got[name])
				}
			}
		})
	}
}

// TestWarnings: one key at a time, what is a warning and what is not.
func TestWarnings(t *testing.T) {
	for _, tc := range []struct {
		name string
		data map[string]string
		key  string
		warn bool
	}{
		{"bpf masquerade on: read", map[string]string{"enable-bpf-masquerade": "true", "enable-ipv4-masquerade": "true"}, "enable-bpf-masquerade", false},
		{"bpf masquerade on without masquerading", map[string]string{"enable-bpf-masquerade": "true", "enable-ipv4-masquerade": "false"}, "enable-bpf-masquerade", true},
		{"ipv4 masquerade on: read (nftables)", map[string]string{"enable-ipv4-masquerade": "true"}, "enable-ipv4-masquerade", false},
		{"ipv4 masquerade off", map[string]string{"enable-ipv4-masquerade": "False"}, "enable-ipv4-masquerade", false},
		{"ip-masq-agent without BPF masquerading", map[string]string{"enable-ip-masq-agent": "true", "enable-ipv4-masquerade": "true"}, "enable-ip-masq-agent", true},
		{"ip-masq-agent with BPF masquerading", map[string]string{"enable-ip-masq-agent": "true", "enable-ipv4-masquerade": "true", "enable-bpf-masquerade": "true"}, "enable-ip-masq-agent", false},
		{"kvstore etcd: done", map[string]string{"kvstore": "etcd"}, "kvstore", false},
		{"kvstore consul", map[string]string{"kvstore": "consul"}, "kvstore", true},
		{"identities in the kvstore without one", map[string]string{"identity-allocation-mode": "kvstore"}, "identity-allocation-mode", true},
		{"identities in the kvstore", map[string]string{"identity-allocation-mode": "kvstore", "kvstore": "etcd"}, "identity-allocation-mode", false},
		{"kvstore empty", map[string]string{"kvstore": ""}, "kvstore", false},
		{"identities in CRDs: podpath creates none either", map[string]string{"identity-allocation-mode": "crd"}, "identity-allocation-mode", true},
		{"debug off", map[string]string{"debug": "false"}, "debug", false},
		{"debug on", map[string]string{"debug": "true"}, "debug", true},
		{"cluster name default", map[string]string{"cluster-name": "default"}, "cluster-name", false},
		{"cluster name other without a kvstore", map[string]string{"cluster-name": "east"}, "cluster-name", true},
		{"cluster name other with etcd: used", map[string]string{"cluster-name": "east", "kvstore": "etcd"}, "cluster-name", false},
		{"dynamic map sizes off", map[string]string{"bpf-map-dynamic-size-ratio": "0"}, "bpf-map-dynamic-size-ratio", false},
		{"dynamic map sizes on", map[string]string{"bpf-map-dynamic-size-ratio": "0.0025"}, "bpf-map-dynamic-size-ratio", true},
		{"flags under none aggregation", map[string]string{"monitor-aggregation-flags": "all"}, "monitor-aggregation-flags", false},
		{"flags under medium aggregation", map[string]string{"monitor-aggregation": "medium", "monitor-aggregation-flags": "all"}, "monitor-aggregation-flags", true},
		{"CT size without kube-proxy replacement", map[string]string{"bpf-ct-global-any-max": "4096"}, "bpf-ct-global-any-max", true},
		{"CT size with kube-proxy replacement", map[string]string{"bpf-ct-global-any-max": "4096", "kube-proxy-replacement": "true"}, "bpf-ct-global-any-max", false},
		{"ipam cluster-pool", map[string]string{"ipam": "cluster-pool"}, "ipam", true},
		{"network policy on", map[string]string{"enable-k8s-networkpolicy": "false"}, "enable-k8s-networkpolicy", true},
		{"operator address: no operator, nothing lost", map[string]string{"operator-api-serve-addr": ":1"}, "operator-api-serve-addr", false},
		{"routing mode: read", map[string]string{"routing-mode": "tunnel"}, "routing-mode", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r, err := FromMap(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			warned := slices.ContainsFunc(r.Warnings, func(f Finding) bool { return f.Key == tc.key })
			if warned != tc.warn {
				t.Errorf("%s warned: %v, want %v\n%s", tc.key, warned, tc.warn, r)
			}
		})
	}
}

// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const (
	seedFile    = "testdata/seed-002-kubectl-edit.txt"
	seedExcerpt = "testdata/seed-002-configmap-excerpt.yaml"
)

// seedEtcdConfig is etcd-config as the seed's last-applied-configuration annotation
// holds it: the flattened dump lost the indentation and blank lines shown here.
const seedEtcdConfig = `---
endpoints:
 - https://192.168.64.8:2379
 - https://192.168.64.9:2379
 - https://192.168.64.10:2379

# In case you want to use TLS in etcd, uncomment the 'ca-file' line
# and create a kubernetes secret by following the tutorial in
# https://cilium.link/etcd-config
ca-file: "/etc/cilium/certs/ca_cert.crt"

# In case you want client to server authentication, uncomment the following
# lines and create a kubernetes secret by following the tutorial in
# https://cilium.link/etcd-config
key-file: "/etc/cilium/certs/key.pem"
cert-file: "/etc/cilium/certs/cert.crt"`

// seedData is every data key of the seed's ConfigMap, as it stands in the dump.
var seedData = map[string]string{
	"agent-health-port":            "9879",
	"auto-direct-node-routes":      "False",
	"bpf-ct-global-any-max":        "262144",
	"bpf-ct-global-tcp-max":        "524288",
	"bpf-map-dynamic-size-ratio":   "0.0025",
	"cgroup-root":                  "/run/cilium/cgroupv2",
	"clean-cilium-bpf-state":       "false",
	"clean-cilium-state":           "false",
	"cluster-name":                 "default",
	"custom-cni-conf":              "false",
	"debug":                        "True",
	"disable-cnp-status-updates":   "True",
	"enable-bpf-clock-probe":       "True",
	"enable-bpf-masquerade":        "True",
	"enable-host-legacy-routing":   "False",
	"enable-ip-masq-agent":         "False",
	"enable-ipv4":                  "True",
	"enable-ipv4-masquerade":       "True",
	"enable-ipv6":                  "False",
	"enable-ipv6-masquerade":       "True",
	"enable-remote-node-identity":  "True",
	"enable-well-known-identities": "False",
	"etcd-config":                  seedEtcdConfig,
	"identity-allocation-mode":     "kvstore",
	"ipam":                         "kubernetes",
	"kube-proxy-replacement":       "probe",
	"kvstore":                      "etcd",
	"kvstore-opt":                  `{"etcd.config": "/var/lib/etcd-config/etcd.config"}`,
	"monitor-aggregation":          "medium",
	"monitor-aggregation-flags":    "all",
	"operator-api-serve-addr":      "127.0.0.1:9234",
	"preallocate-bpf-maps":         "False",
	"sidecar-istio-proxy-image":    "cilium/istio_proxy",
	"tunnel":                       "vxlan",
}

// seedKeyCount reads the key count kubectl printed in the seed
// (`cilium-config 34 7d21h`).
func seedKeyCount(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^cilium-config\s+(\d+)\s`).FindSubmatch(b)
	if m == nil {
		t.Fatal("seed has no `cilium-config <keys> <age>` line")
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

func TestParseSeed(t *testing.T) {
	if n := seedKeyCount(t); n != 34 || len(seedData) != n {
		t.Fatalf("kubectl says %d keys, the expectation lists %d", n, len(seedData))
	}
	for _, tc := range []struct{ name, path string }{
		{"whole blog post", seedFile},
		{"ConfigMap excerpt", seedExcerpt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, r, err := ParseFile(tc.path)
			if err != nil {
				t.Fatalf("ParseFile: %v\n%s", err, r)
			}
			const src = "flattened kubectl-edit dump (indentation lost): recovered 34 keys from ConfigMap kube-system/cilium-config"
			if !strings.HasPrefix(r.Source, src) {
				t.Errorf("Source = %q, want prefix %q", r.Source, src)
			}
			if !maps.Equal(c.Raw, seedData) {
				for _, k := range slices.Sorted(maps.Keys(seedData)) {
					if got, ok := c.Raw[k]; !ok || got != seedData[k] {
						t.Errorf("Raw[%q] = %q (present %v), want %q", k, got, ok, seedData[k])
					}
				}
				for k := range c.Raw {
					if _, ok := seedData[k]; !ok {
						t.Errorf("Raw has extra key %q = %q", k, c.Raw[k])
					}
				}
			}

			want := Default()
			want.KubeProxyReplacement = KPRTrue
			want.KubeProxyReplacementGiven = "probe"
			want.MonitorAggregation = AggregationMedium
			want.MonitorAggregationFlags = 0xff
			want.MapDynamicSizeRatio = 0.0025
			want.Debug = true
			want.EnableBPFMasquerade = true
			want.EnableIPv4MasqueradeGiven = true
			want.KVStore, want.EtcdConfig, want.IdentityAllocationMode = "etcd", strings.TrimSpace(seedData["etcd-config"]), "kvstore"
			want.Raw = seedData
			assertConfig(t, c, want)

			// The warnings are TestSeedWarnings' business.
			ignored := []string{"cgroup-root", "clean-cilium-bpf-state", "clean-cilium-state",
				"custom-cni-conf", "disable-cnp-status-updates",
				"enable-ipv6-masquerade", "enable-remote-node-identity", "enable-well-known-identities",
				"ipam", "operator-api-serve-addr", "preallocate-bpf-maps", "sidecar-istio-proxy-image"}
			for _, k := range ignored {
				if !hasFinding(r.Notices, k, "recognised Cilium key, not used by podpath:") {
					t.Errorf("no ignored-key notice for %s", k)
				}
			}
			for _, f := range []Finding{
				{"kube-proxy-replacement", "probe is a Cilium <= 1.13 value"},
				{"tunnel", "legacy key (Cilium <= 1.14): tunnel: vxlan means routing-mode: tunnel with tunnel-protocol: vxlan"},
				{"etcd-config", "restored from the kubectl.kubernetes.io/last-applied-configuration annotation"},
				{"enable-host-legacy-routing", `changed from "True" to "False" since the last kubectl apply`},
				{"debug", `changed from "False" to "True"`},
				{"enable-bpf-masquerade", `changed from "False" to "True"`},
			} {
				if !hasFinding(r.Notices, f.Key, f.Message) {
					t.Errorf("no notice %q", f)
				}
			}
		})
	}
}

// The flattened dump alone cannot tell the block's indentation: without the
// annotation the block holds the lines as pasted.
func TestParseSeedWithoutAnnotation(t *testing.T) {
	b, err := os.ReadFile(seedExcerpt)
	if err != nil {
		t.Fatal(err)
	}
	var kept []string
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "kubectl.kubernetes.io/") || strings.HasPrefix(l, `{"apiVersion"`) {
			continue
		}
		kept = append(kept, l)
	}
	c, r, err := Parse([]byte(strings.Join(kept, "\n")))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	const flat = "---\nendpoints:\n- https://192.168.64.8:2379\n- https://192.168.64.9:2379\n- https://192.168.64.10:2379\n" +
		"# In case you want to use TLS in etcd, uncomment the 'ca-file' line\n# and create a kubernetes secret by following the tutorial in\n# https://cilium.link/etcd-config\n" +
		"ca-file: \"/etc/cilium/certs/ca_cert.crt\"\n" +
		"# In case you want client to server authentication, uncomment the following\n# lines and create a kubernetes secret by following the tutorial in\n# https://cilium.link/etcd-config\n" +
		"key-file: \"/etc/cilium/certs/key.pem\"\ncert-file: \"/etc/cilium/certs/cert.crt\""
	if got := c.Raw["etcd-config"]; got != flat {
		t.Errorf("etcd-config = %q\nwant %q", got, flat)
	}
	if len(c.Raw) != 34 || c.Raw["tunnel"] != "vxlan" || c.Raw["identity-allocation-mode"] != "kvstore" {
		t.Errorf("keys around the block: %d keys, tunnel %q, identity-allocation-mode %q", len(c.Raw), c.Raw["tunnel"], c.Raw["identity-allocation-mode"])
	}
	if !hasFinding(r.Notices, "etcd-config", "block scalar recovered line by line (14 lines, up to the next known cilium-config key); indentation inside it was lost") {
		t.Errorf("no block notice: %v", r.Notices)
	}
}

func TestParseForms(t *testing.T) {
	tests := []struct {
		name   string
		path   string // or input
		input  string
		source string // prefix of Report.Source
		keys   int
		check  func(t *testing.T, c *Config, r *Report)
	}{
		{
			name: "form 1: ConfigMap YAML", path: "testdata/configmap-native-dsr.yaml",
			source: "ConfigMap kube-system/cilium-config (YAML): 31 keys", keys: 31,
			check: func(t *testing.T, c *Config, r *Report) {
				want := Default()
				want.RoutingMode = RoutingNative
				want.NativeRoutingCIDR = mustPrefix("10.244.0.0/16")
				want.AutoDirectNodeRoutes = true
				want.KubeProxyReplacement = KPRTrue
				want.KubeProxyReplacementGiven = "true"
				want.LBMode = LBModeDSR
				want.LBAlgorithm = LBMaglev
				want.MaglevHashSeed = [12]byte{0xc4, 0x78, 0x0d, 0xed, 0xdd, 0x26, 0x1b, 0x3a, 0x98, 0x45, 0xc5, 0xf6}
				want.MaglevHashSeedSet = true
				want.MapDynamicSizeRatio = 0.0025
				want.ClusterName = "lab"
				want.EnableBPFMasquerade = true
				want.EnableIPv4MasqueradeGiven = true
				want.MonitorAggregation = AggregationMedium
				want.MonitorAggregationFlags = 0xff
				want.MTU = 9000
				want.Raw = c.Raw
				assertConfig(t, c, want)
				if !hasFinding(r.Notices, "tunnel-protocol", "not used in native routing mode") {
					t.Errorf("no notice for tunnel-protocol in native mode: %v", r.Notices)
				}
			},
		},
		{
			name: "form 2: data keys", path: "testdata/data-keys-geneve.yaml",
			source: "cilium-config data keys (YAML map): 11 keys", keys: 11,
			check: func(t *testing.T, c *Config, r *Report) {
				if c.TunnelProtocol != TunnelGeneve || c.TunnelPort != PortGeneve || c.LBMode != LBModeHybrid ||
					c.DSRDispatch != DSRDispatchGeneve || c.MaglevTableSize != 65521 || c.MTU != 1450 ||
					c.MonitorAggregation != AggregationMaximum || !c.EnableBPFMasquerade {
					t.Errorf("config: %+v", c)
				}
				if c.Raw["etcd-config"] != "---\nendpoints:\n  - https://10.0.0.1:2379" || c.Raw["mtu"] != "1450" || c.Raw["enable-bpf-masquerade"] != "true" {
					t.Errorf("raw: %q", c.Raw)
				}
			},
		},
		{
			name: "ConfigMap in prose, indentation intact", path: "testdata/configmap-in-prose.md",
			source: "ConfigMap found in surrounding text: recovered 5 keys from ConfigMap kube-system/cilium-config", keys: 5,
			check: func(t *testing.T, c *Config, r *Report) {
				if c.RoutingMode != RoutingNative || c.NativeRoutingCIDR != mustPrefix("10.0.0.0/8") || c.MonitorAggregation != AggregationLow {
					t.Errorf("config: %+v", c)
				}
				if got := c.Raw["etcd-config"]; got != "---\nendpoints:\n  - https://192.168.64.8:2379" {
					t.Errorf("etcd-config = %q", got)
				}
			},
		},
		{
			name:   "form 1 as JSON (kubectl get -o json)",
			input:  `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cilium-config","namespace":"kube-system"},"data":{"tunnel-protocol":"geneve","debug":"true"}}`,
			source: "ConfigMap kube-system/cilium-config (YAML): 2 keys", keys: 2,
			check: func(t *testing.T, c *Config, r *Report) {
				if c.TunnelProtocol != TunnelGeneve || !c.Debug {
					t.Errorf("config: %+v", c)
				}
			},
		},
		{
			name:   "form 1 with an unquoted value",
			input:  "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cilium-config\ndata:\n  mtu: 1400\n",
			source: "ConfigMap cilium-config (YAML): 1 keys", keys: 1,
			check: func(t *testing.T, c *Config, r *Report) {
				if c.MTU != 1400 || !hasFinding(r.Warnings, "mtu", `read as "1400": Kubernetes requires ConfigMap data values to be strings`) {
					t.Errorf("MTU %d, warnings %v", c.MTU, r.Warnings)
				}
			},
		},
		{
			name: "form 1 edited since the last apply",
			input: "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cilium-config\n  annotations:\n" +
				`    kubectl.kubernetes.io/last-applied-configuration: '{"apiVersion":"v1","data":{"debug":"false","mtu":"1500"},"kind":"ConfigMap"}'` + "\n" +
				"data:\n  debug: \"true\"\n  tunnel-protocol: vxlan\n",
			source: "ConfigMap cilium-config (YAML): 2 keys", keys: 2,
			check: func(t *testing.T, c *Config, r *Report) {
				for _, f := range []Finding{
					{"debug", `changed from "false" to "true" since the last kubectl apply`},
					{"tunnel-protocol", "added since the last kubectl apply"},
					{"mtu", `removed since the last kubectl apply (per the last-applied-configuration annotation) (it was "1500")`},
				} {
					if !hasFinding(r.Notices, f.Key, f.Message) {
						t.Errorf("no notice %q in %v", f, r.Notices)
					}
				}
			},
		},
		{
			name:   "flattened dump with a quoted value over two lines",
			input:  "apiVersion: v1\ndata:\nkvstore-opt: '{\"etcd.config\":\n \"/x\"}'\ncluster-name: lab\nkind: ConfigMap\n",
			source: "flattened kubectl-edit dump (indentation lost): recovered 2 keys", keys: 2,
			check: func(t *testing.T, c *Config, r *Report) {
				if c.Raw["kvstore-opt"] != `{"etcd.config": "/x"}` || c.ClusterName != "lab" {
					t.Errorf("raw: %q", c.Raw)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var (
				c   *Config
				r   *Report
				err error
			)
			if tc.path != "" {
				c, r, err = ParseFile(tc.path)
			} else {
				c, r, err = Parse([]byte(tc.input))
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if !strings.HasPrefix(r.Source, tc.source) {
				t.Errorf("Source = %q, want prefix %q", r.Source, tc.source)
			}
			if len(c.Raw) != tc.keys {
				t.Errorf("%d keys, want %d: %q", len(c.Raw), tc.keys, c.Raw)
			}
			if tc.check != nil {
				tc.check(t, c, r)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, input, want string }{
		{"empty", "  \n", "parse cilium-config: input is empty"},
		{"another kind", "apiVersion: apps/v1\nkind: DaemonSet\ndata:\n  a: b\n",
			"parse cilium-config: kind is DaemonSet: want a ConfigMap (cilium-config)"},
		{"Helm values", "routingMode: native\nloadBalancer:\n  mode: dsr\n",
			"parse cilium-config: loadBalancer: value is a YAML mapping; cilium-config values are strings (is this Helm values.yaml? use the rendered ConfigMap)"},
		{"prose only", "Cilium is a CNI.\nIt uses eBPF: a lot.\nNothing: here: either\n",
			"parse cilium-config: input is not valid YAML as a whole (yaml: line 2: mapping values are not allowed in this context), and no ConfigMap data could be recovered from its text: no `data:` line found"},
		{"duplicate key in a flattened dump", "apiVersion: v1\ndata:\nmtu: \"1500\"\nmtu: \"9000\"\nkind: ConfigMap\n",
			"parse cilium-config: input is a ConfigMap with no data keys in YAML (were its data keys un-indented?), and no ConfigMap data could be recovered from its text: mtu: given twice (lines 3 and 4)"},
		{"empty data", "apiVersion: v1\ndata: {}\nkind: ConfigMap\n",
			"parse cilium-config: input is a ConfigMap with no data keys in YAML (were its data keys un-indented?), and no ConfigMap data could be recovered from its text: no `data:` line found"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := Parse([]byte(tc.input))
			if err == nil || err.Error() != tc.want {
				t.Errorf("error = %v\nwant    %s", err, tc.want)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	_, _, err := ParseFile("testdata/no-such-file.yaml")
	if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "read cilium-config: ") {
		t.Errorf("missing file: %v", err)
	}
	path := t.TempDir() + "/bad.yaml"
	if err := os.WriteFile(path, []byte("routing-mode: nativ\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, r, err := ParseFile(path)
	want := "load " + path + `: validate cilium-config: routing-mode: "nativ" is not one of native, tunnel`
	if err == nil || err.Error() != want || r == nil {
		t.Errorf("error = %v\nwant    %s (report %v)", err, want, r)
	}
	var ke *KeyError
	if !errors.As(err, &ke) || ke.Key != "routing-mode" || ke.Value != "nativ" {
		t.Errorf("errors.As KeyError: %+v", ke)
	}
}

func hasFinding(fs []Finding, key, substr string) bool {
	return slices.ContainsFunc(fs, func(f Finding) bool { return f.Key == key && strings.Contains(f.Message, substr) })
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maps"
)

const seedConfig = "../config/testdata/seed-002-kubectl-edit.txt"

// loadedFor is what openDatapath would load for config file on a node with a
// 1500-byte eth0: the BPF configuration and the MTU plan.
func loadedFor(t *testing.T, file string) (loadedState, *config.Config) {
	t.Helper()
	c, _, err := loadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	nodeIP := netip.MustParseAddr("192.168.77.1")
	mtu := planMTU(c, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}}, nodeIP, 0)
	node := bpfconfig.Node{ID: 1, IP: nodeIP, TunnelMTU: mtu.Route, VXLANIfindex: 12}
	cfg, sizes, err := datapathConfig(c, node)
	if err != nil {
		t.Fatal(err)
	}
	return loadedState{cfg: cfg, mtu: mtu, ctTCP: sizes.CTTCP, ctAny: sizes.CTAny, devices: []string{"eth0"}}, c
}

func featureMap(fs []Feature) map[string]string {
	m := map[string]string{}
	for _, f := range fs {
		m[f.Name] = f.Value
	}
	return m
}

// TestFeatures: the feature lines of the seed and of a Maglev config, and that
// they follow what was loaded, not the config text.
func TestFeatures(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		mutate     func(*loadedState)
		want       map[string]string
	}{
		{"seed", seedConfig, nil, map[string]string{
			"KubeProxyReplacement": "True",
			"Host Routing":         "BPF",
			"Routing":              "Network: Tunnel [vxlan]",
			"Tunnel Port":          "8472/udp",
			"Masquerading":         "BPF [eth0], ports 32768-60999, outside the cluster",
			"MTU":                  "1500 (device eth0), pods 1450",
			"Load Balancing":       "Mode: SNAT, Backend Selection: Random",
			"Maglev":               "Disabled (bpf-lb-algorithm: random)",
			"Conntrack":            "TCP 524288 entries, any 262144 entries",
			"KVStore":              "Disabled (kvstore: etcd is set but not implemented)",
			"Identity Allocation":  "Local: each agent derives a pod's identity from its labels (identity-allocation-mode: kvstore is set but not implemented)",
			"Monitor Aggregation":  "Medium",
			"Debug":                "Disabled (debug: True is set but not implemented)",
		}},
		{"maglev, native", "../config/configs/maglev.yaml", nil, map[string]string{
			"KubeProxyReplacement": "True",
			"Routing":              "Network: Native",
			"Native Routing CIDR":  "10.244.0.0/16",
			"Masquerading":         "Disabled (enable-ipv4-masquerade not set: Cilium's default, true, would masquerade with iptables)",
			"Maglev":               "table size 4093, seed set",
			"KVStore":              "Disabled",
			"MTU":                  "1500 (device eth0), pods 1500",
		}},
		{"vxlan: no load balancer", "../config/configs/vxlan.yaml", nil, map[string]string{
			"KubeProxyReplacement": "False",
			"Maglev":               "Disabled (no kube-proxy replacement)",
			"Conntrack":            "Disabled (only service load balancing tracks connections)",
		}},
		{"what was loaded wins over the config text", "../config/configs/vxlan.yaml", func(l *loadedState) {
			l.cfg.HostRouting = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY)
			l.cfg.TunnelProtocol = uint32(bpfobj.LxcTunnelProtocolTUNNEL_GENEVE)
		}, map[string]string{"Host Routing": "Legacy", "Routing": "Network: Tunnel [geneve]"}},
		{"BPF masquerading with its counters, as loaded", "../config/configs/vxlan.yaml", func(l *loadedState) {
			l.cfg.MasqEnabled, l.cfg.MasqPortMin, l.cfg.MasqPortMax, l.cfg.MasqIpMasqAgent = 1, 40000, 40003, 1
			l.masq = &maps.MasqStats{NewFlows: 5, Replies: 9, NoPort: 2}
			l.nonMasq = 3
		}, map[string]string{"Masquerading": "BPF [eth0], ports 40000-40003, outside the cluster, ip-masq-agent /etc/config/ip-masq-agent (3 non-masquerade CIDRs); flows 5, replies 9, ICMP errors 0, no free port 2, failed 0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, c := loadedFor(t, tc.file)
			if tc.mutate != nil {
				tc.mutate(&l)
			}
			got := featureMap(features(l, c))
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s: %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

// TestStatusCarriesConfigWarnings: GET /v1/status of an agent started with the
// seed config carries its warnings, and the printed status lists them.
func TestStatusCarriesConfigWarnings(t *testing.T) {
	c, r, err := loadConfig(seedConfig)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{opts: Options{Node: "node-a"}, cfg: c, report: r, problems: map[string]string{}}
	if a.store, err = openStore(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	a.handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/v1/status", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /v1/status: %d %s", rec.Code, rec.Body)
	}
	var s Status
	if err := json.Unmarshal(rec.Body.Bytes(), &s); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, w := range s.ConfigWarnings {
		keys = append(keys, w.Key)
		if w.Message == "" {
			t.Errorf("%s: empty message", w.Key)
		}
	}
	for _, k := range []string{"kvstore-opt"} {
		if !slices.Contains(keys, k) {
			t.Errorf("status JSON has no config warning for %s: %q", k, keys)
		}
	}
	if len(s.ConfigWarnings) != len(r.Warnings) {
		t.Errorf("%d warnings in the status, %d in the report", len(s.ConfigWarnings), len(r.Warnings))
	}
	var out strings.Builder
	s.Print(&out)
	if !strings.Contains(out.String(), `WARNING kvstore-opt: `) {
		t.Errorf("printed status lists no kvstore-opt warning:\n%s", out.String())
	}
}

// TestDatapathConfigCTSizes: bpf-ct-global-*-max size the conntrack maps the
// agent loads, with kube-proxy replacement; without it they are not used.
func TestDatapathConfigCTSizes(t *testing.T) {
	node := bpfconfig.Node{ID: 1, IP: netip.MustParseAddr("192.168.77.1"), TunnelMTU: 1450, VXLANIfindex: 12}
	for _, tc := range []struct {
		name             string
		data             map[string]string
		wantTCP, wantAny uint32
	}{
		{"given sizes", map[string]string{"kube-proxy-replacement": "true", "bpf-ct-global-tcp-max": "4096", "bpf-ct-global-any-max": "2048"}, 4096, 2048},
		{"defaults", map[string]string{"kube-proxy-replacement": "true"}, 524288, 262144},
		{"no kube-proxy replacement: no conntrack", map[string]string{"bpf-ct-global-tcp-max": "4096"}, 0, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := config.FromMap(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			_, sizes, err := datapathConfig(c, node)
			if err != nil {
				t.Fatal(err)
			}
			if sizes.CTTCP != tc.wantTCP || sizes.CTAny != tc.wantAny {
				t.Errorf("CT sizes %d/%d, want %d/%d", sizes.CTTCP, sizes.CTAny, tc.wantTCP, tc.wantAny)
			}
		})
	}
}

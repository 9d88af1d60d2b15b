// SPDX-License-Identifier: Apache-2.0

package bpfconfig_test

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
)

var update = flag.Bool("update", false, "rewrite testdata/translation.golden")

// translationInput is one cilium-config of the golden table.
type translationInput struct {
	name string
	data []byte // a file as given
	keys map[string]string
}

// translationInputs are every catalog config (datapath/config/configs), the ConfigMaps of
// config's tests (the seed's among them) and a matrix of settings.
func translationInputs(t *testing.T) []translationInput {
	t.Helper()
	var in []translationInput
	for _, pattern := range []string{"../config/configs/*.yaml", "../config/testdata/*.yaml", "../config/testdata/*.txt", "../config/testdata/*.md"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			in = append(in, translationInput{name: strings.TrimPrefix(f, "../"), data: b})
		}
	}
	if len(in) < 9 {
		t.Fatalf("found %d config files: is the catalog at ../config/configs?", len(in))
	}
	for _, keys := range settingsMatrix() {
		var parts []string
		for _, k := range slices.Sorted(func(yield func(string) bool) {
			for k := range keys {
				if !yield(k) {
					return
				}
			}
		}) {
			parts = append(parts, k+"="+keys[k])
		}
		in = append(in, translationInput{name: strings.Join(parts, ","), keys: keys})
	}
	return in
}

// settingsMatrix combines routing, load balancing, host routing and MTU settings,
// valid and invalid (monitor aggregation is covered by TestBuild).
func settingsMatrix() []map[string]string {
	routings := []map[string]string{
		{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8"},
		{"routing-mode": "tunnel", "tunnel-protocol": "vxlan"},
		{"routing-mode": "tunnel", "tunnel-protocol": "geneve"},
		{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "tunnel-protocol": "geneve"},
		// Calico's modes (issue 14).
		{"routing-mode": "tunnel", "tunnel-protocol": "ipip", "tunnel-mode": "always"},
		{"routing-mode": "tunnel", "tunnel-protocol": "ipip", "tunnel-mode": "cross-subnet"},
		{"routing-mode": "tunnel", "tunnel-protocol": "vxlan", "tunnel-mode": "cross-subnet"},
	}
	balancing := []map[string]string{{"kube-proxy-replacement": "false"}}
	for _, mode := range []string{"snat", "dsr", "hybrid"} {
		for _, algo := range []string{"random", "maglev"} {
			for _, dispatch := range []string{"opt", "geneve"} {
				balancing = append(balancing, map[string]string{"kube-proxy-replacement": "true", "bpf-lb-mode": mode,
					"bpf-lb-algorithm": algo, "bpf-lb-dsr-dispatch": dispatch})
			}
		}
	}
	var out []map[string]string
	for _, r := range routings {
		for _, lb := range balancing {
			for _, legacy := range []string{"false", "true"} {
				for _, mtu := range []string{"0", "9000"} {
					m := map[string]string{"enable-host-legacy-routing": legacy, "mtu": mtu}
					for _, part := range []map[string]string{r, lb} {
						for k, v := range part {
							m[k] = v
						}
					}
					out = append(out, m)
				}
			}
		}
	}
	return out
}

// resolveInput validates in; ok is false when config refuses it.
func resolveInput(t *testing.T, in translationInput) (*config.Config, bool) {
	t.Helper()
	var (
		c   *config.Config
		err error
	)
	if in.data != nil {
		c, _, err = config.Parse(in.data)
	} else {
		c, _, err = config.FromMap(in.keys)
	}
	return c, err == nil
}

// nodeFor is the node the golden table assumes: device MTU 1500 unless the mtu key
// says otherwise, the route MTU planned as the agent does, vxlan device 12.
func nodeFor(c *config.Config) bpfconfig.Node {
	n := bpfconfig.Node{ID: 7, IP: testNodeIP, VXLANIfindex: 12, SubnetBits: 24}
	device := 1500
	if c.MTU != 0 {
		device = c.MTU
	}
	n.TunnelMTU = device
	if c.RoutingMode == config.RoutingTunnel {
		n.TunnelMTU = bpfconfig.ProtocolTunnelMTU(c.TunnelProtocol, device, 0)
	}
	return n
}

// TestBuildGolden pins Build's output for every catalog config and the settings
// matrix. The golden file was written from the translation before bpfconfig existed
// (agent openDatapath + loader SetNativeRoutingCIDR/SetTunnel/SetLB + ValidateConfig):
// the values written into CONFIG must not change.
func TestBuildGolden(t *testing.T) {
	var b strings.Builder
	for _, in := range translationInputs(t) {
		c, ok := resolveInput(t, in)
		if !ok {
			fmt.Fprintf(&b, "%s: invalid config\n", in.name)
			continue
		}
		cfg, err := bpfconfig.Build(c, nodeFor(c))
		if err != nil {
			fmt.Fprintf(&b, "%s: %v\n", in.name, err)
			continue
		}
		fmt.Fprintf(&b, "%s: %v\n", in.name, cfg)
	}
	const path = "testdata/translation.golden"
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got, wantLines := strings.Split(b.String(), "\n"), strings.Split(string(want), "\n")
	if len(got) != len(wantLines) {
		t.Fatalf("%d lines, golden has %d", len(got), len(wantLines))
	}
	for i := range got {
		if got[i] != wantLines[i] {
			t.Errorf("line %d:\n got  %s\n want %s", i+1, got[i], wantLines[i])
		}
	}
}

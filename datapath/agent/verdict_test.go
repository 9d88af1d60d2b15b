// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"sigs.k8s.io/yaml"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
)

// startUp is the agent's start-up path up to the BPF configuration: New reads the
// config (loadConfig), openDatapath plans the MTUs on the underlay device (here a
// 1500-byte eth0 holding the node IP), creates cilium_vxlan for VXLAN (here ifindex
// 12) and translates (datapathConfig). Attaching is left out.
func startUp(file string) error {
	c, _, err := loadConfig(file)
	if err != nil {
		return err
	}
	nodeIP := netip.MustParseAddr("192.168.77.1")
	mtu := planMTU(c, &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: "eth0", MTU: 1500}}, nodeIP, 0)
	// As openDatapath: the subnet of the device holding the node IP, the tunnel MTU.
	node := bpfconfig.Node{ID: 1, IP: nodeIP, TunnelMTU: mtu.Route, SubnetBits: 24}
	if c.RoutingMode == config.RoutingTunnel {
		node.TunnelMTU = mtu.Tunnel
	}
	if c.RoutingMode == config.RoutingTunnel && c.TunnelProtocol == config.TunnelVXLAN {
		node.VXLANIfindex = 12
	}
	if c.LBSock && c.LBSockHostnsOnly { // as openDatapath learns it
		if node.NetnsCookie, err = netnsCookie(); err != nil {
			return err
		}
	}
	_, _, err = datapathConfig(c, node)
	return err
}

// validate is what `podpath validate` and scenario files do with a cilium-config.
func validate(data []byte) error {
	_, _, err := config.Parse(data)
	return err
}

// verdictCombinations are settings, valid and invalid, around every combination rule.
func verdictCombinations() map[string]map[string]string {
	native := map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8"}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := maps.Clone(base)
		if m == nil {
			m = map[string]string{}
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	out := map[string]map[string]string{
		"defaults":                           {},
		"native, geneve dispatch (seen)":     with(native, "kube-proxy-replacement", "true", "bpf-lb-mode", "dsr", "bpf-lb-dsr-dispatch", "geneve", "tunnel-protocol", "geneve"),
		"native, hybrid, geneve dispatch":    with(native, "kube-proxy-replacement", "true", "bpf-lb-mode", "hybrid", "bpf-lb-dsr-dispatch", "geneve"),
		"native, dsr, opt":                   with(native, "kube-proxy-replacement", "true", "bpf-lb-mode", "dsr"),
		"geneve tunnel, dsr, geneve":         {"tunnel-protocol": "geneve", "kube-proxy-replacement": "true", "bpf-lb-mode": "dsr", "bpf-lb-dsr-dispatch": "geneve"},
		"vxlan tunnel, dsr, geneve":          {"kube-proxy-replacement": "true", "bpf-lb-mode": "dsr", "bpf-lb-dsr-dispatch": "geneve"},
		"geneve tunnel, dsr, opt":            {"tunnel-protocol": "geneve", "kube-proxy-replacement": "true", "bpf-lb-mode": "dsr"},
		"dsr without kube-proxy replacement": with(native, "bpf-lb-mode", "dsr"),
		"tunnel mtu 117: route MTU 67":       {"mtu": "117"},
		"tunnel mtu 118: route MTU 68":       {"mtu": "118"},
		"geneve mtu 100":                     {"tunnel-protocol": "geneve", "mtu": "100"},
		"native mtu 68":                      with(native, "mtu", "68"),
		"jumbo tunnel mtu":                   {"mtu": "9000"},
		"largest mtu":                        {"mtu": "65535"},
		"native without a CIDR":              {"routing-mode": "native"},
		"maglev 251":                         {"kube-proxy-replacement": "true", "bpf-lb-algorithm": "maglev", "bpf-lb-maglev-table-size": "251"},
		"maglev 1000":                        {"kube-proxy-replacement": "true", "bpf-lb-algorithm": "maglev", "bpf-lb-maglev-table-size": "1000"},
		"all-zero seed":                      {"kube-proxy-replacement": "true", "bpf-lb-algorithm": "maglev", "bpf-lb-maglev-hash-seed": "AAAAAAAAAAAAAAAA"},
		"legacy host routing, kpr":           with(native, "enable-host-legacy-routing", "true", "kube-proxy-replacement", "true"),
		"monitor aggregation 4":              {"monitor-aggregation": "4"},
		"legacy tunnel: disabled":            {"tunnel": "disabled", "ipv4-native-routing-cidr": "10.0.0.0/8"},
	}
	// Every routing, load-balancing, host-routing and MTU setting against each other.
	routings := []map[string]string{native, {"tunnel-protocol": "vxlan"}, {"tunnel-protocol": "geneve"}, with(native, "tunnel-protocol", "geneve")}
	for i, r := range routings {
		for _, kpr := range []string{"false", "true"} {
			for _, mode := range []string{"snat", "dsr", "hybrid"} {
				for _, dispatch := range []string{"opt", "geneve"} {
					for _, legacy := range []string{"false", "true"} {
						for _, mtu := range []string{"0", "100", "118", "9000"} {
							m := with(r, "kube-proxy-replacement", kpr, "bpf-lb-mode", mode, "bpf-lb-dsr-dispatch", dispatch,
								"enable-host-legacy-routing", legacy, "mtu", mtu)
							out[strings.Join([]string{"matrix", string(rune('a' + i)), kpr, mode, dispatch, legacy, mtu}, "/")] = m
						}
					}
				}
			}
		}
	}
	return out
}

// TestValidateAndStartUpAgree: podpath validate accepts exactly the configs the agent
// starts with, for every catalog config, the configs of config's tests (the seed's
// ConfigMap among them) and the combinations above.
func TestValidateAndStartUpAgree(t *testing.T) {
	var files []string
	for _, pattern := range []string{"../config/configs/*.yaml", "../config/testdata/*"} {
		m, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) < 9 {
		t.Fatalf("found %d config files: is the catalog at ../config/configs?", len(files))
	}
	dir := t.TempDir()
	combos := verdictCombinations()
	for _, name := range slices.Sorted(maps.Keys(combos)) {
		b, err := yaml.Marshal(combos[name])
		if err != nil {
			t.Fatal(err)
		}
		f := filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_", ":", "", ",", "").Replace(name)+".yaml")
		if err := os.WriteFile(f, b, 0o644); err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	accepted := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		vErr, sErr := validate(data), startUp(f)
		if (vErr == nil) != (sErr == nil) {
			t.Errorf("%s:\n validate: %v\n start-up: %v", f, vErr, sErr)
		}
		if vErr == nil {
			accepted++
		} else if strings.Contains(f, "config/configs/") {
			t.Errorf("catalog config %s is invalid: %v", f, vErr)
		}
	}
	if accepted == 0 || accepted == len(files) {
		t.Errorf("%d of %d configs accepted: the table should hold valid and invalid ones", accepted, len(files))
	}
}

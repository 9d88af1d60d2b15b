// SPDX-License-Identifier: Apache-2.0

package config

import (
	"errors"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// assertConfig compares every field of got with want.
func assertConfig(t *testing.T, got, want *Config) {
	t.Helper()
	gv, wv := reflect.ValueOf(*got), reflect.ValueOf(*want)
	for i := range gv.NumField() {
		name := gv.Type().Field(i).Name
		if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
			t.Errorf("%s = %v, want %v", name, gv.Field(i).Interface(), wv.Field(i).Interface())
		}
	}
}

// native is what native routing needs besides routing-mode.
var native = map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8"}

func TestValidators(t *testing.T) {
	tests := []struct {
		key, value string
		extra      map[string]string // other keys needed by the case
		wantErr    string            // the whole KeyError; "" for a valid value
		check      func(c *Config) bool
	}{
		// routing-mode
		{key: "routing-mode", value: "tunnel", check: func(c *Config) bool { return c.RoutingMode == RoutingTunnel }},
		{key: "routing-mode", value: "native", extra: map[string]string{"ipv4-native-routing-cidr": "10.0.0.0/8"},
			check: func(c *Config) bool { return c.RoutingMode == RoutingNative }},
		{key: "routing-mode", value: "nativ", wantErr: `routing-mode: "nativ" is not one of native, tunnel`},
		{key: "routing-mode", value: "Native", wantErr: `routing-mode: "Native" is not one of native, tunnel (values are case-sensitive: did you mean native?)`},
		// tunnel (legacy)
		{key: "tunnel", value: "vxlan", check: func(c *Config) bool { return c.RoutingMode == RoutingTunnel && c.TunnelProtocol == TunnelVXLAN }},
		{key: "tunnel", value: "geneve", check: func(c *Config) bool { return c.TunnelProtocol == TunnelGeneve && c.TunnelPort == 6081 }},
		{key: "tunnel", value: "disabled", extra: map[string]string{"ipv4-native-routing-cidr": "10.0.0.0/8"},
			check: func(c *Config) bool { return c.RoutingMode == RoutingNative }},
		{key: "tunnel", value: "vxlam", wantErr: `tunnel: "vxlam" is not one of vxlan, geneve, disabled`},
		// tunnel-protocol
		{key: "tunnel-protocol", value: "geneve", check: func(c *Config) bool { return c.TunnelProtocol == TunnelGeneve && c.TunnelPort == PortGeneve }},
		{key: "tunnel-protocol", value: "vxlan", check: func(c *Config) bool { return c.TunnelProtocol == TunnelVXLAN && c.TunnelPort == PortVXLAN }},
		{key: "tunnel-protocol", value: "gre", wantErr: `tunnel-protocol: "gre" is not one of vxlan, geneve, ipip`},
		{key: "tunnel-protocol", value: "ipip", check: func(c *Config) bool {
			return c.TunnelProtocol == TunnelIPIP && c.TunnelPort == 0 && c.TunnelProtocol.Overhead() == 20
		}},
		{key: "tunnel-protocol", value: "IPIP", wantErr: `tunnel-protocol: "IPIP" is not one of vxlan, geneve, ipip (values are case-sensitive: did you mean ipip?)`},
		// tunnel-mode (podpath key)
		{key: "tunnel-mode", value: "cross-subnet", check: func(c *Config) bool { return c.TunnelMode == TunnelCrossSubnet }},
		{key: "tunnel-mode", value: "always", check: func(c *Config) bool { return c.TunnelMode == TunnelAlways }},
		{key: "tunnel-mode", value: "CrossSubnet", wantErr: `tunnel-mode: "CrossSubnet" is not one of always, cross-subnet`},
		{key: "tunnel-mode", value: "never", wantErr: `tunnel-mode: "never" is not one of always, cross-subnet`},
		// tunnel-port
		{key: "tunnel-port", value: "4789", check: func(c *Config) bool { return c.TunnelPort == 4789 }},
		{key: "tunnel-port", value: "0", check: func(c *Config) bool { return c.TunnelPort == 8472 }},
		{key: "tunnel-port", value: "70000", wantErr: `tunnel-port: "70000" is out of range: want 1..65535, or 0 for the protocol's port (8472 vxlan, 6081 geneve)`},
		{key: "tunnel-port", value: "udp", wantErr: `tunnel-port: "udp" is not an integer: want 1..65535, or 0 for the protocol's port (8472 vxlan, 6081 geneve)`},
		// ipv4-native-routing-cidr
		{key: "ipv4-native-routing-cidr", value: "10.244.0.0/16", extra: map[string]string{"routing-mode": "native"},
			check: func(c *Config) bool { return c.NativeRoutingCIDR == mustPrefix("10.244.0.0/16") }},
		{key: "ipv4-native-routing-cidr", value: "10.1.2.3/16", extra: map[string]string{"routing-mode": "native"},
			check: func(c *Config) bool { return c.NativeRoutingCIDR == mustPrefix("10.1.0.0/16") }},
		{key: "ipv4-native-routing-cidr", value: "10.0.0.0/33", extra: map[string]string{"routing-mode": "native"},
			wantErr: `ipv4-native-routing-cidr: "10.0.0.0/33" is not an IPv4 CIDR: want a.b.c.d/n, e.g. 10.0.0.0/8`},
		{key: "ipv4-native-routing-cidr", value: "10.0.0.1", wantErr: `ipv4-native-routing-cidr: "10.0.0.1" is not an IPv4 CIDR: want a.b.c.d/n, e.g. 10.0.0.0/8`},
		{key: "ipv4-native-routing-cidr", value: "fd00::/64", wantErr: `ipv4-native-routing-cidr: "fd00::/64" is not an IPv4 CIDR (podpath is IPv4-only): want a.b.c.d/n, e.g. 10.0.0.0/8`},
		// booleans
		{key: "auto-direct-node-routes", value: "True", extra: native, check: func(c *Config) bool { return c.AutoDirectNodeRoutes }},
		{key: "auto-direct-node-routes", value: "False", check: func(c *Config) bool { return !c.AutoDirectNodeRoutes }},
		{key: "auto-direct-node-routes", value: "yes", wantErr: `auto-direct-node-routes: "yes" is not a boolean: want true or false (Cilium also accepts True, False, TRUE, FALSE, 1, 0)`},
		{key: "enable-host-legacy-routing", value: "true", check: func(c *Config) bool { return c.HostRouting == HostRoutingLegacy }},
		{key: "enable-host-legacy-routing", value: "False", check: func(c *Config) bool { return c.HostRouting == HostRoutingBPF }},
		{key: "enable-host-legacy-routing", value: "nope", wantErr: `enable-host-legacy-routing: "nope" is not a boolean: want true or false (Cilium also accepts True, False, TRUE, FALSE, 1, 0)`},
		{key: "enable-ipv4", value: "True", check: func(c *Config) bool { return c.EnableIPv4 }},
		{key: "enable-ipv4", value: "false", wantErr: `enable-ipv4: "false" is not supported: podpath's datapath is IPv4-only, so enable-ipv4 must be true`},
		{key: "enable-ipv6", value: "False", check: func(c *Config) bool { return c.EnableIPv4 }},
		{key: "enable-ipv6", value: "true", wantErr: `enable-ipv6: "true" is not supported: podpath's datapath is IPv4-only (set enable-ipv6: false)`},
		{key: "enable-ipv6", value: "ja", wantErr: `enable-ipv6: "ja" is not a boolean: want true or false (Cilium also accepts True, False, TRUE, FALSE, 1, 0)`},
		{key: "debug", value: "TRUE", check: func(c *Config) bool { return c.Debug }},
		{key: "debug", value: "1", check: func(c *Config) bool { return c.Debug }},
		{key: "debug", value: "on", wantErr: `debug: "on" is not a boolean: want true or false (Cilium also accepts True, False, TRUE, FALSE, 1, 0)`},
		{key: "enable-bpf-masquerade", value: "True", check: func(c *Config) bool { return c.EnableBPFMasquerade }},
		{key: "enable-bpf-masquerade", value: "maybe", wantErr: `enable-bpf-masquerade: "maybe" is not a boolean: want true or false (Cilium also accepts True, False, TRUE, FALSE, 1, 0)`},
		{key: "enable-ipv4-masquerade", value: "false", check: func(c *Config) bool { return !c.EnableIPv4Masquerade }},
		{key: "podpath-masquerade-port-range", value: "40000,40003", check: func(c *Config) bool { return c.MasqPortMin == 40000 && c.MasqPortMax == 40003 }},
		{key: "podpath-masquerade-port-range", value: "40003,40000", wantErr: `podpath-masquerade-port-range: "40003,40000" is not a port range: want "min,max" with 1 <= min <= max <= 65535 (want 1 <= min <= max)`},
		{key: "bpf-nat-global-max", value: "65536", check: func(c *Config) bool { return c.NATGlobalMax == 65536 }},
		{key: "ip-masq-agent-config-path", value: "/tmp/x", check: func(c *Config) bool { return c.IPMasqAgentConfigPath == "/tmp/x" }},
		{key: "enable-ipv4-masquerade", value: "sometimes", wantErr: `enable-ipv4-masquerade: "sometimes" is not a boolean: want true or false (Cilium also accepts True, False, TRUE, FALSE, 1, 0)`},
		// monitor-aggregation
		{key: "monitor-aggregation", value: "none", check: func(c *Config) bool { return c.MonitorAggregation == AggregationNone }},
		{key: "monitor-aggregation", value: "disabled", check: func(c *Config) bool { return c.MonitorAggregation == AggregationNone }},
		{key: "monitor-aggregation", value: "low", check: func(c *Config) bool { return c.MonitorAggregation == AggregationLow }},
		{key: "monitor-aggregation", value: "lowest", check: func(c *Config) bool { return c.MonitorAggregation == AggregationLow }},
		{key: "monitor-aggregation", value: "medium", check: func(c *Config) bool { return c.MonitorAggregation == AggregationMedium }},
		{key: "monitor-aggregation", value: "MEDIUM", check: func(c *Config) bool { return c.MonitorAggregation == AggregationMedium }},
		{key: "monitor-aggregation", value: "max", check: func(c *Config) bool { return c.MonitorAggregation == AggregationMaximum }},
		{key: "monitor-aggregation", value: "maximum", check: func(c *Config) bool { return c.MonitorAggregation == AggregationMaximum }},
		{key: "monitor-aggregation", value: "3", check: func(c *Config) bool { return c.MonitorAggregation == AggregationMedium }},
		{key: "monitor-aggregation", value: "high", wantErr: `monitor-aggregation: "high" is not one of none, low, medium, maximum (Cilium also accepts disabled, lowest, max and its levels 0-4)`},
		{key: "monitor-aggregation", value: "5", wantErr: `monitor-aggregation: "5" is not one of none, low, medium, maximum (Cilium also accepts disabled, lowest, max and its levels 0-4)`},
		// monitor-aggregation-flags
		{key: "monitor-aggregation-flags", value: "all", check: func(c *Config) bool { return c.MonitorAggregationFlags == 0xff }},
		{key: "monitor-aggregation-flags", value: "syn,fin", check: func(c *Config) bool { return c.MonitorAggregationFlags == FlagSYN|FlagFIN }},
		{key: "monitor-aggregation-flags", value: "SYN fin rst", check: func(c *Config) bool { return c.MonitorAggregationFlags == FlagSYN|FlagFIN|FlagRST }},
		{key: "monitor-aggregation-flags", value: "none", check: func(c *Config) bool { return c.MonitorAggregationFlags == 0 }},
		{key: "monitor-aggregation-flags", value: "syn,bogus", wantErr: `monitor-aggregation-flags: "syn,bogus" has an unknown flag "bogus": want a list of none, all, fin, syn, rst, psh, ack, urg, ece, cwr`},
		// mtu
		{key: "mtu", value: "0", check: func(c *Config) bool { return c.MTU == 0 }},
		{key: "mtu", value: "68", extra: native, check: func(c *Config) bool { return c.MTU == 68 }},
		{key: "mtu", value: "9000", check: func(c *Config) bool { return c.MTU == 9000 }},
		{key: "mtu", value: "67", wantErr: `mtu: "67" is out of range: want 0 (auto) or 68..65535`},
		{key: "mtu", value: "65536", wantErr: `mtu: "65536" is out of range: want 0 (auto) or 68..65535`},
		{key: "mtu", value: "1500b", wantErr: `mtu: "1500b" is not an integer: want 0 (auto) or 68..65535`},
		// kube-proxy-replacement
		{key: "kube-proxy-replacement", value: "true", check: func(c *Config) bool { return c.KubeProxyReplacement == KPRTrue }},
		{key: "kube-proxy-replacement", value: "False", check: func(c *Config) bool { return c.KubeProxyReplacement == KPRFalse }},
		{key: "kube-proxy-replacement", value: "strict", check: func(c *Config) bool { return c.KubeProxyReplacement == KPRTrue }},
		{key: "kube-proxy-replacement", value: "probe", check: func(c *Config) bool { return c.KubeProxyReplacement == KPRTrue }},
		{key: "kube-proxy-replacement", value: "disabled", check: func(c *Config) bool { return c.KubeProxyReplacement == KPRFalse }},
		{key: "kube-proxy-replacement", value: "partial", check: func(c *Config) bool { return c.KubeProxyReplacement == KPRFalse }},
		{key: "kube-proxy-replacement", value: "partial", extra: map[string]string{"enable-node-port": "true"},
			check: func(c *Config) bool { return c.KubeProxyReplacement == KPRTrue }},
		{key: "kube-proxy-replacement", value: "yes", wantErr: `kube-proxy-replacement: "yes" is not one of true, false (Cilium <= 1.13 also: strict, probe, partial, disabled)`},
		{key: "kube-proxy-replacement", value: "Strict", wantErr: `kube-proxy-replacement: "Strict" is not one of true, false (Cilium <= 1.13 also: strict, probe, partial, disabled) (values are case-sensitive: did you mean strict?)`},
		// load balancing
		{key: "bpf-lb-mode", value: "snat", check: func(c *Config) bool { return c.LBMode == LBModeSNAT }},
		{key: "bpf-lb-mode", value: "dsr", extra: map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "kube-proxy-replacement": "true"},
			check: func(c *Config) bool { return c.LBMode == LBModeDSR }},
		{key: "bpf-lb-mode", value: "hybrid", extra: map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "kube-proxy-replacement": "true"},
			check: func(c *Config) bool { return c.LBMode == LBModeHybrid }},
		{key: "bpf-lb-mode", value: "direct", wantErr: `bpf-lb-mode: "direct" is not one of snat, dsr, hybrid`},
		// bpf-lb-acceleration (issue 13)
		{key: "bpf-lb-acceleration", value: "native", extra: map[string]string{"kube-proxy-replacement": "true"},
			check: func(c *Config) bool { return c.LBAcceleration == LBAccelerationNative }},
		{key: "bpf-lb-acceleration", value: "best-effort", extra: map[string]string{"kube-proxy-replacement": "true"},
			check: func(c *Config) bool { return c.LBAcceleration == LBAccelerationBestEffort }},
		{key: "bpf-lb-acceleration", value: "disabled", check: func(c *Config) bool { return c.LBAcceleration == LBAccelerationDisabled }},
		{key: "bpf-lb-acceleration", value: "native", wantErr: `bpf-lb-acceleration: "native" needs kube-proxy replacement (XDP serves the BPF NodePort frontends), but kube-proxy-replacement is not true: set kube-proxy-replacement: true or bpf-lb-acceleration: disabled`},
		{key: "bpf-lb-acceleration", value: "generic", wantErr: `bpf-lb-acceleration: "generic" is not one of disabled, native, best-effort`},
		{key: "bpf-lb-algorithm", value: "maglev", check: func(c *Config) bool { return c.LBAlgorithm == LBMaglev }},
		{key: "bpf-lb-algorithm", value: "random", check: func(c *Config) bool { return c.LBAlgorithm == LBRandom }},
		{key: "bpf-lb-algorithm", value: "roundrobin", wantErr: `bpf-lb-algorithm: "roundrobin" is not one of random, maglev`},
		{key: "bpf-lb-maglev-table-size", value: "251", extra: map[string]string{"bpf-lb-algorithm": "maglev"}, check: func(c *Config) bool { return c.MaglevTableSize == 251 }},
		{key: "bpf-lb-maglev-table-size", value: "131071", extra: map[string]string{"bpf-lb-algorithm": "maglev"}, check: func(c *Config) bool { return c.MaglevTableSize == 131071 }},
		{key: "bpf-lb-maglev-table-size", value: "1000", wantErr: `bpf-lb-maglev-table-size: "1000" is not one of 251, 509, 1021, 2039, 4093, 8191, 16381, 32749, 65521, 131071 (the primes Cilium accepts; pick one > 100 x backends)`},
		{key: "bpf-lb-maglev-hash-seed", value: MaglevSeedDefault, extra: map[string]string{"bpf-lb-algorithm": "maglev"},
			check: func(c *Config) bool { return c.MaglevHashSeedSet && c.MaglevHashSeed == Default().MaglevHashSeed }},
		{key: "bpf-lb-maglev-hash-seed", value: "c2VlZA==", wantErr: `bpf-lb-maglev-hash-seed: "c2VlZA==" decodes to 4 bytes: want base64 of exactly 12 bytes (16 characters, e.g. from head -c12 /dev/urandom | base64)`},
		{key: "bpf-lb-maglev-hash-seed", value: "not base64!", wantErr: `bpf-lb-maglev-hash-seed: "not base64!" is not base64: want base64 of exactly 12 bytes (16 characters, e.g. from head -c12 /dev/urandom | base64)`},
		{key: "bpf-lb-dsr-dispatch", value: "opt", extra: map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "kube-proxy-replacement": "true", "bpf-lb-mode": "dsr"},
			check: func(c *Config) bool { return c.DSRDispatch == DSRDispatchOption }},
		{key: "bpf-lb-dsr-dispatch", value: "geneve", extra: map[string]string{"tunnel-protocol": "geneve", "kube-proxy-replacement": "true", "bpf-lb-mode": "dsr"},
			check: func(c *Config) bool { return c.DSRDispatch == DSRDispatchGeneve }},
		{key: "bpf-lb-dsr-dispatch", value: "ipip", wantErr: `bpf-lb-dsr-dispatch: "ipip" is a Cilium value podpath does not support (IPIP dispatch is for Cilium's standalone L4 load balancer): want opt or geneve`},
		{key: "bpf-lb-dsr-dispatch", value: "gre", wantErr: `bpf-lb-dsr-dispatch: "gre" is not one of opt, geneve`},
		// map sizes
		{key: "bpf-ct-global-tcp-max", value: "1024", check: func(c *Config) bool { return c.CTTCPMax == 1024 }},
		{key: "bpf-ct-global-tcp-max", value: "16777216", check: func(c *Config) bool { return c.CTTCPMax == 16777216 }},
		{key: "bpf-ct-global-tcp-max", value: "1023", wantErr: `bpf-ct-global-tcp-max: "1023" is out of range: want 1024..16777216`},
		{key: "bpf-ct-global-tcp-max", value: "1e6", wantErr: `bpf-ct-global-tcp-max: "1e6" is not an integer: want 1024..16777216`},
		{key: "bpf-ct-global-any-max", value: "262144", check: func(c *Config) bool { return c.CTAnyMax == 262144 }},
		{key: "bpf-ct-global-any-max", value: "16777217", wantErr: `bpf-ct-global-any-max: "16777217" is out of range: want 1024..16777216`},
		{key: "bpf-map-dynamic-size-ratio", value: "0.0025", check: func(c *Config) bool { return c.MapDynamicSizeRatio == 0.0025 }},
		{key: "bpf-map-dynamic-size-ratio", value: "1", check: func(c *Config) bool { return c.MapDynamicSizeRatio == 1 }},
		{key: "bpf-map-dynamic-size-ratio", value: "1.5", wantErr: `bpf-map-dynamic-size-ratio: "1.5" is out of range: want 0..1 (0 disables dynamic sizing)`},
		{key: "bpf-map-dynamic-size-ratio", value: "a lot", wantErr: `bpf-map-dynamic-size-ratio: "a lot" is not a number: want 0..1 (0 disables dynamic sizing)`},
		// cluster-name
		{key: "cluster-name", value: "lab-1", check: func(c *Config) bool { return c.ClusterName == "lab-1" }},
		{key: "cluster-name", value: "Lab", wantErr: `cluster-name: "Lab" is not a valid cluster name: want at most 32 lowercase letters, digits and '-', starting and ending with a letter or digit`},
		{key: "cluster-name", value: "-lab", wantErr: `cluster-name: "-lab" is not a valid cluster name: want at most 32 lowercase letters, digits and '-', starting and ending with a letter or digit`},
		{key: "cluster-name", value: strings.Repeat("a", 33), wantErr: `cluster-name: "` + strings.Repeat("a", 33) + `" is not a valid cluster name: want at most 32 lowercase letters, digits and '-', starting and ending with a letter or digit`},
		// empty values mean the default
		{key: "mtu", value: "", check: func(c *Config) bool { return c.MTU == 0 }},
		{key: "routing-mode", value: " ", check: func(c *Config) bool { return c.RoutingMode == RoutingTunnel }},
	}
	for _, tc := range tests {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			data := maps.Clone(tc.extra)
			if data == nil {
				data = map[string]string{}
			}
			data[tc.key] = tc.value
			c, r, err := FromMap(data)
			if tc.wantErr != "" {
				var ve *ValidationError
				if !errors.As(err, &ve) || len(ve.Errs) != 1 {
					t.Fatalf("error = %v, want one KeyError %q", err, tc.wantErr)
				}
				if got := ve.Errs[0].Error(); got != tc.wantErr {
					t.Errorf("error = %s\nwant    %s", got, tc.wantErr)
				}
				if ve.Errs[0].Key != tc.key || ve.Errs[0].Value != tc.value {
					t.Errorf("KeyError names %q=%q", ve.Errs[0].Key, ve.Errs[0].Value)
				}
				if want := "validate cilium-config: " + tc.wantErr; err.Error() != want {
					t.Errorf("Error() = %s", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FromMap: %v", err)
			}
			if !tc.check(c) {
				t.Errorf("resolved config not as expected: %+v\n%s", c, r)
			}
		})
	}
}

func TestCombinations(t *testing.T) {
	tests := []struct {
		name     string
		data     map[string]string
		wantErrs []string  // whole KeyErrors, in order
		warn     []Finding // warnings expected (message substrings)
		notice   []Finding // notices expected (message substrings)
		check    func(c *Config) bool
	}{
		{name: "native contradicts a legacy vxlan tunnel",
			data:     map[string]string{"routing-mode": "native", "tunnel": "vxlan", "ipv4-native-routing-cidr": "10.0.0.0/8"},
			wantErrs: []string{`routing-mode: "native" contradicts tunnel: "vxlan" (the legacy key for routing-mode: tunnel with tunnel-protocol: vxlan): drop tunnel to route natively, or set routing-mode: tunnel`}},
		{name: "tunnel disabled contradicts routing-mode tunnel",
			data:     map[string]string{"routing-mode": "tunnel", "tunnel": "disabled"},
			wantErrs: []string{`tunnel: "disabled" contradicts routing-mode: "tunnel" (tunnel: disabled is the legacy spelling of routing-mode: native): drop tunnel, or set routing-mode: native`}},
		{name: "tunnel-protocol disagrees with tunnel",
			data:     map[string]string{"tunnel-protocol": "geneve", "tunnel": "vxlan"},
			wantErrs: []string{`tunnel-protocol: "geneve" disagrees with tunnel: "vxlan" (the legacy key also names the protocol): drop tunnel and keep tunnel-protocol`}},
		{name: "tunnel-protocol agrees with tunnel",
			data:   map[string]string{"tunnel-protocol": "geneve", "tunnel": "geneve"},
			notice: []Finding{{"tunnel", "legacy key (Cilium <= 1.14): tunnel: geneve means routing-mode: tunnel with tunnel-protocol: geneve"}},
			check:  func(c *Config) bool { return c.RoutingMode == RoutingTunnel && c.TunnelProtocol == TunnelGeneve }},
		{name: "native and tunnel disabled agree",
			data:   map[string]string{"routing-mode": "native", "tunnel": "disabled", "ipv4-native-routing-cidr": "10.0.0.0/8"},
			notice: []Finding{{"tunnel", "tunnel: disabled means routing-mode: native"}},
			check:  func(c *Config) bool { return c.RoutingMode == RoutingNative }},
		{name: "native without a CIDR",
			data:     map[string]string{"routing-mode": "native"},
			wantErrs: []string{`ipv4-native-routing-cidr: required when routing natively (routing-mode: native): the IPv4 CIDR the network routes without encapsulation, e.g. 10.0.0.0/8`}},
		{name: "tunnel disabled without a CIDR",
			data:     map[string]string{"tunnel": "disabled"},
			wantErrs: []string{`ipv4-native-routing-cidr: required when routing natively (tunnel: disabled): the IPv4 CIDR the network routes without encapsulation, e.g. 10.0.0.0/8`}},
		{name: "auto-direct-node-routes in tunnel mode",
			data: map[string]string{"auto-direct-node-routes": "true"},
			warn: []Finding{{"auto-direct-node-routes", "true is ignored in tunnel mode: pods on other nodes are reached through the vxlan tunnel (Cilium >= 1.14 refuses to start with this"}}},
		{name: "DSR with Geneve dispatch over a VXLAN tunnel",
			data:     map[string]string{"kube-proxy-replacement": "true", "bpf-lb-mode": "dsr", "bpf-lb-dsr-dispatch": "geneve"},
			wantErrs: []string{`bpf-lb-dsr-dispatch: "geneve" needs a Geneve tunnel (tunnel-protocol: geneve) to carry the DSR option, but the tunnel is vxlan`}},
		{name: "DSR with Geneve dispatch, native, tunnel-protocol vxlan",
			data: map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "kube-proxy-replacement": "true",
				"bpf-lb-mode": "hybrid", "bpf-lb-dsr-dispatch": "geneve"},
			wantErrs: []string{`bpf-lb-dsr-dispatch: "geneve" cannot be used with routing-mode: native: podpath decapsulates Geneve in tunnel mode only; set bpf-lb-dsr-dispatch: opt, or routing-mode: tunnel with tunnel-protocol: geneve`}},
		{name: "DSR with Geneve dispatch, native, tunnel-protocol geneve",
			data: map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "kube-proxy-replacement": "true",
				"bpf-lb-mode": "dsr", "bpf-lb-dsr-dispatch": "geneve", "tunnel-protocol": "geneve"},
			wantErrs: []string{`bpf-lb-dsr-dispatch: "geneve" cannot be used with routing-mode: native: podpath decapsulates Geneve in tunnel mode only; set bpf-lb-dsr-dispatch: opt, or routing-mode: tunnel with tunnel-protocol: geneve`}},
		{name: "mtu too small for tunnel mode",
			data:     map[string]string{"mtu": "117"},
			wantErrs: []string{`mtu: "117" is too small for tunnel mode: pods would get 117 - 50 bytes of vxlan overhead = 67, below IPv4's minimum MTU 68: want 0 (auto) or 118..65535`}},
		{name: "smallest mtu of tunnel mode",
			data:  map[string]string{"mtu": "118"},
			check: func(c *Config) bool { return c.MTU == 118 }},
		{name: "small mtu with native routing",
			data:  map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "mtu": "68"},
			check: func(c *Config) bool { return c.MTU == 68 }},
		{name: "DSR with option dispatch in tunnel mode",
			data:     map[string]string{"kube-proxy-replacement": "true", "bpf-lb-mode": "dsr", "bpf-lb-dsr-dispatch": "opt", "tunnel-protocol": "geneve"},
			wantErrs: []string{`bpf-lb-dsr-dispatch: "opt" cannot be used in tunnel mode with bpf-lb-mode: dsr: the IPv4 option would travel inside the tunnel; set bpf-lb-dsr-dispatch: geneve with tunnel-protocol: geneve, or routing-mode: native`}},
		{name: "DSR with the default dispatch in tunnel mode",
			data:     map[string]string{"kube-proxy-replacement": "true", "bpf-lb-mode": "hybrid"},
			wantErrs: []string{`bpf-lb-dsr-dispatch: opt (the default) cannot be used in tunnel mode with bpf-lb-mode: hybrid: the IPv4 option would travel inside the tunnel; set bpf-lb-dsr-dispatch: geneve with tunnel-protocol: geneve, or routing-mode: native`}},
		{name: "DSR without kube-proxy replacement",
			data:     map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "bpf-lb-mode": "dsr", "kube-proxy-replacement": "disabled"},
			wantErrs: []string{`bpf-lb-mode: "dsr" needs kube-proxy replacement (DSR is part of BPF NodePort handling), but kube-proxy-replacement is disabled: set kube-proxy-replacement: true or bpf-lb-mode: snat`}},
		{name: "hybrid with kube-proxy replacement unset",
			data:     map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "bpf-lb-mode": "hybrid"},
			wantErrs: []string{`bpf-lb-mode: "hybrid" needs kube-proxy replacement (DSR is part of BPF NodePort handling), but kube-proxy-replacement is unset, default false: set kube-proxy-replacement: true or bpf-lb-mode: snat`}},
		{name: "dispatch without DSR",
			data: map[string]string{"bpf-lb-dsr-dispatch": "geneve"},
			warn: []Finding{{"bpf-lb-dsr-dispatch", "ignored: bpf-lb-mode is snat (the dispatch method applies only to dsr and hybrid)"}}},
		{name: "Maglev settings with random selection",
			data: map[string]string{"bpf-lb-maglev-table-size": "65521", "bpf-lb-maglev-hash-seed": MaglevSeedDefault},
			warn: []Finding{
				{"bpf-lb-maglev-table-size", "ignored: bpf-lb-algorithm is random"},
				{"bpf-lb-maglev-hash-seed", "ignored: bpf-lb-algorithm is random"},
			}},
		{name: "BPF masquerade without masquerading",
			data: map[string]string{"enable-bpf-masquerade": "true", "enable-ipv4-masquerade": "false"},
			warn: []Finding{{"enable-bpf-masquerade", "true has no effect: enable-ipv4-masquerade is false"}}},
		{name: "BPF host routing with iptables masquerading",
			data:  map[string]string{"enable-host-legacy-routing": "false"},
			warn:  []Finding{{"enable-host-legacy-routing", "Cilium would fall back to legacy host routing here"}},
			check: func(c *Config) bool { return c.HostRouting == HostRoutingBPF }},
		{name: "tunnel settings in native mode",
			data: map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "tunnel-protocol": "vxlan", "tunnel-port": "8472"},
			notice: []Finding{
				{"tunnel-protocol", "not used in native routing mode"},
				{"tunnel-port", "not used in native routing mode"},
			}},
		{name: "kube-proxy-replacement partial",
			data: map[string]string{"kube-proxy-replacement": "partial", "enable-node-port": "true"},
			warn: []Finding{{"kube-proxy-replacement", "podpath does not implement those switches and follows enable-node-port: kube-proxy replacement is true"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, r, err := FromMap(tc.data)
			var got []string
			var ve *ValidationError
			if errors.As(err, &ve) {
				for _, ke := range ve.Errs {
					got = append(got, ke.Error())
				}
			} else if err != nil {
				t.Fatalf("error is not a *ValidationError: %v", err)
			}
			if !slices.Equal(got, tc.wantErrs) {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.wantErrs, "\n"))
			}
			for _, f := range tc.warn {
				if !hasFinding(r.Warnings, f.Key, f.Message) {
					t.Errorf("no warning %q in\n%s", f, r)
				}
			}
			for _, f := range tc.notice {
				if !hasFinding(r.Notices, f.Key, f.Message) {
					t.Errorf("no notice %q in\n%s", f, r)
				}
			}
			if tc.check != nil && (c == nil || !tc.check(c)) {
				t.Errorf("resolved config not as expected: %+v", c)
			}
		})
	}
}

// All problems are reported at once, sorted by key, not just the first.
func TestAllErrorsCollected(t *testing.T) {
	_, r, err := FromMap(map[string]string{
		"routing-mode":            "nativ",
		"mtu":                     "1",
		"enable-ipv6":             "true",
		"bpf-lb-maglev-hash-seed": "c2VlZA==",
		"bpf-lb-mode":             "dsr",
		"routing-mod":             "native",
	})
	want := `validate cilium-config: 5 problems:
  bpf-lb-maglev-hash-seed: "c2VlZA==" decodes to 4 bytes: want base64 of exactly 12 bytes (16 characters, e.g. from head -c12 /dev/urandom | base64)
  bpf-lb-mode: "dsr" needs kube-proxy replacement (DSR is part of BPF NodePort handling), but kube-proxy-replacement is unset, default false: set kube-proxy-replacement: true or bpf-lb-mode: snat
  enable-ipv6: "true" is not supported: podpath's datapath is IPv4-only (set enable-ipv6: false)
  mtu: "1" is out of range: want 0 (auto) or 68..65535
  routing-mode: "nativ" is not one of native, tunnel`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n%v\nwant:\n%s", err, want)
	}
	var ke *KeyError
	if !errors.As(err, &ke) {
		t.Error("errors.As(*KeyError) failed")
	}
	if !hasFinding(r.Warnings, "routing-mod", "did you mean routing-mode?") {
		t.Errorf("the report is kept with the error: %s", r)
	}
}

func TestUnknownKeys(t *testing.T) {
	tests := []struct{ key, want string }{
		{"routing-mod", "unknown key, not a Cilium key podpath knows: ignored; did you mean routing-mode?"},
		{"tunel", "unknown key, not a Cilium key podpath knows: ignored; did you mean tunnel?"},
		{"enable-ipv4-masqerade", "unknown key, not a Cilium key podpath knows: ignored; did you mean enable-ipv4-masquerade?"},
		{"routingMode", "unknown key, not a Cilium key podpath knows: ignored; the cilium-config spelling is routing-mode"},
		{"ipv4NativeRoutingCIDR", "unknown key, not a Cilium key podpath knows: ignored; the cilium-config spelling is ipv4-native-routing-cidr"},
		{"enableIPv4Masquerade", "unknown key, not a Cilium key podpath knows: ignored; the cilium-config spelling is enable-ipv4-masquerade"},
		{"kube_proxy_replacement", "unknown key, not a Cilium key podpath knows: ignored; the cilium-config spelling is kube-proxy-replacement"},
		{"frobnicate-the-datapath", "unknown key, not a Cilium key podpath knows: ignored"},
		{"mtux", "unknown key, not a Cilium key podpath knows: ignored; did you mean mtu?"},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			_, r, err := FromMap(map[string]string{tc.key: "x", "enable-ipv4-masquerade": "false"})
			if err != nil {
				t.Fatal(err)
			}
			want := []Finding{{tc.key, tc.want}}
			if !slices.Equal(r.Warnings, want) {
				t.Errorf("warnings = %q\nwant       %q", r.Warnings, want)
			}
		})
	}
}

func TestRecognisedKeys(t *testing.T) {
	tests := []struct {
		key, value string
		warning    bool
		want       string
	}{
		{"ipam", "kubernetes", false, `recognised Cilium key, not used by podpath: "kubernetes" is what podpath does: each agent allocates pod addresses from the PodCIDR it is given (--pod-cidr: the node's spec.podCIDR, as ipam: kubernetes does); there is no cluster pool and no operator`},
		{"ipam", "cluster-pool", true, `"cluster-pool" is not implemented: each agent allocates pod addresses from the PodCIDR it is given (--pod-cidr: the node's spec.podCIDR, as ipam: kubernetes does); there is no cluster pool and no operator`},
		{"enable-wireguard", "false", false, "recognised Cilium key, not used by podpath: ignored (WireGuard transparent encryption)"},
		{"enable-wireguard", "True", true, `"True" is not implemented: podpath does not implement WireGuard transparent encryption and behaves as enable-wireguard: false`},
		{"datapath-mode", "netkit", true, `"netkit" is not implemented: podpath does not implement pod device type and behaves as datapath-mode: veth`},
		{"operator-api-serve-addr", "0.0.0.0:1", false, "recognised Cilium key, not used by podpath: ignored (cilium-operator reads it; podpath has no operator)"},
		{"agent-health-port", "9879", true, `"9879" is not implemented: the podpath agent serves no health endpoint (its liveness is its API socket: GET /v1/status)`},
		{"kvstore", "consul", true, `"consul" is not implemented: only etcd is implemented: agents register their node, endpoints (IP -> identity) and services under cilium/state/ with a lease and program the other nodes' endpoints from etcd into the ipcache; nodes and services still reach each agent through its API or the Kubernetes watch, and there is no cluster mesh`},
		{"monitor-aggregation-flags", "all", false, "not used: monitor-aggregation is none, and the flags matter only under medium and maximum"},
		{"bpf-ct-global-tcp-max", "1048576", true, `"1048576" is not used: kube-proxy-replacement is false, and podpath tracks connections only for service load balancing: without kube-proxy-replacement its conntrack maps hold one entry and this size is not used`},
		{"enable-k8s-networkpolicy", "false", true, `"false" is not implemented: NetworkPolicies are always enforced when given (agent API, scenario policies); the value is not read`},
		{"native-routing-cidr", "10.0.0.0/8", true, "legacy Cilium key, replaced by ipv4-native-routing-cidr: podpath reads only ipv4-native-routing-cidr: ignored"},
	}
	for _, tc := range tests {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			_, r, err := FromMap(map[string]string{tc.key: tc.value})
			if err != nil {
				t.Fatal(err)
			}
			of := func(fs []Finding) []Finding { // the findings on tc.key
				return slices.DeleteFunc(slices.Clone(fs), func(f Finding) bool { return f.Key != tc.key })
			}
			got, other := of(r.Notices), of(r.Warnings)
			if tc.warning {
				got, other = other, got
			}
			want := []Finding{{tc.key, tc.want}}
			if !slices.Equal(got, want) || len(other) != 0 {
				t.Errorf("got %q (and %q), want %q", got, other, want)
			}
		})
	}
}

func TestDefault(t *testing.T) {
	c, r, err := FromMap(nil)
	if err != nil {
		t.Fatal(err)
	}
	assertConfig(t, c, Default())
	d := Default()
	if d.RoutingMode != RoutingTunnel || d.TunnelProtocol != TunnelVXLAN || d.TunnelPort != 8472 || d.HostRouting != HostRoutingBPF {
		t.Errorf("Default() = %+v: want tunnel mode with VXLAN on 8472 and BPF host routing", d)
	}
	want := []Finding{{"enable-host-legacy-routing", ""}}
	if len(r.Warnings) != 1 || r.Warnings[0].Key != want[0].Key || len(r.Notices) != 0 {
		t.Errorf("report for an empty config:\n%s", r)
	}
	cc := c.Clone()
	cc.Raw["x"] = "y"
	if _, ok := c.Raw["x"]; ok {
		t.Error("Clone shares Raw")
	}
}

func TestKnownKeys(t *testing.T) {
	keys := KnownKeys()
	if !slices.IsSortedFunc(keys, func(a, b Key) int { return strings.Compare(a.Name, b.Name) }) {
		t.Error("KnownKeys is not sorted")
	}
	var implemented []string
	for _, k := range keys {
		if k.Meaning == "" || k.Kind == "" {
			t.Errorf("%s: no meaning or kind", k.Name)
		}
		if k.Kind == KindEnum && len(k.Values) == 0 {
			t.Errorf("%s: enum without values", k.Name)
		}
		switch k.Status {
		case StatusImplemented, StatusPartial, StatusFixed:
			implemented = append(implemented, k.Name)
			if len(k.Proof) == 0 {
				t.Errorf("%s is %s but names no proof", k.Name, k.Status)
			}
			if k.Status == StatusPartial && k.Gap == "" {
				t.Errorf("%s is partial but says nothing of what is not done", k.Name)
			}
			if k.Status != StatusFixed && reflect.ValueOf(Config{}).FieldByName(k.Field).Kind() == reflect.Invalid {
				t.Errorf("%s: Field %q is not a field of Config", k.Name, k.Field)
			}
		case StatusIgnored:
			if k.Assumes != "" && k.Default != "" && !sameValue(&k, k.Assumes, k.Default) {
				t.Errorf("%s: podpath assumes %q but Cilium defaults to %q: status differs, not ignored", k.Name, k.Assumes, k.Default)
			}
		case StatusDiffers:
			if !k.NoValue && (k.Assumes == "" || sameValue(&k, k.Assumes, k.Default)) {
				t.Errorf("%s: differs, but podpath assumes %q and Cilium defaults to %q", k.Name, k.Assumes, k.Default)
			}
			if k.Instead == "" {
				t.Errorf("%s: differs, but Instead does not say what podpath does", k.Name)
			}
		case StatusUnknown:
		default:
			t.Errorf("%s: status %q", k.Name, k.Status)
		}
	}
	want := []string{"auto-direct-node-routes", "bpf-ct-global-any-max", "bpf-ct-global-tcp-max", "bpf-events-policy-verdict-enabled", "bpf-lb-acceleration", "bpf-lb-algorithm", "bpf-lb-dsr-dispatch",
		"bpf-lb-external-clusterip", "bpf-lb-maglev-hash-seed", "bpf-lb-maglev-table-size", "bpf-lb-mode", "bpf-lb-sock", "bpf-lb-sock-hostns-only", "bpf-nat-global-max", "cluster-name",
		"enable-bgp-control-plane", "enable-bpf-masquerade", "enable-host-legacy-routing", "enable-ip-masq-agent", "enable-ipv4", "enable-ipv4-egress-gateway", "enable-ipv4-fragment-tracking", "enable-ipv4-masquerade",
		"enable-ipv6", "enable-policy", "enable-service-topology", "enable-svc-source-range-check", "etcd-config", "identity-allocation-mode", "ip-masq-agent-config-path",
		"ipv4-native-routing-cidr", "kube-proxy-replacement", "kvstore", "monitor-aggregation", "mtu", "podpath-masquerade-port-range",
		"policy-audit-mode", "routing-mode", "service-no-backend-response", "tunnel", "tunnel-mode", "tunnel-port",
		"tunnel-protocol"}
	if !slices.Equal(implemented, want) {
		t.Errorf("keys podpath reads:\n%q\nwant\n%q", implemented, want)
	}
	// Every documented default of an implemented key is accepted and is what
	// Default() holds.
	for _, name := range want {
		k := lookupKey(name)
		if k.Default == "" {
			continue
		}
		c, _, err := FromMap(map[string]string{name: k.Default})
		if err != nil {
			t.Errorf("%s: default %q rejected: %v", name, k.Default, err)
			continue
		}
		c.Raw = Default().Raw
		c.MaglevHashSeedSet, c.KubeProxyReplacementGiven = false, "" // record that the key was given
		c.EnableIPv4MasqueradeGiven = false
		if name != "tunnel" && !reflect.DeepEqual(c, Default()) {
			t.Errorf("%s: %q resolves to %+v, not Default()", name, k.Default, c)
		}
	}
}

func TestSummary(t *testing.T) {
	c, _, err := ParseFile(seedFile)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"KubeProxyReplacement: True (configured as probe)",
		"Routing: Network: Tunnel [vxlan]",
		"Tunnel port: 8472/udp",
		"Auto direct node routes: Disabled",
		"Host Routing: BPF",
		"Masquerading: BPF, ports 32768-60999, outside the cluster",
		"Load balancing: Mode: SNAT, Backend Selection: Random",
		"Monitor aggregation: medium",
		"MTU: auto",
		"CT map sizes: TCP 524288, any 262144",
		"IPv4: Enabled, IPv6: Disabled",
	}
	if got := c.Summary(); !slices.Equal(got, want) {
		t.Errorf("seed summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	c, _, err = FromMap(map[string]string{
		"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8", "kube-proxy-replacement": "true",
		"bpf-lb-mode": "dsr", "bpf-lb-algorithm": "maglev", "bpf-lb-maglev-table-size": "65521",
		"enable-host-legacy-routing": "true", "enable-ipv4-masquerade": "false", "mtu": "9000", "monitor-aggregation": "maximum",
	})
	if err != nil {
		t.Fatal(err)
	}
	want = []string{
		"KubeProxyReplacement: True",
		"Routing: Network: Native",
		"Native routing CIDR: 10.0.0.0/8",
		"Auto direct node routes: Disabled",
		"Host Routing: Legacy",
		"Masquerading: Disabled",
		"Load balancing: Mode: DSR [dispatch: opt], Backend Selection: Maglev [table size 65521]",
		"Monitor aggregation: maximum",
		"MTU: 9000",
		"CT map sizes: TCP 524288, any 262144",
		"IPv4: Enabled, IPv6: Disabled",
	}
	if got := c.Summary(); !slices.Equal(got, want) {
		t.Errorf("native summary:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestKebabAndDistance(t *testing.T) {
	for in, want := range map[string]string{
		"routingMode":            "routing-mode",
		"ipv4NativeRoutingCIDR":  "ipv4-native-routing-cidr",
		"enableIPv6Masquerade":   "enable-ipv6-masquerade",
		"enableBPFMasquerade":    "enable-bpf-masquerade",
		"kube_proxy_replacement": "kube-proxy-replacement",
		"mtu":                    "mtu",
	} {
		if got := kebab(in); got != want {
			t.Errorf("kebab(%q) = %q, want %q", in, got, want)
		}
	}
	for _, tc := range []struct {
		a, b string
		d    int
	}{{"", "abc", 3}, {"routing-mod", "routing-mode", 1}, {"tunel", "tunnel", 1}, {"kitten", "sitting", 3}} {
		if got := levenshtein(tc.a, tc.b); got != tc.d {
			t.Errorf("levenshtein(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.d)
		}
	}
}

// A contradictory routing setup does not also yield DSR errors computed from a
// guessed mode.
func TestContradictionStopsDependentChecks(t *testing.T) {
	_, _, err := FromMap(map[string]string{
		"routing-mode": "native", "tunnel": "geneve", "ipv4-native-routing-cidr": "10.0.0.0/8",
		"kube-proxy-replacement": "true", "bpf-lb-mode": "dsr",
	})
	var ve *ValidationError
	if !errors.As(err, &ve) || len(ve.Errs) != 1 || ve.Errs[0].Key != "routing-mode" {
		t.Errorf("error = %v, want only the routing-mode contradiction", err)
	}
}

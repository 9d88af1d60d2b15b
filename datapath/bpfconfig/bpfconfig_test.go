// SPDX-License-Identifier: Apache-2.0

package bpfconfig_test

import (
	"net/netip"
	"strings"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/btfnames"
	"podpath/datapath/config"
	"podpath/datapath/maglev"
)

var (
	testNodeIP = netip.MustParseAddr("192.168.77.1")
	testNode   = bpfconfig.Node{ID: 7, IP: testNodeIP, TunnelMTU: 1450, VXLANIfindex: 12}
	// otherSeed is bpf-lb-maglev-hash-seed AQIDBAUGBwgJCgsM.
	otherSeed = [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
)

// resolve validates cilium-config data keys.
func resolve(t *testing.T, data map[string]string) *config.Config {
	t.Helper()
	c, _, err := config.FromMap(data)
	if err != nil {
		t.Fatalf("config %v: %v", data, err)
	}
	return c
}

// want builds the expected Config: node 7 on 192.168.77.1, then fields.
func want(fields func(*bpfconfig.Config)) bpfconfig.Config {
	// Cilium's defaults: enable-policy default, verdict events on.
	c := bpfconfig.Config{NodeId: 7, NodeIp: testNodeIP.As4(), PolicyEnabled: 1, PolicyVerdictEvents: 1}
	fields(&c)
	return c
}

func native(c *bpfconfig.Config) {
	c.RoutingMode = uint32(bpfobj.LxcRoutingModeROUTING_MODE_NATIVE)
	c.NativeRoutingCidr, c.NativeRoutingCidrLen = [4]uint8{10, 0, 0, 0}, 8
}

func tunnel(proto bpfobj.LxcTunnelProtocol, port uint16, ifindex uint32) func(*bpfconfig.Config) {
	return func(c *bpfconfig.Config) {
		c.RoutingMode = uint32(bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL)
		c.TunnelProtocol, c.TunnelPort, c.TunnelMtu, c.VxlanIfindex = uint32(proto), port, 1450, ifindex
	}
}

func lb(mode bpfobj.LxcLbMode, m uint32, seed [12]byte) func(*bpfconfig.Config) {
	return func(c *bpfconfig.Config) {
		c.LbEnabled, c.LbMode, c.LbMaglevTableSize, c.LbMaglevSeed = 1, uint8(mode), m, seed
		c.LbSnatPortMin, c.LbSnatPortMax = 61000, 65535
		c.CtTimeoutTcp, c.CtTimeoutTcpSyn, c.CtTimeoutTcpClosing, c.CtTimeoutAny = 21600, 60, 10, 60
		c.LbNoBackendReject, c.LbSourceRangeCheck, c.LbFragTracking = 1, 1, 1
	}
}

func masq(lo, hi uint16, agent uint8) func(*bpfconfig.Config) {
	return func(c *bpfconfig.Config) {
		c.MasqEnabled, c.MasqPortMin, c.MasqPortMax, c.MasqIpMasqAgent = 1, lo, hi, agent
		c.CtTimeoutTcp, c.CtTimeoutTcpSyn, c.CtTimeoutTcpClosing, c.CtTimeoutAny = 21600, 60, 10, 60
	}
}

func all(fs ...func(*bpfconfig.Config)) func(*bpfconfig.Config) {
	return func(c *bpfconfig.Config) {
		for _, f := range fs {
			f(c)
		}
	}
}

var (
	vxlan      = tunnel(bpfobj.LxcTunnelProtocolTUNNEL_VXLAN, 8472, 12)
	geneve     = tunnel(bpfobj.LxcTunnelProtocolTUNNEL_GENEVE, 6081, 0)
	nativeKeys = map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.0.0.0/8"}
)

func with(base map[string]string, kv ...string) map[string]string {
	m := map[string]string{}
	for k, v := range base {
		m[k] = v
	}
	for i := 0; i < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return m
}

// TestBuild pins the translation of every setting.
func TestBuild(t *testing.T) {
	const seedKey = "AQIDBAUGBwgJCgsM"
	def := maglev.DefaultSeed()
	for _, tc := range []struct {
		name string
		data map[string]string
		node *bpfconfig.Node // default testNode
		want bpfconfig.Config
	}{
		{"defaults: vxlan tunnel, BPF host routing, no load balancer", nil, nil, want(vxlan)},
		{"vxlan on another port", map[string]string{"tunnel-port": "4789"}, nil,
			want(tunnel(bpfobj.LxcTunnelProtocolTUNNEL_VXLAN, 4789, 12))},
		{"geneve: no vxlan device", map[string]string{"tunnel-protocol": "geneve"}, nil, want(geneve)},
		{"legacy tunnel key", map[string]string{"tunnel": "geneve"}, nil, want(geneve)},
		{"native: CIDR masked, tunnel fields zero", with(nativeKeys, "ipv4-native-routing-cidr", "10.1.2.3/8", "tunnel-protocol", "geneve"), nil, want(native)},
		{"native: /0", with(nativeKeys, "ipv4-native-routing-cidr", "0.0.0.0/0"), nil,
			want(func(c *bpfconfig.Config) { c.RoutingMode = uint32(bpfobj.LxcRoutingModeROUTING_MODE_NATIVE) })},
		{"tunnel disabled is native", map[string]string{"tunnel": "disabled", "ipv4-native-routing-cidr": "10.0.0.0/8"}, nil, want(native)},
		{"legacy host routing", with(nativeKeys, "enable-host-legacy-routing", "true"), nil,
			want(all(native, func(c *bpfconfig.Config) { c.HostRouting = uint32(bpfobj.LxcHostRoutingHOST_ROUTING_LEGACY) }))},
		{"monitor aggregation low", map[string]string{"monitor-aggregation": "low"}, nil,
			want(all(vxlan, func(c *bpfconfig.Config) { c.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_LOW) }))},
		{"monitor aggregation medium (Cilium's 3)", map[string]string{"monitor-aggregation": "3"}, nil,
			want(all(vxlan, func(c *bpfconfig.Config) {
				c.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MEDIUM)
			}))},
		{"monitor aggregation maximum", map[string]string{"monitor-aggregation": "max"}, nil,
			want(all(vxlan, func(c *bpfconfig.Config) { c.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX) }))},
		{"jumbo tunnel MTU", nil, &bpfconfig.Node{ID: 7, IP: testNodeIP, TunnelMTU: 8950, VXLANIfindex: 3},
			want(all(tunnel(bpfobj.LxcTunnelProtocolTUNNEL_VXLAN, 8472, 3), func(c *bpfconfig.Config) { c.TunnelMtu = 8950 }))},
		{"native ignores the tunnel facts", nativeKeys, &bpfconfig.Node{ID: 7, IP: testNodeIP}, want(native)},
		{"kube-proxy replacement: snat, random", with(nativeKeys, "kube-proxy-replacement", "true"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def)))},
		{"kube-proxy replacement probe means true", with(nativeKeys, "kube-proxy-replacement", "probe"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def)))},
		{"snat in a vxlan tunnel", map[string]string{"kube-proxy-replacement": "true"}, nil,
			want(all(vxlan, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def)))},
		{"dsr, opt dispatch, native", with(nativeKeys, "kube-proxy-replacement", "true", "bpf-lb-mode", "dsr", "bpf-lb-dsr-dispatch", "opt"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_DSR, 16381, def)))},
		{"hybrid, native", with(nativeKeys, "kube-proxy-replacement", "true", "bpf-lb-mode", "hybrid"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_HYBRID, 16381, def)))},
		{"dsr, geneve dispatch, geneve tunnel", map[string]string{"kube-proxy-replacement": "true", "bpf-lb-mode": "dsr",
			"bpf-lb-dsr-dispatch": "geneve", "tunnel-protocol": "geneve"}, nil,
			want(all(geneve, lb(bpfobj.LxcLbModeLB_MODE_DSR, 16381, def)))},
		{"hybrid, geneve dispatch, geneve tunnel", map[string]string{"kube-proxy-replacement": "true", "bpf-lb-mode": "hybrid",
			"bpf-lb-dsr-dispatch": "geneve", "tunnel-protocol": "geneve"}, nil,
			want(all(geneve, lb(bpfobj.LxcLbModeLB_MODE_HYBRID, 16381, def)))},
		{"maglev with its table size and seed", with(nativeKeys, "kube-proxy-replacement", "true", "bpf-lb-algorithm", "maglev",
			"bpf-lb-maglev-table-size", "251", "bpf-lb-maglev-hash-seed", seedKey), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 251, otherSeed)))},
		{"an all-zero seed means the default seed", with(nativeKeys, "kube-proxy-replacement", "true", "bpf-lb-algorithm", "maglev",
			"bpf-lb-maglev-hash-seed", "AAAAAAAAAAAAAAAA"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def)))},
		{"service-no-backend-response drop", with(nativeKeys, "kube-proxy-replacement", "true", "service-no-backend-response", "drop"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def), func(c *bpfconfig.Config) { c.LbNoBackendReject = 0 }))},
		{"enable-svc-source-range-check false", with(nativeKeys, "kube-proxy-replacement", "true", "enable-svc-source-range-check", "false"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def), func(c *bpfconfig.Config) { c.LbSourceRangeCheck = 0 }))},
		{"enable-ipv4-fragment-tracking false", with(nativeKeys, "kube-proxy-replacement", "true", "enable-ipv4-fragment-tracking", "false"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def), func(c *bpfconfig.Config) { c.LbFragTracking = 0 }))},
		{"bpf-lb-external-clusterip true", with(nativeKeys, "kube-proxy-replacement", "true", "bpf-lb-external-clusterip", "true"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def), func(c *bpfconfig.Config) { c.LbExternalClusterip = 1 }))},
		{"random keeps the table size: the inner map template needs it", with(nativeKeys, "kube-proxy-replacement", "true",
			"bpf-lb-maglev-table-size", "509"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 509, def)))},
		{"no kube-proxy replacement: the load balancer fields stay zero", with(nativeKeys, "bpf-lb-algorithm", "maglev"), nil, want(native)},
		{"BPF masquerade: the default ports and lifetimes", with(nativeKeys, "enable-ipv4-masquerade", "true", "enable-bpf-masquerade", "true"), nil,
			want(all(native, masq(32768, 60999, 0)))},
		{"BPF masquerade with ip-masq-agent and a port range, tunnel", map[string]string{"enable-ipv4-masquerade": "true",
			"enable-bpf-masquerade": "true", "enable-ip-masq-agent": "true", "podpath-masquerade-port-range": "40000,40003"}, nil,
			want(all(vxlan, masq(40000, 40003, 1)))},
		{"BPF masquerade with the load balancer", with(nativeKeys, "enable-ipv4-masquerade", "true", "enable-bpf-masquerade", "true", "kube-proxy-replacement", "true"), nil,
			want(all(native, lb(bpfobj.LxcLbModeLB_MODE_SNAT, 16381, def), masq(32768, 60999, 0)))},
		{"egress gateway: on, with BPF masquerading", with(nativeKeys, "enable-ipv4-masquerade", "true", "enable-bpf-masquerade", "true",
			"enable-ipv4-egress-gateway", "true"), nil,
			want(all(native, masq(32768, 60999, 0), func(c *bpfconfig.Config) { c.EgressGwEnabled = 1 }))},
		{"legacy masquerade: nothing in BPF (the agent's nftables)", with(nativeKeys, "enable-ipv4-masquerade", "true"), nil, want(native)},
		{"BPF masquerade without enable-ipv4-masquerade: nothing", with(nativeKeys, "enable-bpf-masquerade", "true"), nil, want(native)},
		// Calico's modes (issue 14): tunnel-protocol ipip, tunnel-mode.
		{"ipip: no port, no vxlan device, its own MTU", map[string]string{"tunnel-protocol": "ipip"},
			&bpfconfig.Node{ID: 7, IP: testNodeIP, TunnelMTU: 1480, VXLANIfindex: 12, SubnetBits: 24},
			want(all(tunnel(bpfobj.LxcTunnelProtocolTUNNEL_IPIP, 0, 0), func(c *bpfconfig.Config) { c.TunnelMtu = 1480 }))},
		{"ipip ignores tunnel-port", map[string]string{"tunnel-protocol": "ipip", "tunnel-port": "4789"},
			&bpfconfig.Node{ID: 7, IP: testNodeIP, TunnelMTU: 1480},
			want(all(tunnel(bpfobj.LxcTunnelProtocolTUNNEL_IPIP, 0, 0), func(c *bpfconfig.Config) { c.TunnelMtu = 1480 }))},
		{"tunnel-mode always: no subnet", map[string]string{"tunnel-mode": "always"},
			&bpfconfig.Node{ID: 7, IP: testNodeIP, TunnelMTU: 1450, VXLANIfindex: 12, SubnetBits: 24}, want(vxlan)},
		{"tunnel-mode cross-subnet, vxlan: the node's subnet length", map[string]string{"tunnel-mode": "cross-subnet"},
			&bpfconfig.Node{ID: 7, IP: testNodeIP, TunnelMTU: 1450, VXLANIfindex: 12, SubnetBits: 24},
			want(all(vxlan, func(c *bpfconfig.Config) { c.TunnelMode, c.NodeSubnetLen = uint8(bpfconfig.TunnelModeCrossSubnet), 24 }))},
		{"tunnel-mode cross-subnet, ipip", map[string]string{"tunnel-mode": "cross-subnet", "tunnel-protocol": "ipip"},
			&bpfconfig.Node{ID: 7, IP: testNodeIP, TunnelMTU: 1480, SubnetBits: 26},
			want(all(tunnel(bpfobj.LxcTunnelProtocolTUNNEL_IPIP, 0, 0), func(c *bpfconfig.Config) {
				c.TunnelMtu, c.TunnelMode, c.NodeSubnetLen = 1480, uint8(bpfconfig.TunnelModeCrossSubnet), 26
			}))},
		{"native ignores tunnel-mode", with(nativeKeys, "tunnel-mode", "cross-subnet"), nil, want(native)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := testNode
			if tc.node != nil {
				n = *tc.node
			}
			got, err := bpfconfig.Build(resolve(t, tc.data), n)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Errorf("got  %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// TestBuildRefusesNodeFacts: a valid config fails only through what the node gives.
func TestBuildRefusesNodeFacts(t *testing.T) {
	geneveKeys := map[string]string{"tunnel-protocol": "geneve"}
	for _, tc := range []struct {
		name string
		data map[string]string
		node bpfconfig.Node
		want string
	}{
		{"no node IP", nil, bpfconfig.Node{TunnelMTU: 1450, VXLANIfindex: 3}, "node IP invalid IP: want an IPv4 address"},
		{"IPv6 node IP", nil, bpfconfig.Node{IP: netip.MustParseAddr("fd00::1"), TunnelMTU: 1450, VXLANIfindex: 3}, "want an IPv4 address"},
		{"vxlan without its device", nil, bpfconfig.Node{IP: testNodeIP, TunnelMTU: 1450}, "VXLAN needs the ifindex of the collect_md vxlan device, got 0"},
		{"tunnel MTU below 68", geneveKeys, bpfconfig.Node{IP: testNodeIP, TunnelMTU: 40}, "tunnel MTU 40: want 68..65485"},
		{"tunnel MTU above 65485", geneveKeys, bpfconfig.Node{IP: testNodeIP, TunnelMTU: 70000}, "tunnel MTU 70000: want 68..65485"},
		{"cross-subnet without the subnet length", map[string]string{"tunnel-mode": "cross-subnet", "tunnel-protocol": "ipip"},
			bpfconfig.Node{IP: testNodeIP, TunnelMTU: 1480}, "tunnel-mode cross-subnet needs the node IP's subnet length, got 0: want 1..32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := bpfconfig.Build(resolve(t, tc.data), tc.node)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "build datapath config: ") {
				t.Errorf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

// TestCheck: what loader.LoadDatapath refuses in a config it is handed.
func TestCheck(t *testing.T) {
	good, err := bpfconfig.Build(resolve(t, map[string]string{"kube-proxy-replacement": "true"}), testNode)
	if err != nil {
		t.Fatal(err)
	}
	if err := bpfconfig.Check(good); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mutate func(*bpfconfig.Config)
		want   string
	}{
		{func(c *bpfconfig.Config) { c.MonitorAggregation = 4 }, "monitor aggregation 4"},
		{func(c *bpfconfig.Config) { c.HostRouting = 2 }, "host routing 2"},
		{func(c *bpfconfig.Config) { c.RoutingMode = 2 }, "routing mode 2"},
		{func(c *bpfconfig.Config) { c.NativeRoutingCidrLen = 33 }, "native-routing CIDR length 33"},
		{func(c *bpfconfig.Config) { c.TunnelProtocol = 4 }, "tunnel protocol 4"},
		{func(c *bpfconfig.Config) { c.TunnelMode = 2 }, "tunnel mode 2"},
		{func(c *bpfconfig.Config) { c.TunnelMode = 1 }, "tunnel mode cross-subnet with subnet length 0"},
		{func(c *bpfconfig.Config) { c.TunnelPort = 0 }, "tunnel port 0"},
		{func(c *bpfconfig.Config) { c.TunnelMtu = 0 }, "tunnel MTU 0"},
		{func(c *bpfconfig.Config) { c.VxlanIfindex = 0 }, "collect_md vxlan device"},
		{func(c *bpfconfig.Config) { c.NodeIp = [4]uint8{} }, "without a node IP"},
		{func(c *bpfconfig.Config) { c.LbEnabled = 2 }, "lb enabled 2"},
		{func(c *bpfconfig.Config) { c.LbMode = 7 }, "lb mode 7"},
		{func(c *bpfconfig.Config) { c.LbMaglevTableSize = 1000 }, "maglev table size 1000"},
		{func(c *bpfconfig.Config) { c.LbSnatPortMin, c.LbSnatPortMax = 2000, 1000 }, "SNAT ports 2000-1000"},
		{func(c *bpfconfig.Config) { c.CtTimeoutAny = 0 }, "conntrack timeouts"},
	} {
		c := good
		tc.mutate(&c)
		if err := bpfconfig.Check(c); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %q, got %v", tc.want, err)
		}
	}
	if got := bpfconfig.TunnelMTU(1500, 0); got != 1450 {
		t.Errorf("TunnelMTU(1500, 0) = %d", got)
	}
	if got := bpfconfig.TunnelMTU(9000, 12); got != 8938 {
		t.Errorf("TunnelMTU(9000, 12) = %d", got)
	}
}

// TestBuildRefusesUnknownSettings: a Config that did not come from package config
// may hold values no C enum has.
func TestBuildRefusesUnknownSettings(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*config.Config)
		want   string
	}{
		{func(c *config.Config) { c.MonitorAggregation = 9 }, `monitor aggregation "MonitorAggregation(9)": not a value podpath knows`},
		{func(c *config.Config) { c.HostRouting = "Fast" }, `host routing "Fast"`},
		{func(c *config.Config) { c.RoutingMode = "mesh" }, `routing mode "mesh"`},
		{func(c *config.Config) { c.TunnelProtocol = "gre" }, `tunnel protocol "gre"`},
		{func(c *config.Config) { c.KubeProxyReplacement, c.LBMode = config.KPRTrue, "ipip" }, `lb mode "ipip"`},
		{func(c *config.Config) { c.KubeProxyReplacement, c.MaglevTableSize = config.KPRTrue, 1000 }, "maglev table size 1000"},
		{func(c *config.Config) { c.RoutingMode = config.RoutingNative }, "native-routing CIDR invalid Prefix: want an IPv4 prefix"},
		{func(c *config.Config) {
			c.RoutingMode, c.NativeRoutingCIDR = config.RoutingNative, netip.MustParsePrefix("fd00::/64")
		}, "native-routing CIDR fd00::/64: want an IPv4 prefix"},
	} {
		c := config.Default()
		tc.mutate(c)
		if _, err := bpfconfig.Build(c, testNode); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error with %q, got %v", tc.want, err)
		}
	}
}

// TestTunnelModeMatchesBTF: bpfconfig's TunnelMode values are enum tunnel_mode's.
func TestTunnelModeMatchesBTF(t *testing.T) {
	enum, err := btfnames.Default("tunnel_mode")
	if err != nil {
		t.Fatal(err)
	}
	for v, name := range map[bpfconfig.TunnelMode]string{
		bpfconfig.TunnelModeAlways:      "TUNNEL_MODE_ALWAYS",
		bpfconfig.TunnelModeCrossSubnet: "TUNNEL_MODE_CROSS_SUBNET",
	} {
		if got := enum[uint64(v)]; got != name {
			t.Errorf("tunnel mode %d: BTF names it %q, want %q", v, got, name)
		}
	}
	if len(enum) != 2 {
		t.Errorf("enum tunnel_mode has %d values, bpfconfig knows 2: %v", len(enum), enum)
	}
}

// TestBuildPolicy: enable-policy, policy-audit-mode and
// bpf-events-policy-verdict-enabled reach the BPF config.
func TestBuildPolicy(t *testing.T) {
	for _, tc := range []struct {
		data                  map[string]string
		enabled, audit, event uint8
	}{
		{nil, 1, 0, 1},
		{map[string]string{"enable-policy": "never"}, 0, 0, 1},
		{map[string]string{"enable-policy": "always"}, 1, 0, 1},
		{map[string]string{"policy-audit-mode": "true"}, 1, 1, 1},
		{map[string]string{"bpf-events-policy-verdict-enabled": "false"}, 1, 0, 0},
	} {
		c, _, err := config.FromMap(tc.data)
		if err != nil {
			t.Fatal(err)
		}
		got, err := bpfconfig.Build(c, testNode)
		if err != nil {
			t.Fatal(err)
		}
		if got.PolicyEnabled != tc.enabled || got.PolicyAuditMode != tc.audit || got.PolicyVerdictEvents != tc.event {
			t.Errorf("%v: policy enabled/audit/events %d/%d/%d, want %d/%d/%d", tc.data,
				got.PolicyEnabled, got.PolicyAuditMode, got.PolicyVerdictEvents, tc.enabled, tc.audit, tc.event)
		}
	}
}

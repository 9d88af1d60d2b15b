// SPDX-License-Identifier: Apache-2.0

package config

import (
	"cmp"
	"encoding/base64"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// FromMap validates cilium-config data keys and resolves them into a Config. The
// error, when not nil, is a *ValidationError listing every invalid value and
// contradictory combination, each naming its key; the Report is returned either way.
func FromMap(data map[string]string) (*Config, *Report, error) {
	r := &Report{Source: fmt.Sprintf("map: %d keys", len(data))}
	c, err := resolve(data, r)
	return c, r, err
}

// resolve validates data into a Config, appending findings to r.
func resolve(data map[string]string, r *Report) (*Config, error) {
	v := &resolver{data: data, r: r, c: Default(), bad: map[string]bool{}}
	v.c.Raw = maps.Clone(data)
	if v.c.Raw == nil {
		v.c.Raw = map[string]string{}
	}
	v.classify()
	v.scalars()
	v.routing()
	v.loadBalancing()
	v.tunnelMTU()
	v.unusedTunnelSettings()
	v.masquerading()
	v.dependentKeys()
	if len(v.errs) > 0 {
		slices.SortStableFunc(v.errs, func(a, b *KeyError) int { return strings.Compare(a.Key, b.Key) })
		return nil, &ValidationError{Errs: v.errs}
	}
	return v.c, nil
}

type resolver struct {
	data map[string]string
	r    *Report
	c    *Config
	errs []*KeyError
	bad  map[string]bool // keys whose value is invalid: combinations skip them
}

// fail records that key's value is invalid; the reason starts with the quoted value.
func (v *resolver) fail(key, format string, args ...any) {
	val := v.data[key]
	v.bad[key] = true
	v.errs = append(v.errs, &KeyError{Key: key, Value: val, Reason: strconv.Quote(val) + " " + fmt.Sprintf(format, args...)})
}

// failRaw records a problem whose reason is written in full (missing keys, combinations).
func (v *resolver) failRaw(key, format string, args ...any) {
	v.errs = append(v.errs, &KeyError{Key: key, Value: v.data[key], Reason: fmt.Sprintf(format, args...)})
}

// get returns key's value with surrounding space trimmed, and whether it is set.
// An empty value counts as unset: the default applies, with a notice.
func (v *resolver) get(key string) (string, bool) {
	raw, ok := v.data[key]
	if !ok {
		return "", false
	}
	s := strings.TrimSpace(raw)
	if s == "" {
		v.r.notice(key, "empty value: the default %q applies", lookupKey(key).Default)
		return "", false
	}
	return s, true
}

// classify reports, in key order, every key podpath does not read: a warning when
// the value asks for something podpath does not do (or when the key is unknown or
// not audited), a notice when podpath does what the value says or the key cannot
// matter to it. Partial keys are judged in partialKeys, once the config is resolved.
func (v *resolver) classify() {
	for _, name := range slices.Sorted(maps.Keys(v.data)) {
		k := lookupKey(name)
		val := v.data[name]
		q := quoteShort(val)
		switch {
		case k == nil:
			msg := "unknown key, not a Cilium key podpath knows: ignored"
			switch s, respelled := suggest(name); {
			case respelled:
				msg += "; the cilium-config spelling is " + s
			case s != "":
				msg += "; did you mean " + s + "?"
			}
			v.r.warn(name, "%s", msg)
		case k.Read(), name == "monitor-aggregation-flags":
			// validated below; partial keys and flags are judged in dependentKeys
		case k.ReplacedBy != "":
			v.r.warn(name, "legacy Cilium key, replaced by %s: podpath reads only %s: ignored", k.ReplacedBy, k.ReplacedBy)
		case k.Status == StatusUnknown:
			v.r.warn(name, "%s is not read by podpath, and what podpath does instead was not audited (%s)", q, k.Meaning)
		case k.Inert != "":
			v.r.notice(name, "recognised Cilium key, not used by podpath: ignored (%s)", k.Inert)
		case !k.NoValue && sameValue(k, val, k.assumes()):
			if k.Instead != "" {
				v.r.notice(name, "recognised Cilium key, not used by podpath: %s is what podpath does: %s", q, k.Instead)
			} else {
				v.r.notice(name, "recognised Cilium key, not used by podpath: ignored (%s)", k.Meaning)
			}
		case k.Instead != "":
			v.r.warn(name, "%s is not implemented: %s", q, k.Instead)
		case k.assumes() != "":
			v.r.warn(name, "%s is not implemented: podpath does not implement %s and behaves as %s: %s",
				q, k.Meaning, name, k.assumes())
		default:
			v.r.warn(name, "%s is not implemented: podpath does not implement %s", q, k.Meaning)
		}
	}
}

// quoteShort quotes a value for a finding, cut to its first line or 40 bytes.
func quoteShort(val string) string {
	cut := val
	if i := strings.IndexByte(strings.TrimLeft(cut, "-\n "), '\n'); i >= 0 {
		cut = strings.TrimLeft(cut, "-\n ")[:i]
	}
	if len(cut) > 40 {
		cut = cut[:40]
	}
	if cut != val {
		return strconv.Quote(cut) + "..."
	}
	return strconv.Quote(val)
}

// assumes is the value podpath behaves as for a key it does not read.
func (k *Key) assumes() string {
	if k.Assumes != "" {
		return k.Assumes
	}
	return k.Default
}

// sameValue compares two values of key k, as booleans when k is one.
func sameValue(k *Key, a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if k.Kind == KindBool {
		x, err1 := strconv.ParseBool(a)
		y, err2 := strconv.ParseBool(b)
		if err1 == nil && err2 == nil {
			return x == y
		}
	}
	return a == b
}

// dependentKeys judges the keys whose effect depends on other settings, once
// those are resolved: a partial key warns when the part podpath does not do is
// the part this config asks for.
func (v *resolver) dependentKeys() {
	c := v.c
	if val, ok := v.data["monitor-aggregation-flags"]; ok && !v.bad["monitor-aggregation"] {
		k := lookupKey("monitor-aggregation-flags")
		switch {
		case c.MonitorAggregation < AggregationMedium:
			v.r.notice(k.Name, "not used: monitor-aggregation is %s, and the flags matter only under medium and maximum", c.MonitorAggregation)
		case sameValue(k, val, k.Assumes):
			v.r.notice(k.Name, "recognised Cilium key, not used by podpath: %q is what podpath does: %s", val, k.Instead)
		default:
			v.r.warn(k.Name, "%q is not implemented: %s", val, k.Instead)
		}
	}
	// kvstore (issue 15): etcd is done; anything else, or identities outside it, is not.
	if val, ok := v.data["kvstore"]; ok && c.KVStore != "" && c.KVStore != "etcd" {
		v.r.warn("kvstore", "%q is not implemented: %s", val, lookupKey("kvstore").Gap)
	}
	if val, ok := v.data["identity-allocation-mode"]; ok && !v.bad["identity-allocation-mode"] {
		switch {
		case c.IdentityAllocationMode != "kvstore":
			v.r.warn("identity-allocation-mode", "%q is not implemented: %s", val, lookupKey("identity-allocation-mode").Gap)
		case c.KVStore != "etcd":
			v.r.warn("identity-allocation-mode", "%q is not used: no kvstore is configured (kvstore: etcd), so %s", val, lookupKey("identity-allocation-mode").Gap)
		}
	}
	if val, ok := v.data["cluster-name"]; ok && !v.bad["cluster-name"] && c.ClusterName != "default" && c.KVStore != "etcd" {
		v.r.warn("cluster-name", "%q is not used: no kvstore is configured (kvstore: etcd); it is %s", val, lookupKey("cluster-name").Gap)
	}
	if _, ok := v.data["etcd-config"]; ok && c.KVStore != "etcd" {
		v.r.notice("etcd-config", "not used: kvstore is not etcd")
	}
	for _, name := range []string{"bpf-ct-global-tcp-max", "bpf-ct-global-any-max"} {
		val, ok := v.data[name]
		if !ok || v.bad[name] || v.bad["kube-proxy-replacement"] || c.KubeProxyReplacement == KPRTrue {
			continue
		}
		v.r.warn(name, "%q is not used: kube-proxy-replacement is %s, and %s", val, c.KubeProxyReplacement, lookupKey(name).Gap)
	}
	// Socket-LB translates with the load balancer's maps: without kube-proxy
	// replacement there are none to translate with.
	if c.LBSock && c.KubeProxyReplacement != KPRTrue && !v.bad["kube-proxy-replacement"] {
		v.r.warn("bpf-lb-sock", "true is not used: kube-proxy-replacement is %s, and socket-LB translates only with the BPF load balancer's services", c.KubeProxyReplacement)
	}
	if c.LBSockHostnsOnly && !c.LBSock {
		v.r.notice("bpf-lb-sock-hostns-only", "not used: bpf-lb-sock is false")
	}
}

// ---- per-kind parsers; each returns ok=false when unset or invalid ----

func (v *resolver) boolean(key string, dst *bool) bool {
	s, ok := v.get(key)
	if !ok {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		v.fail(key, "is not a boolean: want true or false (Cilium also accepts True, False, TRUE, FALSE, 1, 0)")
		return false
	}
	*dst = b
	return true
}

// enum returns the value if it is one of the key's accepted values.
func (v *resolver) enum(key string) (string, bool) {
	s, ok := v.get(key)
	if !ok {
		return "", false
	}
	k := lookupKey(key)
	if slices.Contains(k.Values, s) {
		return s, true
	}
	v.failEnum(key, k.Values, "")
	return "", false
}

// failEnum reports a value that is not one of accepted; extra is appended to the
// list, and hints are further values checked for a case-only mismatch.
func (v *resolver) failEnum(key string, accepted []string, extra string, hints ...string) {
	s := strings.TrimSpace(v.data[key])
	msg := "is not one of " + strings.Join(accepted, ", ") + extra
	for _, a := range append(slices.Clone(accepted), hints...) {
		if strings.EqualFold(a, s) {
			msg += " (values are case-sensitive: did you mean " + a + "?)"
			break
		}
	}
	v.fail(key, "%s", msg)
}

// integer parses a decimal int within the key's Min..Max; want describes the
// accepted values.
func (v *resolver) integer(key string, want string) (int, bool) {
	s, ok := v.get(key)
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		v.fail(key, "is not an integer: want %s", want)
		return 0, false
	}
	if k := lookupKey(key); float64(n) < k.Min || float64(n) > k.Max {
		v.fail(key, "is out of range: want %s", want)
		return 0, false
	}
	return n, true
}

// ---- scalar keys ----

func (v *resolver) scalars() {
	c := v.c

	var on bool
	if v.boolean("enable-ipv4", &on) && !on {
		v.fail("enable-ipv4", "is not supported: podpath's datapath is IPv4-only, so enable-ipv4 must be true")
	}
	if v.boolean("enable-ipv6", &on) && on {
		v.fail("enable-ipv6", "is not supported: podpath's datapath is IPv4-only (set enable-ipv6: false)")
	}

	v.boolean("auto-direct-node-routes", &c.AutoDirectNodeRoutes)
	var legacy bool
	if v.boolean("enable-host-legacy-routing", &legacy) && legacy {
		c.HostRouting = HostRoutingLegacy
	}
	v.boolean("debug", &c.Debug)
	v.boolean("enable-bpf-masquerade", &c.EnableBPFMasquerade)
	c.EnableIPv4MasqueradeGiven = v.boolean("enable-ipv4-masquerade", &c.EnableIPv4Masquerade)
	v.boolean("enable-ip-masq-agent", &c.EnableIPMasqAgent)
	v.boolean("enable-ipv4-egress-gateway", &c.EnableIPv4EgressGateway)
	if s, ok := v.get("ip-masq-agent-config-path"); ok {
		c.IPMasqAgentConfigPath = s
	}
	if n, ok := v.integer("bpf-nat-global-max", fmt.Sprintf("%d..%d", ctMin, ctMax)); ok {
		c.NATGlobalMax = n
	}
	if s, ok := v.get("podpath-masquerade-port-range"); ok {
		lo, hi, err := parsePortRange(s)
		if err != nil {
			v.fail("podpath-masquerade-port-range", "is not a port range: want \"min,max\" with 1 <= min <= max <= 65535 (%v)", err)
		} else {
			c.MasqPortMin, c.MasqPortMax = lo, hi
		}
	}
	v.boolean("bpf-lb-sock", &c.LBSock)
	v.boolean("bpf-lb-sock-hostns-only", &c.LBSockHostnsOnly)
	v.boolean("enable-bgp-control-plane", &c.EnableBGPControlPlane)
	if mode, ok := v.enum("enable-policy"); ok {
		c.PolicyEnforcement = mode
	}
	v.boolean("policy-audit-mode", &c.PolicyAuditMode)
	v.boolean("bpf-events-policy-verdict-enabled", &c.PolicyVerdictEvents)

	if n, ok := v.integer("mtu", "0 (auto) or 68..65535"); ok {
		if n != 0 && n < 68 {
			v.fail("mtu", "is out of range: want 0 (auto) or 68..65535")
		} else {
			c.MTU = n
		}
	}
	ct := fmt.Sprintf("%d..%d", ctMin, ctMax)
	if n, ok := v.integer("bpf-ct-global-tcp-max", ct); ok {
		c.CTTCPMax = n
	}
	if n, ok := v.integer("bpf-ct-global-any-max", ct); ok {
		c.CTAnyMax = n
	}
	if s, ok := v.get("bpf-map-dynamic-size-ratio"); ok {
		f, err := strconv.ParseFloat(s, 64)
		switch {
		case err != nil:
			v.fail("bpf-map-dynamic-size-ratio", "is not a number: want 0..1 (0 disables dynamic sizing)")
		case f < lookupKey("bpf-map-dynamic-size-ratio").Min || f > lookupKey("bpf-map-dynamic-size-ratio").Max:
			v.fail("bpf-map-dynamic-size-ratio", "is out of range: want 0..1 (0 disables dynamic sizing)")
		default:
			c.MapDynamicSizeRatio = f
		}
	}
	// kvstore (issue 15).
	if s, ok := v.get("kvstore"); ok {
		c.KVStore = s
	}
	if s, ok := v.get("etcd-config"); ok {
		c.EtcdConfig = s
	}
	if s, ok := v.get("identity-allocation-mode"); ok {
		c.IdentityAllocationMode = s
	}
	if s, ok := v.get("cluster-name"); ok {
		if len(s) > 32 || !clusterNameRE.MatchString(s) {
			v.fail("cluster-name", "is not a valid cluster name: want at most 32 lowercase letters, digits and '-', starting and ending with a letter or digit")
		} else {
			c.ClusterName = s
		}
	}
	v.monitorAggregation()
	v.monitorFlags()
}

var clusterNameRE = regexp.MustCompile(`^([a-z0-9][-a-z0-9]*)?[a-z0-9]$`)

// aggregationWords are Cilium's monitor-aggregation words and numbers, mapped to
// podpath's levels: the names of aggregationNames plus Cilium's synonyms.
var aggregationWords = func() map[string]MonitorAggregation {
	m := map[string]MonitorAggregation{
		"disabled": AggregationNone, "lowest": AggregationLow, "max": AggregationMaximum,
		// Cilium's numbering: none 0, lowest 1, low 2, medium 3, max 4.
		"0": AggregationNone, "1": AggregationLow, "2": AggregationLow, "3": AggregationMedium, "4": AggregationMaximum,
	}
	for lvl, name := range aggregationNames {
		m[name] = MonitorAggregation(lvl)
	}
	return m
}()

func (v *resolver) monitorAggregation() {
	const key = "monitor-aggregation"
	s, ok := v.get(key)
	if !ok {
		return
	}
	lvl, ok := aggregationWords[strings.ToLower(s)]
	if !ok {
		v.fail(key, "is not one of %s (Cilium also accepts disabled, lowest, max and its levels 0-4)", strings.Join(aggregationNames[:], ", "))
		return
	}
	v.c.MonitorAggregation = lvl
	switch l := strings.ToLower(s); {
	case l == "lowest":
		v.r.notice(key, "lowest is the same as low in Cilium: podpath uses low")
	case len(l) == 1 && l[0] >= '0' && l[0] <= '4':
		v.r.notice(key, "%s is Cilium's numbering (0 none, 1 lowest, 2 low, 3 medium, 4 maximum): podpath uses %s (BPF level %d)", s, lvl, uint32(lvl))
	}
}

func (v *resolver) monitorFlags() {
	const key = "monitor-aggregation-flags"
	s, ok := v.get(key)
	if !ok {
		return
	}
	var flags TCPFlags
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' }) {
		switch name := strings.ToLower(item); name {
		case "none":
		case "all":
			flags = 0xff
		default:
			i := slices.IndexFunc(flagNames, func(f flagName) bool { return f.name == name })
			if i < 0 {
				v.fail(key, "has an unknown flag %q: want a list of %s", item, strings.Join(lookupKey(key).Values, ", "))
				return
			}
			flags |= flagNames[i].flag
		}
	}
	v.c.MonitorAggregationFlags = flags
}

// ---- routing ----

func (v *resolver) routing() {
	c := v.c
	mode, modeSet := v.enum("routing-mode")
	tun, tunSet := v.enum("tunnel")
	proto, protoSet := v.enum("tunnel-protocol")
	port, portSet := v.integer("tunnel-port", "1..65535, or 0 for the protocol's port (8472 vxlan, 6081 geneve)")
	cidrSet := v.nativeCIDR()
	if v.bad["routing-mode"] || v.bad["tunnel"] || v.bad["tunnel-protocol"] {
		return // the mode cannot be resolved; the value errors say why
	}

	if tunSet {
		if tun == "disabled" {
			v.r.notice("tunnel", "legacy key (Cilium <= 1.14): tunnel: disabled means routing-mode: native")
		} else {
			v.r.notice("tunnel", "legacy key (Cilium <= 1.14): tunnel: %s means routing-mode: tunnel with tunnel-protocol: %s", tun, tun)
		}
	}
	contradiction := func() { // the mode stays unresolved: combinations skip it
		v.bad["routing-mode"], v.bad["tunnel"], v.bad["tunnel-protocol"] = true, true, true
	}
	switch {
	case modeSet && tunSet && mode == "native" && tun != "disabled":
		v.failRaw("routing-mode", "%q contradicts tunnel: %q (the legacy key for routing-mode: tunnel with tunnel-protocol: %s): drop tunnel to route natively, or set routing-mode: tunnel", mode, tun, tun)
		contradiction()
		return
	case modeSet && tunSet && mode == "tunnel" && tun == "disabled":
		v.failRaw("tunnel", "%q contradicts routing-mode: %q (tunnel: disabled is the legacy spelling of routing-mode: native): drop tunnel, or set routing-mode: native", tun, mode)
		contradiction()
		return
	case protoSet && tunSet && tun != "disabled" && proto != tun:
		v.failRaw("tunnel-protocol", "%q disagrees with tunnel: %q (the legacy key also names the protocol): drop tunnel and keep tunnel-protocol", proto, tun)
		contradiction()
		return
	}

	switch {
	case modeSet:
		c.RoutingMode = RoutingMode(mode)
	case tunSet && tun == "disabled":
		c.RoutingMode = RoutingNative
	default:
		c.RoutingMode = RoutingTunnel
	}
	switch {
	case protoSet:
		c.TunnelProtocol = TunnelProtocol(proto)
	case tunSet && tun != "disabled":
		c.TunnelProtocol = TunnelProtocol(tun)
	}
	c.TunnelPort = c.TunnelProtocol.DefaultPort()
	if portSet && port != 0 {
		if c.TunnelProtocol == TunnelIPIP {
			v.r.warn("tunnel-port", "%d is ignored with tunnel-protocol: ipip: IPIP has no UDP header (IPv4 protocol 4)", port)
		} else {
			c.TunnelPort = uint16(port)
		}
	}
	if c.TunnelProtocol == TunnelIPIP && c.RoutingMode == RoutingTunnel {
		v.r.notice("tunnel-protocol", "ipip is a podpath extension (Calico's IPIP): Cilium accepts only vxlan and geneve")
	}
	if mode, ok := v.enum("tunnel-mode"); ok {
		c.TunnelMode = TunnelMode(mode)
	}

	if c.RoutingMode == RoutingNative {
		if !cidrSet && !v.bad["ipv4-native-routing-cidr"] {
			v.failRaw("ipv4-native-routing-cidr", "required when routing natively (%s): the IPv4 CIDR the network routes without encapsulation, e.g. 10.0.0.0/8", v.nativeBecause())
		}
	} else if c.AutoDirectNodeRoutes {
		v.r.warn("auto-direct-node-routes", "true is ignored in tunnel mode: pods on other nodes are reached through the %s tunnel (Cilium >= 1.14 refuses to start with this: \"auto-direct-node-routes cannot be used with tunneling\")", c.TunnelProtocol)
	}
}

// nativeBecause names the setting that selected native routing.
func (v *resolver) nativeBecause() string {
	if _, ok := v.data["routing-mode"]; ok {
		return "routing-mode: native"
	}
	return "tunnel: disabled"
}

func (v *resolver) nativeCIDR() bool {
	const key = "ipv4-native-routing-cidr"
	s, ok := v.get(key)
	if !ok {
		return false
	}
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil:
		v.fail(key, "is not an IPv4 CIDR: want a.b.c.d/n, e.g. 10.0.0.0/8")
		return false
	case !p.Addr().Is4():
		v.fail(key, "is not an IPv4 CIDR (podpath is IPv4-only): want a.b.c.d/n, e.g. 10.0.0.0/8")
		return false
	}
	if m := p.Masked(); m != p {
		v.r.notice(key, "%s has host bits set: using %s", s, m)
		p = m
	}
	v.c.NativeRoutingCIDR = p
	return true
}

// unusedTunnelSettings notes tunnel keys that native routing does not use (the
// Helm chart writes tunnel-protocol whatever the mode).
func (v *resolver) unusedTunnelSettings() {
	c := v.c
	if c.RoutingMode != RoutingNative || len(v.errs) > 0 {
		return
	}
	for _, key := range []string{"tunnel-protocol", "tunnel-port", "tunnel-mode"} {
		if _, ok := v.data[key]; ok {
			v.r.notice(key, "not used in native routing mode: ignored")
		}
	}
}

// ---- load balancing ----

func (v *resolver) loadBalancing() {
	c := v.c
	v.kubeProxyReplacement()
	if s, ok := v.enum("bpf-lb-mode"); ok {
		c.LBMode = LBMode(s)
	}
	if s, ok := v.enum("bpf-lb-algorithm"); ok {
		c.LBAlgorithm = LBAlgorithm(s)
	}
	if s, ok := v.enum("bpf-lb-acceleration"); ok {
		c.LBAcceleration = LBAcceleration(s)
		if c.LBAcceleration != LBAccelerationDisabled && c.KubeProxyReplacement == KPRFalse && !v.bad["kube-proxy-replacement"] {
			v.failRaw("bpf-lb-acceleration", "%q needs kube-proxy replacement (XDP serves the BPF NodePort frontends), but kube-proxy-replacement is not true: set kube-proxy-replacement: true or bpf-lb-acceleration: disabled", s)
		}
	}
	// Service semantics (issue 12).
	if s, ok := v.enum("service-no-backend-response"); ok {
		c.ServiceNoBackendReject = s == "reject"
	}
	v.boolean("enable-svc-source-range-check", &c.SvcSourceRangeCheck)
	v.boolean("enable-ipv4-fragment-tracking", &c.IPv4FragmentTracking)
	v.boolean("bpf-lb-external-clusterip", &c.LBExternalClusterIP)
	v.boolean("enable-service-topology", &c.ServiceTopology)
	sizeSet := v.maglevTableSize()
	seedSet := v.maglevSeed()
	dispatchSet := v.dsrDispatch()

	if c.LBAlgorithm == LBRandom && !v.bad["bpf-lb-algorithm"] {
		for _, k := range []struct {
			name string
			set  bool
		}{{"bpf-lb-maglev-table-size", sizeSet}, {"bpf-lb-maglev-hash-seed", seedSet}} {
			if k.set && !v.bad[k.name] {
				v.r.warn(k.name, "ignored: bpf-lb-algorithm is random (Maglev settings apply only to bpf-lb-algorithm: maglev)")
			}
		}
	}

	if v.bad["bpf-lb-mode"] || v.bad["bpf-lb-dsr-dispatch"] {
		return
	}
	if !c.LBMode.UsesDSR() {
		if dispatchSet {
			v.r.warn("bpf-lb-dsr-dispatch", "ignored: bpf-lb-mode is %s (the dispatch method applies only to dsr and hybrid)", c.LBMode)
		}
		return
	}
	if c.KubeProxyReplacement == KPRFalse && !v.bad["kube-proxy-replacement"] {
		given := c.KubeProxyReplacementGiven
		if given == "" {
			given = "unset, default false"
		}
		v.failRaw("bpf-lb-mode", "%q needs kube-proxy replacement (DSR is part of BPF NodePort handling), but kube-proxy-replacement is %s: set kube-proxy-replacement: true or bpf-lb-mode: snat", c.LBMode, given)
	}
	if v.bad["routing-mode"] || v.bad["tunnel"] || v.bad["tunnel-protocol"] {
		return
	}
	dispatch := strconv.Quote(string(c.DSRDispatch))
	if !dispatchSet {
		dispatch = string(c.DSRDispatch) + " (the default)"
	}
	switch {
	case c.RoutingMode == RoutingTunnel && c.DSRDispatch == DSRDispatchOption:
		v.failRaw("bpf-lb-dsr-dispatch", "%s cannot be used in tunnel mode with bpf-lb-mode: %s: the IPv4 option would travel inside the tunnel; set bpf-lb-dsr-dispatch: geneve with tunnel-protocol: geneve, or routing-mode: native", dispatch, c.LBMode)
	case c.RoutingMode == RoutingNative && c.DSRDispatch == DSRDispatchGeneve:
		v.failRaw("bpf-lb-dsr-dispatch", "%s cannot be used with routing-mode: native: podpath decapsulates Geneve in tunnel mode only; set bpf-lb-dsr-dispatch: opt, or routing-mode: tunnel with tunnel-protocol: geneve", dispatch)
	case c.DSRDispatch == DSRDispatchGeneve && c.TunnelProtocol != TunnelGeneve:
		v.failRaw("bpf-lb-dsr-dispatch", "%s needs a Geneve tunnel (tunnel-protocol: geneve) to carry the DSR option, but the tunnel is %s", dispatch, c.TunnelProtocol)
	}
}

// tunnelMTU refuses an mtu key that leaves pods less than IPv4's minimum MTU once
// the tunnel overhead is taken off (the agent gives pods device MTU - TunnelOverhead).
func (v *resolver) tunnelMTU() {
	c := v.c
	if c.RoutingMode != RoutingTunnel || c.MTU == 0 || v.bad["mtu"] || v.bad["routing-mode"] || v.bad["tunnel"] || v.bad["tunnel-protocol"] {
		return
	}
	overhead := c.TunnelProtocol.Overhead()
	if route := c.MTU - overhead; route < MinRouteMTU {
		v.fail("mtu", "is too small for tunnel mode: pods would get %d - %d bytes of %s overhead = %d, below IPv4's minimum MTU %d: want 0 (auto) or %d..65535",
			c.MTU, overhead, c.TunnelProtocol, route, MinRouteMTU, MinRouteMTU+overhead)
	}
}

func (v *resolver) kubeProxyReplacement() {
	const key = "kube-proxy-replacement"
	s, ok := v.get(key)
	if !ok {
		return
	}
	c := v.c
	c.KubeProxyReplacementGiven = s
	if b, err := strconv.ParseBool(s); err == nil {
		c.KubeProxyReplacement = KPRFalse
		if b {
			c.KubeProxyReplacement = KPRTrue
		}
		return
	}
	switch s {
	case "strict":
		c.KubeProxyReplacement = KPRTrue
		v.r.notice(key, "strict is a Cilium <= 1.13 value: it means true (Cilium >= 1.14 spelling)")
	case "disabled":
		c.KubeProxyReplacement = KPRFalse
		v.r.notice(key, "disabled is a Cilium <= 1.13 value: it means false (Cilium >= 1.14 spelling)")
	case "probe":
		c.KubeProxyReplacement = KPRTrue
		v.r.notice(key, "probe is a Cilium <= 1.13 value: it enabled every kube-proxy replacement feature the kernel supports; the kernels podpath runs on support all it implements, so podpath treats it as true")
	case "partial":
		var nodePort bool
		if np, ok := v.data["enable-node-port"]; ok {
			nodePort, _ = strconv.ParseBool(strings.TrimSpace(np))
		}
		if nodePort {
			c.KubeProxyReplacement = KPRTrue
		} else {
			c.KubeProxyReplacement = KPRFalse
		}
		v.r.warn(key, "partial is a Cilium <= 1.13 value that enabled only the features switched on one by one (enable-node-port, enable-host-port, enable-external-ips, ...); podpath does not implement those switches and follows enable-node-port: kube-proxy replacement is %s", c.KubeProxyReplacement)
	default:
		v.failEnum(key, []string{"true", "false"}, " (Cilium <= 1.13 also: strict, probe, partial, disabled)", "strict", "probe", "partial", "disabled")
	}
}

func (v *resolver) maglevTableSize() bool {
	const key = "bpf-lb-maglev-table-size"
	s, ok := v.get(key)
	if !ok {
		return false
	}
	if !slices.Contains(maglevTableSizes, s) {
		v.fail(key, "is not one of %s (the primes Cilium accepts; pick one > 100 x backends)", strings.Join(maglevTableSizes, ", "))
		return true
	}
	v.c.MaglevTableSize, _ = strconv.Atoi(s)
	return true
}

func (v *resolver) maglevSeed() bool {
	const key = "bpf-lb-maglev-hash-seed"
	s, ok := v.get(key)
	if !ok {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	switch {
	case err != nil:
		v.fail(key, "is not base64: want base64 of exactly 12 bytes (16 characters, e.g. from head -c12 /dev/urandom | base64)")
	case len(b) != 12:
		v.fail(key, "decodes to %d bytes: want base64 of exactly 12 bytes (16 characters, e.g. from head -c12 /dev/urandom | base64)", len(b))
	default:
		copy(v.c.MaglevHashSeed[:], b)
		v.c.MaglevHashSeedSet = true
	}
	return true
}

func (v *resolver) dsrDispatch() bool {
	const key = "bpf-lb-dsr-dispatch"
	s, ok := v.get(key)
	if !ok {
		return false
	}
	switch s {
	case "opt", "geneve":
		v.c.DSRDispatch = DSRDispatch(s)
	case "ipip":
		v.fail(key, "is a Cilium value podpath does not support (IPIP dispatch is for Cilium's standalone L4 load balancer): want opt or geneve")
	default:
		v.failEnum(key, lookupKey(key).Values, "")
	}
	return true
}

// ---- masquerading and host routing ----

func (v *resolver) masquerading() {
	c := v.c
	if c.EnableIPMasqAgent && c.Masquerading() != MasqueradeBPF && !v.bad["enable-ip-masq-agent"] {
		v.r.warn("enable-ip-masq-agent", "true has no effect: the ip-masq-agent CIDRs apply to BPF masquerading only (enable-ipv4-masquerade and enable-bpf-masquerade true), and masquerading here is %q", cmp.Or(c.Masquerading(), "off"))
	}
	// The gateway SNATs in BPF masquerading's to-netdev, as Cilium requires
	// enable-bpf-masquerade for the egress gateway.
	if c.EnableIPv4EgressGateway && c.Masquerading() != MasqueradeBPF && !v.bad["enable-ipv4-egress-gateway"] {
		v.fail("enable-ipv4-egress-gateway", "true needs BPF masquerading: want enable-ipv4-masquerade: true and enable-bpf-masquerade: true (masquerading here is %q)", cmp.Or(c.Masquerading(), "off"))
	}
	_, bpfSet := v.data["enable-bpf-masquerade"]
	if bpfSet && c.EnableBPFMasquerade && !c.EnableIPv4Masquerade && !v.bad["enable-ipv4-masquerade"] {
		v.r.warn("enable-bpf-masquerade", "true has no effect: enable-ipv4-masquerade is false, so nothing is masqueraded")
	}
	if c.HostRouting == HostRoutingBPF && c.EnableIPv4Masquerade && !c.EnableBPFMasquerade && !c.EnableIPv4MasqueradeGiven &&
		!v.bad["enable-host-legacy-routing"] && !v.bad["enable-bpf-masquerade"] && !v.bad["enable-ipv4-masquerade"] {
		v.r.warn("enable-host-legacy-routing", "Cilium would fall back to legacy host routing here (\"BPF host routing requires enable-bpf-masquerade\": enable-ipv4-masquerade is on, Cilium's default, and done by iptables); podpath keeps BPF host routing and masquerades nothing: set enable-ipv4-masquerade: false (what podpath does), or enable-host-legacy-routing: true, to match Cilium")
	}
}

// parsePortRange parses "min,max" (or "min-max"), 1 <= min <= max <= 65535.
func parsePortRange(s string) (uint16, uint16, error) {
	sep := ","
	if !strings.Contains(s, sep) {
		sep = "-"
	}
	a, b, ok := strings.Cut(s, sep)
	if !ok {
		return 0, 0, fmt.Errorf("no %q between min and max", ",")
	}
	lo, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 16)
	hi, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 16)
	if err1 != nil || err2 != nil {
		return 0, 0, fmt.Errorf("not two decimal ports")
	}
	if lo == 0 || hi < lo {
		return 0, 0, fmt.Errorf("want 1 <= min <= max")
	}
	return uint16(lo), uint16(hi), nil
}

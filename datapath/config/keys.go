// SPDX-License-Identifier: Apache-2.0

package config

import "slices"

// Kind is the type of a cilium-config value.
type Kind string

// Kinds of values.
const (
	KindBool     Kind = "bool"     // strconv.ParseBool: true/false, True/False, TRUE/FALSE, 1/0, t/f
	KindEnum     Kind = "enum"     // one of Key.Values
	KindInt      Kind = "int"      // decimal, within Key.Min..Key.Max (or one of Key.Values)
	KindFloat    Kind = "float"    // decimal fraction
	KindCIDR     Kind = "cidr"     // a.b.c.d/n
	KindDuration Kind = "duration" // Go duration: 5s, 1m30s
	KindString   Kind = "string"
	KindList     Kind = "list"   // items separated by commas or spaces
	KindBase64   Kind = "base64" // standard base64
	KindYAML     Kind = "yaml"   // an embedded YAML document
	KindJSON     Kind = "json"   // an embedded JSON object
)

// Status says what podpath does with a key.
type Status string

// Key statuses.
const (
	// StatusImplemented: changing the value changes what podpath does; Key.Proof
	// names the tests or catalog checks that show it.
	StatusImplemented Status = "implemented"
	// StatusPartial: implemented in part; Key.Gap says what is not done, and
	// Key.Proof names the tests of the part that is.
	StatusPartial Status = "partial"
	// StatusFixed: podpath runs with one value (or the one the other settings
	// imply); validation refuses any other. Key.Proof names the tests.
	StatusFixed Status = "fixed"
	// StatusDiffers: not read; podpath behaves as Key.Assumes, which is not
	// Cilium's default. A given value other than Assumes is a warning.
	StatusDiffers Status = "differs"
	// StatusIgnored: accepted, no effect; podpath behaves as Key.Assumes (Cilium's
	// default unless given). A given value other than that is a warning, unless
	// Key.Inert says why the key cannot matter to podpath.
	StatusIgnored Status = "ignored"
	// StatusUnknown: not audited. Any value given is a warning.
	StatusUnknown Status = "unknown"
)

// Key describes one cilium-config key.
type Key struct {
	Name string
	Kind Kind
	// Values are the accepted values of an enum, list items, or allowed ints.
	Values []string
	// Min and Max bound an int (when Values is empty) or a float.
	Min, Max float64
	// Default is Cilium agent's default when the key is absent, unless Meaning says
	// otherwise ("" = empty or unset).
	Default string
	// Status says what podpath does with the key.
	Status Status
	// Field names the Config field the key resolves into (implemented, partial):
	// code outside package config reads it.
	Field string
	// Proof names what shows an implemented, partial or fixed key at work: Go
	// tests as "<package dir>.<TestName>" (e.g. datapath/agent.TestPlanMTU), and
	// "catalog" for the witness checks of scenarios/steps' configWitnesses.
	Proof []string
	// Gap, for a partial key, is what podpath does not do.
	Gap string
	// ReplacedBy names the key(s) that superseded a legacy key.
	ReplacedBy string
	// Assumes, for a key podpath does not read, is the value podpath behaves as
	// ("" = Default); another value is reported as a warning.
	Assumes string
	// Instead, for a key podpath does not read, says what podpath does instead of
	// what another value asks for; the warning says it.
	Instead string
	// NoValue, for a key podpath does not read, says no value of it is what podpath
	// does: any value given is a warning.
	NoValue bool
	// Inert, for an ignored key, says why no value of it changes what podpath does
	// (it configures a component podpath does not have and does not need): such a
	// key is a notice, never a warning.
	Inert string
	// Meaning is one line on what the key does.
	Meaning string
}

// Read reports whether podpath reads the key's value (implemented, partial, fixed).
func (k *Key) Read() bool {
	return k.Status == StatusImplemented || k.Status == StatusPartial || k.Status == StatusFixed
}

// Maglev table sizes Cilium accepts (primes; M should exceed 100 × backends).
var maglevTableSizes = []string{"251", "509", "1021", "2039", "4093", "8191", "16381", "32749", "65521", "131071"}

// Bounds of the CT table sizes (Cilium's LimitTableMin and LimitTableMax).
const (
	ctMin = 1 << 10
	ctMax = 1 << 24
)

// MaglevSeedDefault is Cilium's default bpf-lb-maglev-hash-seed (12 bytes).
const MaglevSeedDefault = "JLfvgnHc2kaSUFaI"

// keyTable is the one place that lists every key podpath knows.
var keyTable = []Key{
	// ---- read by podpath ----
	{Name: "routing-mode", Kind: KindEnum, Values: []string{"native", "tunnel"}, Default: "tunnel",
		Status: StatusImplemented, Field: "RoutingMode", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "reach pods on other nodes through a tunnel (VXLAN/Geneve) or natively through the underlay's routes (Cilium >= 1.14)"},
	{Name: "tunnel", Kind: KindEnum, Values: []string{"vxlan", "geneve", "disabled"}, Default: "vxlan",
		Status: StatusImplemented, Field: "TunnelProtocol", Proof: []string{"datapath/bpfconfig.TestBuild"},
		ReplacedBy: "routing-mode and tunnel-protocol",
		Meaning:    "legacy (Cilium <= 1.14) encapsulation switch: vxlan/geneve mean tunnel mode, disabled means native routing"},
	{Name: "tunnel-protocol", Kind: KindEnum, Values: []string{"vxlan", "geneve", "ipip"}, Default: "vxlan",
		Status: StatusImplemented, Field: "TunnelProtocol", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "encapsulation of tunnel mode; not used in native mode; ipip is a podpath extension (Calico's IPIP, IPv4 protocol 4, 20 bytes of overhead): Cilium accepts only vxlan and geneve"},
	{Name: "tunnel-port", Kind: KindInt, Min: 0, Max: 65535, Default: "0",
		Status: StatusImplemented, Field: "TunnelPort", Proof: []string{"datapath/bpfconfig.TestBuild"},
		Meaning: "UDP port of the tunnel; 0 means the protocol's port (8472 VXLAN, 6081 Geneve)"},
	{Name: "ipv4-native-routing-cidr", Kind: KindCIDR,
		Status: StatusImplemented, Field: "NativeRoutingCIDR", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "IPv4 CIDR the network routes without encapsulation or masquerading; required in native routing mode"},
	{Name: "auto-direct-node-routes", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "AutoDirectNodeRoutes", Proof: []string{"catalog"},
		Meaning: "install a route to every other node's PodCIDR via that node (native routing on a shared L2)"},
	// ---- BGP control plane (issue 14) ----
	{Name: "enable-bgp-control-plane", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "EnableBGPControlPlane", Proof: []string{"catalog"},
		Meaning: "run a BGP speaker (GoBGP) in the agent: peers and announcements from the peering policy (PUT /v1/bgp/policy), learned routes into the node's table"},
	{Name: "enable-host-legacy-routing", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "HostRouting", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "route through the host stack (iptables, routing table) instead of BPF host routing (bpf_redirect_peer/neigh)"},
	{Name: "enable-ipv4", Kind: KindBool, Default: "true",
		Status: StatusFixed, Proof: []string{"datapath/config.TestValidators"},
		Meaning: "IPv4 pod addressing; podpath is IPv4-only, so it must be true"},
	{Name: "enable-ipv6", Kind: KindBool, Default: "false",
		Status: StatusFixed, Proof: []string{"datapath/config.TestValidators"},
		Meaning: "IPv6 pod addressing; not supported by podpath (Cilium's agent defaults to true, its Helm chart writes false)"},
	{Name: "monitor-aggregation", Kind: KindEnum, Values: aggregationNames[:], Default: "none",
		Status: StatusImplemented, Field: "MonitorAggregation", Proof: []string{"datapath/bpfconfig.TestBuild"},
		Meaning: "how much the datapath traces: none (every packet), low, medium (flow changes), maximum (drops only); Cilium also accepts disabled, lowest, max and 0-4 (Helm writes medium)"},
	{Name: "monitor-aggregation-flags", Kind: KindList, Values: []string{"none", "all", "fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"}, Default: "syn,fin,rst",
		Status: StatusDiffers, Assumes: "none",
		Instead: "under medium and maximum aggregation podpath traces by verdict only (drops, redirects, exceptions), never because of TCP flags",
		Meaning: "TCP flags that still trigger a trace under medium/maximum aggregation (Helm writes all)"},
	{Name: "mtu", Kind: KindInt, Min: 0, Max: 65535, Default: "0",
		Status: StatusImplemented, Field: "MTU", Proof: []string{"datapath/agent.TestPlanMTU"},
		Meaning: "device MTU of pods and Cilium devices; 0 derives it from the underlay (minus tunnel overhead)"},
	{Name: "kube-proxy-replacement", Kind: KindEnum, Values: []string{"true", "false", "strict", "probe", "partial", "disabled"}, Default: "false",
		Status: StatusImplemented, Field: "KubeProxyReplacement", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "BPF service load balancing instead of kube-proxy; strict/probe/partial/disabled are Cilium <= 1.13 values"},
	{Name: "bpf-lb-mode", Kind: KindEnum, Values: []string{"snat", "dsr", "hybrid"}, Default: "snat",
		Status: StatusImplemented, Field: "LBMode", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "NodePort forwarding to remote backends: SNAT, direct server return, or DSR for TCP and SNAT for UDP"},
	{Name: "bpf-lb-algorithm", Kind: KindEnum, Values: []string{"random", "maglev"}, Default: "random",
		Status: StatusImplemented, Field: "LBAlgorithm", Proof: []string{"catalog"},
		Meaning: "backend selection: random or Maglev consistent hashing"},
	{Name: "bpf-lb-maglev-table-size", Kind: KindInt, Values: maglevTableSizes, Default: "16381",
		Status: StatusImplemented, Field: "MaglevTableSize", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "Maglev lookup table size M per service: a prime > 100 x backends"},
	{Name: "bpf-lb-maglev-hash-seed", Kind: KindBase64, Default: MaglevSeedDefault,
		Status: StatusImplemented, Field: "MaglevHashSeed", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild"},
		Meaning: "Maglev hash seed: base64 of exactly 12 bytes, identical on every node"},
	{Name: "bpf-lb-dsr-dispatch", Kind: KindEnum, Values: []string{"opt", "geneve"}, Default: "opt",
		Status: StatusFixed, Proof: []string{"catalog", "datapath/config.TestCombinations"},
		Meaning: "how DSR carries the service address: an IPv4 option (opt) or a Geneve option; podpath's dispatch follows the routing mode (opt natively, geneve in a Geneve tunnel) and validation refuses the other; Cilium's ipip is not supported"},
	{Name: "bpf-ct-global-tcp-max", Kind: KindInt, Min: ctMin, Max: ctMax, Default: "524288",
		Status: StatusPartial, Field: "CTTCPMax", Proof: []string{"datapath/agent.TestDatapathConfigCTSizes", "datapath/loader.TestLoadDatapathLBMapSizes"},
		Gap:     "podpath tracks connections only for service load balancing: without kube-proxy-replacement its conntrack maps hold one entry and this size is not used",
		Meaning: "entries of the global TCP conntrack map"},
	{Name: "bpf-ct-global-any-max", Kind: KindInt, Min: ctMin, Max: ctMax, Default: "262144",
		Status: StatusPartial, Field: "CTAnyMax", Proof: []string{"datapath/agent.TestDatapathConfigCTSizes", "datapath/loader.TestLoadDatapathLBMapSizes"},
		Gap:     "podpath tracks connections only for service load balancing: without kube-proxy-replacement its conntrack maps hold one entry and this size is not used",
		Meaning: "entries of the global non-TCP conntrack map"},
	{Name: "bpf-map-dynamic-size-ratio", Kind: KindFloat, Min: 0, Max: 1, Default: "0",
		Status:  StatusIgnored,
		Instead: "podpath sizes its maps from bpf-ct-global-tcp-max, bpf-ct-global-any-max and fixed defaults, never from a fraction of memory",
		Meaning: "fraction of memory used to size CT/NAT maps when their sizes are not given; 0 disables (Helm writes 0.0025)"},
	{Name: "cluster-name", Kind: KindString, Default: "default",
		Status: StatusPartial, Field: "ClusterName", Proof: []string{"datapath/agent.TestClusterNameAndID"},
		Gap:     "used with kvstore: etcd only (the cluster's keys under cilium/state/nodes/v1/<cluster>/ and services/v1/<cluster>/, and the cluster mesh); identities carry no cluster-name label",
		Meaning: "cluster name: at most 32 lowercase alphanumerics and '-', starting and ending alphanumeric"},
	{Name: "debug", Kind: KindBool, Default: "false",
		Status:  StatusIgnored,
		Instead: "the agent logs at info level and the datapath emits no debug events",
		Meaning: "debug logging and debug trace events"},
	// ---- masquerading (issue 11) ----
	{Name: "enable-bpf-masquerade", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "EnableBPFMasquerade", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/agent.TestMasqueradeLegacyRules", "datapath/progtest.TestHostMasqFixtures"},
		Meaning: "masquerade in BPF (to-netdev) instead of iptables"},
	{Name: "enable-ipv4-masquerade", Kind: KindBool, Default: "true",
		Status: StatusPartial, Field: "EnableIPv4Masquerade", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/progtest.TestHostMasqFixtures"},
		Gap:     "absent, podpath masquerades nothing, where Cilium's default (true) masquerades with iptables: set it explicitly",
		Meaning: "SNAT pod traffic leaving the cluster to the node's address"},
	{Name: "enable-ip-masq-agent", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "EnableIPMasqAgent", Proof: []string{"catalog", "datapath/agent.TestIPMasqAgentCIDRs", "datapath/progtest.TestHostMasqExceptions"},
		Meaning: "ip-masq-agent style non-masquerade CIDRs in BPF (BPF masquerading only)"},
	{Name: "ip-masq-agent-config-path", Kind: KindString, Default: DefaultIPMasqAgentConfigPath,
		Status: StatusImplemented, Field: "IPMasqAgentConfigPath", Proof: []string{"datapath/agent.TestIPMasqAgentCIDRs"},
		Meaning: "the ip-masq-agent config file (YAML or JSON: nonMasqueradeCIDRs, masqLinkLocal); podpath also takes a relative path, relative to the cilium-config file's folder"},
	{Name: "bpf-nat-global-max", Kind: KindInt, Min: ctMin, Max: ctMax, Default: "524288",
		Status: StatusImplemented, Field: "NATGlobalMax", Proof: []string{"datapath/agent.TestDatapathConfigCTSizes"},
		Meaning: "entries of the global NAT map (podpath's snat map: NodePort SNAT and BPF masquerading)"},
	{Name: "podpath-masquerade-port-range", Kind: KindString, Default: "32768,60999",
		Status: StatusImplemented, Field: "MasqPortMin", Proof: []string{"catalog", "datapath/progtest.TestHostMasqPortExhaustion", "datapath/bpfconfig.TestBuild"},
		Meaning: "podpath's own key, not Cilium's: the source ports (and ICMP echo identifiers) BPF masquerading hands out, \"min,max\" inclusive (Cilium's are fixed: 32768-65535, NODEPORT_PORT_MIN_NAT..MAX_NAT)"},

	// ---- socket-LB (bpf_sock.c) ----
	{Name: "bpf-lb-sock", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "LBSock", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/loader.TestSockConnect"},
		Meaning: "socket-level (connect-time) service translation: cgroup connect4/sendmsg4/recvmsg4/getpeername4 on the node's cgroup v2 (agent --cgroup); needs kube-proxy-replacement"},
	{Name: "bpf-lb-sock-hostns-only", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "LBSockHostnsOnly", Proof: []string{"catalog", "datapath/loader.TestSockConnect"},
		Meaning: "socket-level translation only for sockets of the node's own namespace (netns cookie); pods keep the per-packet translation"},

	// ---- service semantics (issue 12) ----
	{Name: "service-no-backend-response", Kind: KindEnum, Values: []string{"reject", "drop"}, Default: "reject",
		Status: StatusImplemented, Field: "ServiceNoBackendReject", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/progtest.TestLBNoBackend"},
		Meaning: "a new flow to a service without backends: reject answers TCP with RST and UDP with ICMP port unreachable, drop drops it (DROP_NO_SERVICE_BACKEND)"},
	{Name: "enable-svc-source-range-check", Kind: KindBool, Default: "true",
		Status: StatusImplemented, Field: "SvcSourceRangeCheck", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/progtest.TestLBSourceRanges"},
		Meaning: "enforce loadBalancerSourceRanges on NodePort and LoadBalancer/external frontends reached from outside (DROP_SVC_SOURCE_RANGE)"},
	{Name: "enable-ipv4-fragment-tracking", Kind: KindBool, Default: "true",
		Status: StatusImplemented, Field: "IPv4FragmentTracking", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/progtest.TestLBFragments"},
		Meaning: "track IPv4 fragments for L4 load balancing: a TCP/UDP first fragment's ports are kept (lb_frag map, keyed by addresses, IP ID and protocol) so later fragments, which carry no L4 header, get the same translation; a later fragment seen before its first is dropped (DROP_FRAG_NOT_FOUND), as Cilium does. false: later fragments pass untranslated"},

	// ---- podpath's own keys: Calico's encapsulation modes (issue 14) ----
	{Name: "tunnel-mode", Kind: KindEnum, Values: []string{"always", "cross-subnet"}, Default: "always",
		Status: StatusImplemented, Field: "TunnelMode", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/progtest.TestCrossSubnet"},
		Meaning: "podpath key, not Cilium's (Calico's ipipMode/vxlanMode): always encapsulates traffic to every other node; cross-subnet reaches a node on this node's own underlay subnet natively and only the others through the tunnel; not used in native mode"},

	// ---- recognised Cilium keys podpath does not implement ----
	{Name: "agent-health-port", Kind: KindInt, Default: "9879", NoValue: true, Instead: "the podpath agent serves no health endpoint (its liveness is its API socket: GET /v1/status)", Meaning: "TCP port of the agent's health API"},
	{Name: "agent-not-ready-taint-key", Kind: KindString, Default: "node.cilium.io/agent-not-ready", Meaning: "taint removed from a node once its agent is ready"},
	{Name: "api-rate-limit", Kind: KindString, Meaning: "rate limits of the agent API"},
	{Name: "arping-refresh-period", Kind: KindDuration, Default: "30s", Meaning: "refresh period of neighbour entries of other nodes"},
	{Name: "auto-create-cilium-node-resource", Kind: KindBool, Default: "true", Meaning: "create the CiliumNode resource of the node"},
	{Name: "bpf-events-drop-enabled", Kind: KindBool, Default: "true", Meaning: "emit drop events"},
	{Name: "bpf-events-policy-verdict-enabled", Kind: KindBool, Default: "true", Status: StatusImplemented, Field: "PolicyVerdictEvents", Proof: []string{"datapath/bpfconfig.TestBuildPolicy", "datapath/progtest.TestPolicyVerdictEvents"}, Meaning: "emit policy verdict events"},
	{Name: "bpf-events-trace-enabled", Kind: KindBool, Default: "true", Meaning: "emit trace events"},
	{Name: "bpf-lb-acceleration", Kind: KindEnum, Values: []string{"disabled", "native", "best-effort"}, Default: "disabled",
		Status: StatusImplemented, Field: "LBAcceleration", Proof: []string{"catalog", "datapath/config.TestValidators"},
		Meaning: "XDP acceleration of the service load balancer: NodePort and LoadBalancer frontends served at XDP on the devices (native: or the agent fails; best-effort: where the driver can)"},
	{Name: "bpf-lb-external-clusterip", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "LBExternalClusterIP", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/progtest.TestLBExternalClusterIP"},
		Meaning: "make ClusterIPs reachable from outside the cluster"},
	{Name: "bpf-lb-map-max", Kind: KindInt, Default: "65536", Meaning: "entries of the service load-balancing maps"},
	{Name: "bpf-neigh-global-max", Kind: KindInt, Default: "524288", Meaning: "entries of the global neighbour map"},
	{Name: "bpf-policy-map-max", Kind: KindInt, Default: "16384", Meaning: "entries of each endpoint's policy map"},
	{Name: "bpf-root", Kind: KindString, Meaning: "mount point of the BPF filesystem"},
	{Name: "cgroup-root", Kind: KindString, Default: "/run/cilium/cgroupv2", Inert: "the agent attaches socket-LB (bpf-lb-sock) to the cgroup v2 directory given with --cgroup (one per node, made by the harness), not to a path under this root", Meaning: "mount point of the cgroup v2 hierarchy for socket programs"},
	{Name: "clean-cilium-bpf-state", Kind: KindBool, Default: "false", Instead: "the agent keeps the pinned maps and links of a previous agent and adopts them", Meaning: "remove pinned BPF state on agent start"},
	{Name: "clean-cilium-state", Kind: KindBool, Default: "false", Instead: "the agent keeps its state directory and the pinned maps and links of a previous agent", Meaning: "remove all Cilium state on agent start"},
	{Name: "cluster-id", Kind: KindInt, Default: "0", Meaning: "unique cluster ID for Cluster Mesh (1-255, or 511)"},
	{Name: "cluster-pool-ipv4-cidr", Kind: KindList, Meaning: "cluster-pool IPAM: pool of pod CIDRs"},
	{Name: "cluster-pool-ipv4-mask-size", Kind: KindInt, Default: "24", Meaning: "cluster-pool IPAM: prefix length of each node's PodCIDR"},
	{Name: "cluster-pool-ipv6-cidr", Kind: KindList, Meaning: "cluster-pool IPAM: pool of IPv6 pod CIDRs"},
	{Name: "cluster-pool-ipv6-mask-size", Kind: KindInt, Meaning: "cluster-pool IPAM: prefix length of each node's IPv6 PodCIDR"},
	{Name: "cni-chaining-mode", Kind: KindString, Default: "none", Meaning: "chain Cilium behind another CNI plugin"},
	{Name: "cni-chaining-target", Kind: KindString, Meaning: "CNI network to chain into"},
	{Name: "cni-exclusive", Kind: KindBool, Default: "true", Meaning: "remove other CNI configurations"},
	{Name: "cni-log-file", Kind: KindString, Meaning: "log file of the CNI plugin"},
	{Name: "custom-cni-conf", Kind: KindBool, Default: "false", Meaning: "the CNI configuration is provided by the user, not written by Cilium"},
	{Name: "datapath-mode", Kind: KindEnum, Values: []string{"veth", "netkit", "netkit-l2"}, Default: "veth", Assumes: "veth", Meaning: "pod device type"},
	{Name: "devices", Kind: KindList, Instead: "the agent attaches to the devices it is given with --devices, not to this list", Meaning: "native devices BPF programs attach to (detected when empty)"},
	{Name: "direct-routing-device", Kind: KindString, Instead: "the node's device is the one holding the node IP given to the agent (--node-ip)", Meaning: "device used for direct routing and NodePort"},
	{Name: "direct-routing-skip-unreachable", Kind: KindBool, Default: "false", Meaning: "skip direct routes to nodes not on the local L2 (with BGP)"},
	{Name: "disable-cnp-status-updates", Kind: KindBool, Inert: "podpath has no CiliumNetworkPolicy and writes no status", Meaning: "do not write CiliumNetworkPolicy status; removed in newer Cilium"},
	{Name: "disable-endpoint-crd", Kind: KindBool, Default: "false", Meaning: "do not create CiliumEndpoint resources"},
	{Name: "egress-masquerade-interfaces", Kind: KindString, Meaning: "interfaces on which iptables masquerading applies"},
	{Name: "enable-auto-protect-node-port-range", Kind: KindBool, Default: "true", Status: StatusDiffers, Assumes: "false", Instead: "podpath does not reserve the NodePort range from ephemeral ports", Meaning: "reserve the NodePort range from ephemeral ports"},
	{Name: "enable-bandwidth-manager", Kind: KindBool, Default: "false", Assumes: "false", Meaning: "EDT-based pod egress rate limiting"},
	{Name: "enable-bbr", Kind: KindBool, Default: "false", Meaning: "BBR congestion control for pods"},
	{Name: "enable-bpf-clock-probe", Kind: KindBool, Default: "false", Instead: "the datapath takes its timestamps from bpf_ktime_get_ns, never from jiffies", Meaning: "use jiffies for BPF timestamps when available"},
	{Name: "enable-bpf-tproxy", Kind: KindBool, Default: "false", Meaning: "transparent proxy redirection in BPF"},
	{Name: "enable-cilium-endpoint-slice", Kind: KindBool, Default: "false", Meaning: "batch CiliumEndpoints into CiliumEndpointSlices"},
	{Name: "enable-endpoint-health-checking", Kind: KindBool, Default: "true", Status: StatusDiffers, Assumes: "false", Instead: "podpath runs no endpoint health checks", Meaning: "health-check endpoints across nodes"},
	{Name: "enable-endpoint-routes", Kind: KindBool, Default: "false", Assumes: "false", Meaning: "per-endpoint routes instead of routing through cilium_host"},
	{Name: "enable-envoy-config", Kind: KindBool, Default: "false", Meaning: "CiliumEnvoyConfig resources"},
	{Name: "enable-external-ips", Kind: KindBool, Default: "false", Meaning: "BPF handling of services' external IPs"},
	{Name: "enable-gateway-api", Kind: KindBool, Default: "false", Meaning: "Gateway API support"},
	{Name: "enable-health-check-loadbalancer-ip", Kind: KindBool, Default: "false", Meaning: "health-check node port on LoadBalancer IPs"},
	{Name: "enable-health-check-nodeport", Kind: KindBool, Default: "true", Status: StatusDiffers, Assumes: "false", Instead: "podpath does not serve healthCheckNodePort", Meaning: "serve healthCheckNodePort in BPF"},
	{Name: "enable-health-checking", Kind: KindBool, Default: "true", Status: StatusDiffers, Assumes: "false", Instead: "podpath runs no node-to-node health checks", Meaning: "node-to-node health checks"},
	{Name: "enable-host-firewall", Kind: KindBool, Default: "false", Assumes: "false", Meaning: "policy enforcement on host endpoints"},
	{Name: "enable-host-port", Kind: KindBool, Default: "false", Meaning: "BPF hostPort mapping"},
	{Name: "enable-host-reachable-services", Kind: KindBool, Default: "false", ReplacedBy: "bpf-lb-sock", Meaning: "socket-level service translation (old name)"},
	{Name: "enable-hubble", Kind: KindBool, Default: "false", Meaning: "Hubble flow observability"},
	{Name: "enable-hubble-recorder-api", Kind: KindBool, Assumes: "false", Meaning: "Hubble packet recorder API"},
	{Name: "enable-ingress-controller", Kind: KindBool, Default: "false", Meaning: "Cilium's Ingress controller"},
	{Name: "enable-ipsec", Kind: KindBool, Default: "false", Assumes: "false", Meaning: "IPsec transparent encryption"},
	{Name: "enable-ipv4-big-tcp", Kind: KindBool, Default: "false", Meaning: "IPv4 BIG TCP (GSO/GRO above 64 KiB)"},
	{Name: "enable-ipv4-egress-gateway", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "EnableIPv4EgressGateway", Proof: []string{"catalog", "datapath/bpfconfig.TestBuild", "datapath/progtest.TestEgressGatewayFixtures", "datapath/progtest.TestEgressGatewayVXLANFixtures"},
		Meaning: "egress gateway policies (CiliumEgressGatewayPolicy, through the agent API and the scenario file); needs BPF masquerading"},
	{Name: "enable-ipv6-big-tcp", Kind: KindBool, Default: "false", Meaning: "IPv6 BIG TCP"},
	{Name: "enable-ipv6-masquerade", Kind: KindBool, Default: "true", Inert: "podpath is IPv4-only (enable-ipv6 must be false): there is no IPv6 traffic to masquerade", Meaning: "masquerade IPv6 pod traffic leaving the cluster"},
	{Name: "enable-ipv6-ndp", Kind: KindBool, Default: "false", Meaning: "proxy IPv6 neighbour discovery"},
	{Name: "enable-k8s-endpoint-slice", Kind: KindBool, Default: "true", Meaning: "watch EndpointSlices instead of Endpoints"},
	{Name: "enable-k8s-networkpolicy", Kind: KindBool, Default: "true", Status: StatusIgnored, Instead: "NetworkPolicies are always enforced when given (agent API, scenario policies); the value is not read", Meaning: "enforce Kubernetes NetworkPolicy"},
	{Name: "enable-k8s-terminating-endpoint", Kind: KindBool, Default: "true", Meaning: "use terminating endpoints as a fallback"},
	{Name: "enable-l2-announcements", Kind: KindBool, Default: "false", Meaning: "answer ARP for service IPs"},
	{Name: "enable-l2-neigh-discovery", Kind: KindBool, Default: "true", Meaning: "resolve other nodes' MAC addresses"},
	{Name: "enable-l7-proxy", Kind: KindBool, Default: "true", Status: StatusDiffers, Assumes: "false", Instead: "podpath has no L7 proxy: L7 policies and visibility are not done", Meaning: "L7 policy proxy (Envoy)"},
	{Name: "enable-local-node-route", Kind: KindBool, Default: "true", Meaning: "install the route to the local PodCIDR"},
	{Name: "enable-local-redirect-policy", Kind: KindBool, Default: "false", Meaning: "CiliumLocalRedirectPolicy"},
	{Name: "enable-masquerade-to-route-source", Kind: KindBool, Default: "false", Meaning: "masquerade to the source address of the route"},
	{Name: "enable-metrics", Kind: KindBool, Default: "false", Meaning: "operator metrics"},
	{Name: "enable-node-port", Kind: KindBool, Default: "false", Meaning: "BPF NodePort (implied by kube-proxy-replacement)"},
	{Name: "enable-policy", Kind: KindEnum, Values: []string{"default", "always", "never"}, Default: "default", Status: StatusImplemented, Field: "PolicyEnforcement", Proof: []string{"datapath/bpfconfig.TestBuildPolicy", "datapath/policy.TestComputeEnforcement"}, Meaning: "policy enforcement mode"},
	{Name: "enable-remote-node-identity", Kind: KindBool, Default: "true", Instead: "podpath gives other nodes the remote-node identity (6)", Meaning: "separate identity for remote nodes; removed in newer Cilium"},
	{Name: "enable-runtime-device-detection", Kind: KindBool, Assumes: "false", Meaning: "follow device changes at runtime"},
	{Name: "enable-sctp", Kind: KindBool, Default: "false", Meaning: "SCTP support"},
	{Name: "enable-service-topology", Kind: KindBool, Default: "false",
		Status: StatusImplemented, Field: "ServiceTopology", Proof: []string{"catalog", "datapath/agent.TestTopologyBackendSet"},
		Meaning: "topology-aware service routing"},
	{Name: "enable-session-affinity", Kind: KindBool, Default: "false", Meaning: "service session affinity in BPF"},
	{Name: "enable-srv6", Kind: KindBool, Default: "false", Meaning: "SRv6 support"},
	{Name: "enable-stale-cilium-endpoint-cleanup", Kind: KindBool, Default: "true", Meaning: "remove stale CiliumEndpoints on start"},
	{Name: "enable-tcx", Kind: KindBool, Default: "true", Meaning: "attach with tcx instead of tc (podpath always uses tcx)"},
	{Name: "enable-unreachable-routes", Kind: KindBool, Default: "false", Meaning: "unreachable routes for deleted pod IPs"},
	{Name: "enable-vtep", Kind: KindBool, Default: "false", Meaning: "VXLAN tunnel endpoints outside the cluster"},
	{Name: "enable-well-known-identities", Kind: KindBool, Default: "false", Meaning: "reserved identities for well-known workloads"},
	{Name: "enable-wireguard", Kind: KindBool, Default: "false", Assumes: "false", Meaning: "WireGuard transparent encryption"},
	{Name: "enable-xdp-prefilter", Kind: KindBool, Default: "false", Assumes: "false", Meaning: "XDP CIDR prefilter"},
	{Name: "enable-xt-socket-fallback", Kind: KindBool, Default: "true", Meaning: "iptables socket match fallback"},
	{Name: "encrypt-node", Kind: KindBool, Default: "false", Meaning: "encrypt node-to-node traffic too"},
	{Name: "etcd-config", Kind: KindYAML, Status: StatusPartial, Field: "EtcdConfig", Proof: []string{"catalog"},
		Gap:     "read when podpath-agent gets no --etcd-config file (the harness always gives one, in this key's layout, with its etcd members and a client certificate of the run's CA); endpoints, ca-file/trusted-ca-file, cert-file and key-file are read, no other etcd client option",
		Meaning: "etcd client configuration for the kvstore: endpoints and TLS files"},
	{Name: "external-envoy-proxy", Kind: KindBool, Default: "false", Meaning: "Envoy runs as a separate DaemonSet"},
	{Name: "hubble-disable-tls", Kind: KindBool, Default: "false", Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "serve Hubble without TLS"},
	{Name: "hubble-listen-address", Kind: KindString, Default: ":4244", Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "Hubble server address"},
	{Name: "hubble-metrics", Kind: KindList, Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "Hubble metrics to export"},
	{Name: "hubble-metrics-server", Kind: KindString, Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "Hubble metrics server address"},
	{Name: "hubble-socket-path", Kind: KindString, Default: "/var/run/cilium/hubble.sock", Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "Hubble local socket"},
	{Name: "hubble-tls-cert-file", Kind: KindString, Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "Hubble server certificate"},
	{Name: "hubble-tls-client-ca-files", Kind: KindList, Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "Hubble client CAs"},
	{Name: "hubble-tls-key-file", Kind: KindString, Inert: "a Hubble setting; podpath has no Hubble (enable-hubble: true is warned about)", Meaning: "Hubble server key"},
	{Name: "identity-allocation-mode", Kind: KindEnum, Values: []string{"crd", "kvstore", "doublewrite-readkvstore", "doublewrite-readcrd"}, Default: "crd",
		Status: StatusPartial, Field: "IdentityAllocationMode", Proof: []string{"catalog", "datapath/kvstore.TestAllocateRace"},
		Gap:     "only kvstore (with kvstore: etcd) allocates identities, in etcd from the pod's labels; crd and the doublewrite modes create no CiliumIdentity: each agent derives a pod's identity from a hash of its labels (one identity per label set, the same on every node, 256..65535)",
		Meaning: "where security identities are allocated"},
	{Name: "identity-gc-interval", Kind: KindDuration, Meaning: "garbage collection interval of identities"},
	{Name: "identity-heartbeat-timeout", Kind: KindDuration, Meaning: "timeout of identity heartbeats"},
	{Name: "install-iptables-rules", Kind: KindBool, Default: "true", Status: StatusDiffers, Assumes: "false", Instead: "podpath installs no iptables rules", Meaning: "install Cilium's iptables rules"},
	{Name: "install-no-conntrack-iptables-rules", Kind: KindBool, Default: "false", Meaning: "skip netfilter conntrack for pod traffic"},
	{Name: "ipam", Kind: KindEnum, Values: []string{"cluster-pool", "multi-pool", "kubernetes", "crd", "eni", "azure", "alibabacloud", "delegated-plugin"}, Default: "cluster-pool", Status: StatusDiffers, Assumes: "kubernetes", Instead: "each agent allocates pod addresses from the PodCIDR it is given (--pod-cidr: the node's spec.podCIDR, as ipam: kubernetes does); there is no cluster pool and no operator", Meaning: "IP address management mode"},
	{Name: "ipam-cilium-node-update-rate", Kind: KindDuration, Meaning: "rate of CiliumNode updates by IPAM"},
	{Name: "ipv6-native-routing-cidr", Kind: KindCIDR, Meaning: "IPv6 CIDR routed natively"},
	{Name: "k8s-client-burst", Kind: KindInt, Meaning: "burst of the Kubernetes client"},
	{Name: "k8s-client-qps", Kind: KindFloat, Meaning: "queries per second of the Kubernetes client"},
	{Name: "k8s-require-ipv4-pod-cidr", Kind: KindBool, Default: "false", Meaning: "wait for the node's IPv4 PodCIDR"},
	{Name: "k8s-require-ipv6-pod-cidr", Kind: KindBool, Default: "false", Meaning: "wait for the node's IPv6 PodCIDR"},
	{Name: "kube-proxy-replacement-healthz-bind-address", Kind: KindString, Meaning: "address of the kube-proxy compatible healthz server"},
	{Name: "kvstore", Kind: KindString, Status: StatusPartial, Field: "KVStore", Proof: []string{"catalog"},
		Gap:     "only etcd is implemented: agents register their node, endpoints (IP -> identity) and services under cilium/state/ with a lease and program the other nodes' endpoints from etcd into the ipcache; nodes and services still reach each agent through its API or the Kubernetes watch, and there is no cluster mesh",
		Meaning: "key-value store type: etcd, or empty for CRD mode"},
	{Name: "kvstore-opt", Kind: KindJSON, Instead: "not read: podpath-agent takes the etcd-config file as --etcd-config (what etcd.config names here; the harness writes one per node), else the etcd-config key", Meaning: "key-value store options, e.g. the etcd config file path"},
	{Name: "local-router-ipv4", Kind: KindString, Meaning: "address of cilium_host"},
	{Name: "max-connected-clusters", Kind: KindInt, Default: "255", Meaning: "Cluster Mesh size (255 or 511)"},
	{Name: "mesh-auth-enabled", Kind: KindBool, Status: StatusDiffers, Assumes: "false", Instead: "podpath does no mutual authentication", Meaning: "mutual authentication"},
	{Name: "monitor-aggregation-interval", Kind: KindDuration, Default: "5s", Instead: "under medium aggregation podpath emits no periodic per-connection traces", Meaning: "interval of periodic per-connection traces under medium aggregation"},
	{Name: "native-routing-cidr", Kind: KindCIDR, ReplacedBy: "ipv4-native-routing-cidr", Meaning: "old name of ipv4-native-routing-cidr (Cilium <= 1.10)"},
	{Name: "node-port-bind-protection", Kind: KindBool, Default: "true", Status: StatusDiffers, Assumes: "false", Instead: "podpath does not refuse binds to NodePort ports", Meaning: "refuse binds to NodePort ports"},
	{Name: "node-port-range", Kind: KindString, Default: "30000,32767", Meaning: "NodePort range"},
	{Name: "nodes-gc-interval", Kind: KindDuration, Meaning: "garbage collection interval of CiliumNodes"},
	{Name: "operator-api-serve-addr", Kind: KindString, Default: "localhost:9234", Inert: "cilium-operator reads it; podpath has no operator", Meaning: "address of the operator API"},
	{Name: "operator-prometheus-serve-addr", Kind: KindString, Default: ":9963", Inert: "cilium-operator reads it; podpath has no operator", Meaning: "address of the operator metrics"},
	{Name: "policy-audit-mode", Kind: KindBool, Default: "false", Status: StatusImplemented, Field: "PolicyAuditMode", Proof: []string{"datapath/bpfconfig.TestBuildPolicy", "datapath/progtest.TestPolicyAuditMode", "catalog"}, Meaning: "log policy drops instead of dropping"},
	{Name: "preallocate-bpf-maps", Kind: KindBool, Default: "false", Meaning: "preallocate BPF map memory"},
	{Name: "procfs", Kind: KindString, Default: "/host/proc", Meaning: "procfs mount of the host"},
	{Name: "prometheus-serve-addr", Kind: KindString, Meaning: "address of the agent metrics"},
	{Name: "proxy-prometheus-port", Kind: KindInt, Meaning: "port of the Envoy metrics"},
	{Name: "remove-cilium-node-taints", Kind: KindBool, Default: "true", Meaning: "remove the agent-not-ready taint"},
	{Name: "set-cilium-is-up-condition", Kind: KindBool, Default: "true", Meaning: "set the NetworkUnavailable node condition"},
	{Name: "set-cilium-node-taints", Kind: KindBool, Assumes: "false", Meaning: "set the agent-not-ready taint"},
	{Name: "sidecar-istio-proxy-image", Kind: KindString, Default: "cilium/istio_proxy", Inert: "only the L7 proxy used it (removed in newer Cilium); podpath has no L7 proxy", Meaning: "Istio sidecar image recognised by the L7 proxy; removed in newer Cilium"},
	{Name: "single-cluster-route", Kind: KindBool, Default: "false", Meaning: "one route for the whole cluster CIDR"},
	{Name: "synchronize-k8s-nodes", Kind: KindBool, Default: "true", Meaning: "watch Kubernetes nodes"},
	{Name: "tofqdns-dns-reject-response-code", Kind: KindEnum, Values: []string{"refused", "nameError"}, Default: "refused", Inert: "a DNS proxy setting (FQDN policy); podpath has no DNS proxy and no policy", Meaning: "DNS proxy answer to denied queries"},
	{Name: "tofqdns-enable-dns-compression", Kind: KindBool, Default: "true", Inert: "a DNS proxy setting (FQDN policy); podpath has no DNS proxy and no policy", Meaning: "compress DNS proxy answers"},
	{Name: "tofqdns-endpoint-max-ip-per-hostname", Kind: KindInt, Default: "50", Inert: "a DNS proxy setting (FQDN policy); podpath has no DNS proxy and no policy", Meaning: "IPs remembered per DNS name"},
	{Name: "tofqdns-idle-connection-grace-period", Kind: KindDuration, Default: "0s", Inert: "a DNS proxy setting (FQDN policy); podpath has no DNS proxy and no policy", Meaning: "grace period of idle DNS-derived connections"},
	{Name: "tofqdns-max-deferred-connection-deletes", Kind: KindInt, Default: "10000", Inert: "a DNS proxy setting (FQDN policy); podpath has no DNS proxy and no policy", Meaning: "deferred deletes of DNS-derived IPs"},
	{Name: "tofqdns-proxy-response-max-delay", Kind: KindDuration, Default: "100ms", Inert: "a DNS proxy setting (FQDN policy); podpath has no DNS proxy and no policy", Meaning: "maximum delay of DNS proxy answers"},
	{Name: "unmanaged-pod-watcher-interval", Kind: KindInt, Default: "15", Meaning: "seconds between restarts of pods not managed by Cilium"},
	{Name: "vlan-bpf-bypass", Kind: KindList, Meaning: "VLAN IDs allowed through BPF"},
	{Name: "vtep-cidr", Kind: KindList, Meaning: "VTEP CIDRs"},
	{Name: "vtep-endpoint", Kind: KindList, Meaning: "VTEP addresses"},
	{Name: "vtep-mac", Kind: KindList, Meaning: "VTEP MAC addresses"},
	{Name: "vtep-mask", Kind: KindString, Meaning: "VTEP mask"},
	{Name: "write-cni-conf-when-ready", Kind: KindString, Meaning: "path of the CNI configuration written once ready"},
}

var keyIndex = func() map[string]*Key {
	m := make(map[string]*Key, len(keyTable))
	for i := range keyTable {
		k := &keyTable[i]
		if k.Status == "" {
			k.Status = StatusIgnored
		}
		if _, dup := m[k.Name]; dup {
			panic("config: key " + k.Name + " listed twice")
		}
		m[k.Name] = k
	}
	return m
}()

// KnownKeys returns every cilium-config key podpath knows, implemented or not,
// sorted by name.
func KnownKeys() []Key {
	keys := slices.Clone(keyTable)
	slices.SortFunc(keys, func(a, b Key) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return keys
}

// lookupKey returns the known key of that name, or nil.
func lookupKey(name string) *Key { return keyIndex[name] }

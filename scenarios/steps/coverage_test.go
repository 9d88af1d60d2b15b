// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"podpath/datapath/config"
	"podpath/datapath/config/configs"
	"podpath/scenarios"
)

// checkRef names a catalog check: a scenario, a step kind it runs, and words of the
// check's name as the step kind's source spells them.
type checkRef struct {
	Scenario, Kind, Words string
}

func (c checkRef) String() string { return fmt.Sprintf("%s: %s: %q", c.Scenario, c.Kind, c.Words) }

// catalogIndex is what the checks of a checkRef are checked against.
type catalogIndex struct {
	kinds    map[string]map[string]bool // scenario -> step kinds its file uses
	text     map[string]string          // scenario -> its file
	source   string                     // the step kinds' Go source, test files excluded
	registry map[string]bool            // registered step kinds
}

func loadCatalogIndex(t *testing.T) *catalogIndex {
	t.Helper()
	ix := &catalogIndex{kinds: map[string]map[string]bool{}, text: map[string]string{}, registry: map[string]bool{}}
	for _, k := range scenarios.StepKinds() {
		ix.registry[k.Name] = true
	}
	for _, name := range scenarios.Names() {
		data, ok := scenarios.CatalogFile(name)
		if !ok {
			t.Fatalf("catalog scenario %s: no file", name)
		}
		f, err := scenarios.ParseScenario(data, "")
		if err != nil {
			t.Fatalf("catalog scenario %s: %v", name, err)
		}
		ix.kinds[name] = map[string]bool{}
		for _, st := range f.Stages {
			for _, step := range st.Steps {
				ix.kinds[name][step.Kind] = true
			}
		}
		ix.text[name] = string(data)
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var src strings.Builder
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		src.Write(b)
	}
	ix.source = src.String()
	return ix
}

// problem says what is wrong with c, "" when it names a real catalog check.
func (ix *catalogIndex) problem(c checkRef) string {
	kinds, ok := ix.kinds[c.Scenario]
	switch {
	case !ok:
		return fmt.Sprintf("%s: no catalog scenario %q", c, c.Scenario)
	case !ix.registry[c.Kind]:
		return fmt.Sprintf("%s: no step kind %q", c, c.Kind)
	case !kinds[c.Kind]:
		return fmt.Sprintf("%s: scenario %s runs no %s step", c, c.Scenario, c.Kind)
	case c.Words == "" || !strings.Contains(ix.source, c.Words):
		return fmt.Sprintf("%s: no step kind's source holds these words of a check name", c)
	}
	return ""
}

var (
	markerRE   = regexp.MustCompile(`writes:((?:\s+[a-z0-9_]+(?:\.[a-z0-9_]+)+)+)`)
	checkRefRE = regexp.MustCompile("`([a-z0-9-]+)`: `([a-z0-9-]+)`: \"([^\"]+)\"")
)

// fieldRow is a row of the README's table of written fields.
type fieldRow struct {
	writtenIn string
	checks    []checkRef
	line      int
}

// readFieldTable reads the table of the README section on written fields.
func readFieldTable(t *testing.T) map[string]fieldRow {
	t.Helper()
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	const heading = "## Fields the datapath writes, and the checks that read them"
	_, section, ok := strings.Cut(string(data), heading)
	if !ok {
		t.Fatalf("scenarios/README.md has no section %q", heading)
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	rows := map[string]fieldRow{}
	for i, line := range strings.Split(section, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if !strings.HasPrefix(line, "| `") || len(cells) != 3 {
			continue
		}
		field := strings.Trim(cells[0], "`")
		if _, dup := rows[field]; dup {
			t.Errorf("README: field %s has two rows", field)
		}
		row := fieldRow{writtenIn: cells[1], line: i}
		for _, m := range checkRefRE.FindAllStringSubmatch(cells[2], -1) {
			row.checks = append(row.checks, checkRef{m[1], m[2], m[3]})
		}
		rows[field] = row
	}
	if len(rows) == 0 {
		t.Fatal("README: the written-fields table has no row")
	}
	return rows
}

// readMarkers returns, for every field marked in bpf/, the files that mark it.
func readMarkers(t *testing.T) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, pattern := range []string{"../../bpf/*.c", "../../bpf/lib/*.h"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rel := strings.TrimPrefix(filepath.ToSlash(f), "../../")
			for _, m := range markerRE.FindAllStringSubmatch(string(data), -1) {
				for _, field := range strings.Fields(m[1]) {
					if !slices.Contains(out[field], rel) {
						out[field] = append(out[field], rel)
					}
				}
			}
		}
	}
	if len(out) == 0 {
		t.Fatal("no writes: marker in bpf/")
	}
	return out
}

// TestWrittenFieldsAreChecked: every field a BPF program writes (a `writes:` marker in
// bpf/) has a row in the scenarios README naming the file and at least one catalog
// check that exists; no row is left without a marker.
func TestWrittenFieldsAreChecked(t *testing.T) {
	ix := loadCatalogIndex(t)
	rows := readFieldTable(t)
	marked := readMarkers(t)
	for field, files := range marked {
		row, ok := rows[field]
		if !ok {
			t.Errorf("field %s, written in %v, has no row in the scenarios README's table", field, files)
			continue
		}
		for _, f := range files {
			if !strings.Contains(row.writtenIn, f) {
				t.Errorf("field %s: the README row says written in %q, the marker is in %s too", field, row.writtenIn, f)
			}
		}
		if len(row.checks) == 0 {
			t.Errorf("field %s: the README row names no check (want `scenario`: `step kind`: \"words of the check name\")", field)
		}
		for _, c := range row.checks {
			if p := ix.problem(c); p != "" {
				t.Errorf("field %s: %s", field, p)
			}
		}
	}
	for field := range rows {
		if _, ok := marked[field]; !ok {
			t.Errorf("README row %s: no writes: marker in bpf/ names this field", field)
		}
	}
}

// witness says which check shows a config value in effect, or why none can.
type witness struct {
	checks []checkRef
	// noWitness is the reason a value has no behaviour a check could witness.
	noWitness string
	// anyValue: the witnessing scenario may set the key to another value (the same
	// code reads whichever value is configured).
	anyValue bool
}

// configWitnesses lists, for every key=value the catalog configs set (key=* for any
// value), the catalog check that shows it in effect, from outside the agent's own
// report: the wire, the kernel's tables, the BPF maps against the spec.
var configWitnesses = map[string]witness{
	// XDP acceleration (issue 13): the trace ring and the entry node's NIC capture.
	"bpf-lb-acceleration=native": {checks: []checkRef{
		{"xdp-nodeport", "xdp-nodeport", "every request (%d) is translated at XDP on %s (trace point xdp)"},
		{"xdp-nodeport", "xdp-nodeport", "an AF_PACKET capture on %s/%s sees none of the requests, in or forwarded"}}},
	// Masquerading (issue 11).
	"enable-ipv4-masquerade=true": {checks: []checkRef{
		{"masquerade", "masquerade-egress", "on %s's uplink the source %s"},
		{"masquerade", "masquerade-mode", "the nftables masquerade rule counted the flows"}}},
	"ipv4-native-routing-cidr=10.0.0.0/8": {checks: []checkRef{
		{"masquerade", "masquerade-egress", "on %s's uplink the source %s"}}},
	"enable-bpf-masquerade=true": {checks: []checkRef{
		{"masquerade", "masquerade-mode", "nftables masqueraded nothing (counter 0)"},
		{"masquerade", "masquerade-mode", "BPF masquerading counted the flows"}}},
	"enable-bpf-masquerade=false": {checks: []checkRef{
		{"masquerade", "masquerade-mode", "the nftables masquerade rule counted the flows"}}},
	"enable-ip-masq-agent=true": {checks: []checkRef{
		{"masquerade", "masquerade-egress", "on %s's uplink the source %s"}}},
	"ip-masq-agent-config-path=ip-masq-agent": {checks: []checkRef{
		{"masquerade", "masquerade-egress", "the server sees %s"}}},
	"podpath-masquerade-port-range=40000,40003": {checks: []checkRef{
		{"masquerade", "masquerade-exhaustion", "%d answered (the range's ports)"},
		{"masquerade", "masquerade-exhaustion", "the rest dropped at to-netdev with DROP_MASQ_NO_PORT"}}},
	// Egress gateway (issue 11): the gateway's uplink and the drop without a gateway.
	"enable-ipv4-egress-gateway=true": {checks: []checkRef{
		{"egress-gateway", "egress-gateway", "on the gateway %s's uplink the source is the egress IP %s"},
		{"egress-gateway", "egress-gateway-drop", "dropped on %s at %s with %s"}}},
	// kvstore (issue 15): etcdctl reads what the agents wrote; the VNI carries it.
	"kvstore=etcd": {checks: []checkRef{
		{"kvstore", "kvstore-identity", "etcd: %s's address maps to an identity whose labels are the pod's (%s)"}}},
	"identity-allocation-mode=kvstore": {checks: []checkRef{
		{"kvstore", "kvstore-identity", "wire: %s's echo request to %s carries its etcd identity %d in the VNI"}}},
	"etcd-config=*": {anyValue: true, checks: []checkRef{
		{"kvstore", "kvstore-status", "%s's agent: KVStore Ok, etcd %d/%d connected, has-quorum=true"}}},
	"routing-mode=native": {checks: []checkRef{
		{"native-routing", "cross-node-path", "on the underlay wire the packet is plain IPv4 between pod addresses, not encapsulated"}}},
	"routing-mode=tunnel": {checks: []checkRef{
		{"vxlan-mtu", "overlay-headers", "inner frame as %s sent it (TTL-1)"},
		{"geneve-mtu", "overlay-headers", "inner frame as %s sent it (TTL-1)"}}},
	"tunnel-protocol=vxlan": {checks: []checkRef{
		{"vxlan-mtu", "overlay-headers", "tshark decodes the underlay pcap as"}}},
	"tunnel-protocol=geneve": {checks: []checkRef{
		{"geneve-mtu", "overlay-headers", "tshark decodes the underlay pcap as"},
		{"dsr-geneve", "dsr-nodeport", "encapsulated in Geneve (UDP 6081)"}}},
	// Calico's modes (issue 14).
	"tunnel-protocol=ipip": {checks: []checkRef{
		{"calico-modes", "encap-mode", "crosses the underlay %s (%s)"},
		{"calico-modes", "encap-mode", "tshark reads %s -> %s on %s's underlay as %s"}}},
	"tunnel-mode=always": {checks: []checkRef{
		{"calico-modes", "encap-mode", "crosses the underlay %s (%s)"}}},
	"tunnel-mode=cross-subnet": {checks: []checkRef{
		{"calico-modes", "encap-mode", "crosses the underlay %s (%s)"},
		{"calico-modes", "mtu-sweep", "one byte over the route MTU with DF is refused"}}},
	"tunnel-port=4789": {checks: []checkRef{
		{"vxlan-mtu", "overlay-headers", "UDP (port %d, length, checksum 0, source in [%d, %d)), %s header, inner IPv4 checksum valid (%d frames)"}}},
	"mtu=1400": {checks: []checkRef{
		{"vxlan-mtu", "tunnel-mtu", "agent sizes the tunnel from %s (MTU %d): route MTU %d"},
		{"vxlan-mtu", "mtu-sweep", "one byte over the route MTU with DF is refused"}}},
	"enable-bgp-control-plane=true": {checks: []checkRef{
		{"bgp-native", "bgp-routes", "learned by BGP (proto bgp), no static route"},
		{"bgp-native", "bgp-sessions", "has its %d sessions Established"}}},
	"auto-direct-node-routes=true": {checks: []checkRef{
		{"native-routing", "node-route", "auto-direct-node-routes: %s routes %s's PodCIDR via %s"}}},
	// Weak: the routed stage shows pod traffic crossing the routers hop by hop; no
	// check reads the node's routing table for the absence of a direct route.
	"auto-direct-node-routes=false": {checks: []checkRef{
		{"native-routing", "cross-node-path", "MACs and TTL one less per routing hop"}}},
	"enable-host-legacy-routing=false": {checks: []checkRef{
		{"redirect-peer", "same-node-path", "the host stack and netfilter never see the packets"},
		{"native-routing", "cross-node-path", "host stack and netfilter never see the packets"}}},
	"enable-host-legacy-routing=true": {checks: []checkRef{
		{"redirect-peer", "same-node-path", "netfilter's forward hook sees the packets"}}},
	"enable-ipv4=true": {checks: []checkRef{
		{"native-routing", "cross-node-path", "MACs and TTL one less per routing hop"}}},
	"policy-audit-mode=true": {checks: []checkRef{
		{"policy", "policy-flow", "recorded as %s at %s on %s"},
		{"policy", "policy-flow", "reaches %s's eth0"}}},
	"enable-ipv6=false": {noWitness: "podpath's datapath is IPv4-only: false is the only value it runs with, " +
		"and no IPv6 address or route exists in any catalog topology to show otherwise"},
	// Only traffic inside the CIDR is witnessed (forwarded in BPF); no catalog check
	// sends pod traffic outside it.
	// cluster mesh, native: both clusters' pods (10.244/16, 10.245/16) reach each other
	// unmasqueraded.
	"ipv4-native-routing-cidr=10.244.0.0/15": {checks: []checkRef{
		{"clustermesh", "cross-node-path", "on the underlay wire the packet is plain IPv4 between pod addresses, not encapsulated"}}},
	"ipv4-native-routing-cidr=10.244.0.0/16": {checks: []checkRef{
		{"native-routing", "cross-node-path", "from-container on %s redirects out of %s after a FIB lookup"}}},
	"kube-proxy-replacement=true": {checks: []checkRef{
		{"services-snat", "service-echo", "answered by a backend"}}},
	"bpf-lb-mode=snat": {checks: []checkRef{
		{"services-snat", "nodeport-snat", "the remote backend sees %s's IP as the source"},
		{"maglev-consistency", "maglev-cross-node", "cross-node consistency"}}},
	"bpf-lb-mode=dsr": {checks: []checkRef{
		{"dsr", "dsr-nodeport", "replies never cross %s, the node that balanced the flow"},
		{"dsr-geneve", "dsr-nodeport", "replies never cross %s, the node that balanced the flow"}}},
	"bpf-lb-mode=hybrid": {checks: []checkRef{
		{"hybrid", "dsr-nodeport", "replies return through %s (SNAT), never directly from %s"}}},
	"bpf-lb-dsr-dispatch=opt": {checks: []checkRef{
		{"dsr", "dsr-nodeport", "DSR option bytes: IPv4 IHL 7, option 0x9a"}}},
	"bpf-lb-dsr-dispatch=geneve": {checks: []checkRef{
		{"dsr-geneve", "dsr-nodeport", "DSR option bytes: Geneve options length 12"}}},
	// Service semantics (issue 12).
	"enable-ipv4-fragment-tracking=true": {checks: []checkRef{
		{"kpr-udp", "service-fragments", "every fragment reaches the backend pod with the backend's address"},
		{"kpr-udp", "service-fragments", "every echo comes back whole"}}},
	"enable-ipv4-fragment-tracking=false": {checks: []checkRef{
		{"kpr-udp", "service-fragments", "only the first fragment reaches the backend pod"},
		{"kpr-udp", "service-fragments", "no echo comes back (later fragments pass untranslated)"}}},
	"service-no-backend-response=reject": {checks: []checkRef{
		{"kpr-semantics", "service-reject", "refused with %s within %d ms"}}},
	"service-no-backend-response=drop": {checks: []checkRef{
		{"kpr-semantics", "service-reject", "service-no-backend-response drop: %s -> %s %s gets no answer"}}},
	"enable-svc-source-range-check=true": {checks: []checkRef{
		{"kpr-semantics", "source-ranges", "is dropped, named DROP_SVC_SOURCE_RANGE"}}},
	"bpf-lb-external-clusterip=true": {checks: []checkRef{
		{"kpr-addresses", "external-clusterip", "bpf-lb-external-clusterip true: %s routed via %s reaches %s from outside"}}},
	"bpf-lb-external-clusterip=false": {checks: []checkRef{
		{"kpr-addresses", "external-clusterip", "bpf-lb-external-clusterip false: %s routed via %s from outside is dropped, named DROP_IS_CLUSTER_IP"}}},
	"enable-service-topology=true": {checks: []checkRef{
		{"kpr-addresses", "topology-aware", "land on only the backends hinted for zone"}}},
	// Weak by nature: "off" shows as every backend taking flows despite the hints.
	"enable-service-topology=false": {checks: []checkRef{
		{"kpr-addresses", "topology-aware", "land on every backend"}}},
	// Weak: random selection shows as connections spreading after the affinity timeout
	// (a new backend), not as a distribution test.
	"bpf-lb-algorithm=random": {checks: []checkRef{
		{"kpr-semantics", "session-affinity", "a new connection may land elsewhere"}}},
	"bpf-lb-algorithm=maglev": {checks: []checkRef{
		{"maglev-consistency", "maglev-cross-node", "Maglev spec: flows through %s reach table"}}},
	"bpf-lb-maglev-hash-seed=*": {anyValue: true, checks: []checkRef{
		{"maglev-consistency", "maglev-cross-node", "Maglev spec: %s's table for %s equals the table computed"},
		{"maglev-consistency", "maglev-cross-node", "Maglev spec: flows through %s reach table"}}},
	"bpf-lb-maglev-table-size=*": {anyValue: true, checks: []checkRef{
		{"maglev-consistency", "maglev-cross-node", "Maglev spec: %s's table for %s equals the table computed"},
		{"maglev-consistency", "maglev-cross-node", "Maglev spec: flows through %s reach table"}}},
	"monitor-aggregation=*": {anyValue: true, checks: []checkRef{
		{"services-snat", "trace-aggregation", "monitor-aggregation %s: the records of an ICMP exchange"},
		{"native-routing", "trace-aggregation", "monitor-aggregation %s: the records of an ICMP exchange"}}},
	// Socket-LB.
	"bpf-lb-sock=true": {checks: []checkRef{
		{"socket-lb", "socket-lb", "the first packet carries a backend address on the wire"},
		{"socket-lb", "socket-lb", "no LB translation at tc"}}},
	"bpf-lb-sock-hostns-only=true": {checks: []checkRef{
		{"socket-lb", "socket-lb", "the first packet carries the ClusterIP on the wire"}}},
}

// configData returns the data keys of catalog config name.
func configData(t *testing.T, name string) map[string]string {
	t.Helper()
	raw, err := configs.Read(name)
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.Unmarshal(raw, &cm); err != nil {
		t.Fatalf("config %s: %v", name, err)
	}
	return cm.Data
}

// TestConfigValuesHaveWitnesses: every key=value a catalog config sets has a witness
// check that exists, run by a scenario that uses a config setting that key (to that
// value unless the entry says any value does), or an explicit reason it has none.
func TestConfigValuesHaveWitnesses(t *testing.T) {
	ix := loadCatalogIndex(t)
	data := map[string]map[string]string{}
	for _, name := range configs.Names() {
		data[name] = configData(t, name)
	}
	// sets says whether scenario uses a config (stage or restart) setting key (=value).
	sets := func(scenario, key, value string) bool {
		for name, d := range data {
			v, ok := d[key]
			if !ok || (value != "" && v != value) {
				continue
			}
			if regexp.MustCompile(`config:\s*` + regexp.QuoteMeta(name) + `\b`).MatchString(ix.text[scenario]) {
				return true
			}
		}
		return false
	}
	used := map[string]bool{}
	for _, name := range configs.Names() {
		for key, value := range data[name] {
			entry, id := key+"="+value, key+"="+value
			w, ok := configWitnesses[entry]
			if !ok {
				id = key + "=*"
				w, ok = configWitnesses[id]
			}
			if !ok {
				t.Errorf("config %s sets %s: no witness entry (want %q or %q in configWitnesses)", name, entry, entry, key+"=*")
				continue
			}
			used[id] = true
			if len(w.checks) == 0 && w.noWitness == "" {
				t.Errorf("config %s sets %s: the entry names no check and no reason", name, entry)
			}
			for _, c := range w.checks {
				if p := ix.problem(c); p != "" {
					t.Errorf("config %s sets %s: witness %s", name, entry, p)
				}
				want := value
				if w.anyValue {
					want = ""
				}
				if !sets(c.Scenario, key, want) {
					t.Errorf("config %s sets %s: witness %s runs with no catalog config that sets %s", name, entry, c, strings.TrimSuffix(key+"="+want, "="))
				}
			}
		}
	}
	for id := range configWitnesses {
		if !used[id] {
			t.Errorf("configWitnesses[%q]: no catalog config sets it", id)
		}
	}
}

// TestKeyStatusesAreProven: a cilium-config key that datapath/config says podpath
// reads (implemented, partial, fixed) names proof that exists, and an implemented
// or partial key resolves into a Config field that the agent, the BPF config
// translation or the loader reads. Proof "catalog" means configWitnesses holds a
// witness check for the key (a reason without a check is no proof); other proof is
// a Go test "<package dir>.<TestName>" that exists. A key read by no code, or
// proven by nothing, cannot be marked implemented.
func TestKeyStatusesAreProven(t *testing.T) {
	var code strings.Builder // non-test Go source of the packages that act on a Config
	for _, dir := range []string{"datapath/agent", "datapath/bpfconfig", "datapath/loader"} {
		files, err := filepath.Glob(filepath.Join("../..", dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			code.Write(b)
		}
	}
	hasTest := func(proof string) bool {
		i := strings.LastIndex(proof, ".")
		if i < 0 {
			return false
		}
		dir, name := proof[:i], proof[i+1:]
		files, _ := filepath.Glob(filepath.Join("../..", dir, "*_test.go"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil && strings.Contains(string(b), "\nfunc "+name+"(t *testing.T)") {
				return true
			}
		}
		return false
	}
	hasWitness := func(key string) bool {
		for id, w := range configWitnesses {
			if strings.HasPrefix(id, key+"=") && len(w.checks) > 0 {
				return true
			}
		}
		return false
	}
	read := 0
	for _, k := range config.KnownKeys() {
		if !k.Read() {
			continue
		}
		read++
		if len(k.Proof) == 0 {
			t.Errorf("%s is %s but names no proof", k.Name, k.Status)
		}
		for _, p := range k.Proof {
			switch {
			case p == "catalog" && !hasWitness(k.Name):
				t.Errorf("%s is %s with proof %q, but configWitnesses holds no witness check for it", k.Name, k.Status, p)
			case p != "catalog" && !hasTest(p):
				t.Errorf("%s is %s with proof %q: no such test", k.Name, k.Status, p)
			}
		}
		if k.Status == config.StatusFixed {
			continue
		}
		if k.Field == "" || !regexp.MustCompile(`\.`+regexp.QuoteMeta(k.Field)+`\b[^(]`).MatchString(code.String()) {
			t.Errorf("%s is %s, but its Config field %q is read by no code of datapath/agent, bpfconfig or loader", k.Name, k.Status, k.Field)
		}
	}
	if read == 0 {
		t.Fatal("no key is read by podpath: the status table did not load")
	}
	// Every key a witness entry covers is one podpath reads: a witness for an
	// ignored key would witness nothing.
	for id := range configWitnesses {
		key, _, _ := strings.Cut(id, "=")
		if k := keyByName(key); k == nil || !k.Read() {
			t.Errorf("configWitnesses[%q]: %s is not a key podpath reads", id, key)
		}
	}
}

func keyByName(name string) *config.Key {
	for _, k := range config.KnownKeys() {
		if k.Name == name {
			return &k
		}
	}
	return nil
}

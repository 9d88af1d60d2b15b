// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"podpath/scenarios"
	_ "podpath/scenarios/steps"
)

// validFile is a small scenario using catalog references; each case breaks it once.
const validFile = `
name: my-scenario
description: two pods talk across nodes
labels: [mine]
stages:
  - name: L2
    topology: l2-two-node-agent
    config: native-routing
    steps:
      - check: connectivity
        with: {from: pod1a, to: pod2a, bothWays: true}
      - check: mtu-sweep
        with: {from: pod1a, to: pod2a}
        expect: {routeMTU: 1500}
`

func TestParseScenario(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []string // substrings of the error; nil = valid
	}{
		{"valid", validFile, nil},
		{"valid do instead of check", strings.Replace(validFile, "- check: connectivity", "- do: connectivity", 1), nil},

		// unknown fields, at every level
		{"unknown top-level field", validFile + "owner: me\n",
			[]string{"owner: unknown field (want one of: name, description, labels, stages) (line"}},
		{"unknown stage field", strings.Replace(validFile, "    config: native-routing", "    config: native-routing\n    nodes: 3", 1),
			[]string{"stages[0].nodes: unknown field (want one of: name, topology, config, services, policies, egressGatewayPolicies, steps)"}},
		{"unknown step field", strings.Replace(validFile, "        expect: {routeMTU: 1500}", "        expect: {routeMTU: 1500}\n        retries: 2", 1),
			[]string{"stages[0].steps[1].retries: unknown field (want one of: check (or do), with, expect, timeout)"}},
		{"unknown parameter", strings.Replace(validFile, "{from: pod1a, to: pod2a}\n        expect", "{from: pod1a, to: pod2a, mtu: 1400}\n        expect", 1),
			[]string{"stages[0].steps[1].with.mtu: unknown parameter of step kind mtu-sweep (want one of: from, to, label)"}},
		{"unknown expected value", strings.Replace(validFile, "expect: {routeMTU: 1500}", "expect: {routeMTU: 1500, loss: 0}", 1),
			[]string{"stages[0].steps[1].expect.loss: unknown expected value of step kind mtu-sweep (want one of: routeMTU)"}},
		{"expected value on a step without any", strings.Replace(validFile, "bothWays: true}", "bothWays: true}\n        expect: {delivered: true}", 1),
			[]string{"stages[0].steps[0].expect.delivered: unknown expected value of step kind connectivity: there are none here"}},
		{"inline topology unknown field", strings.Replace(validFile, "    topology: l2-two-node-agent", inlineTopology("        cpus: 2\n"), 1),
			[]string{"stages[0].topology.nodes[0].cpus: unknown field (want one of: name, podCIDR, interfaces, internalInterface, devices, zone, pods, bgp, labels, cluster, nicModel)"}},
		{"inline config unknown field", strings.Replace(validFile, "    config: native-routing", "    config: {data: {routing-mode: native}, kind: ConfigMap}", 1),
			[]string{"stages[0].config.kind: unknown field (want one of: data)"}},
		{"given twice", strings.Replace(validFile, "bothWays: true}", "bothWays: true, from: pod2a}", 1),
			[]string{"stages[0].steps[0].with.from: given twice"}},

		// step kinds
		{"unknown step kind", strings.Replace(validFile, "check: connectivity", "check: conectivity", 1),
			[]string{`stages[0].steps[0].check: unknown step kind "conectivity" (have: `, "connectivity, connectivity-matrix"}},
		{"no step kind", strings.Replace(validFile, "      - check: connectivity\n", "      - ", 1),
			[]string{"stages[0].steps[0].check: required: the step kind (have: "}},
		{"check and do", strings.Replace(validFile, "- check: connectivity", "- check: connectivity\n        do: connectivity", 1),
			[]string{"stages[0].steps[0].do: a step has one kind"}},
		{"agents step on a kernel topology", strings.Replace(strings.Replace(validFile, "l2-two-node-agent", "l2-two-node", 1), "    config: native-routing\n", "", 1) +
			"      - check: cross-node-path\n        with: {from: pod1a, to: pod2a}\n",
			[]string{"stages[0].steps[2].check: step kind cross-node-path talks to the agents, and topology l2-two-node runs none (podNetwork: kernel)"}},

		// missing required values
		{"missing required parameter", strings.Replace(validFile, "{from: pod1a, to: pod2a}\n        expect", "{from: pod1a}\n        expect", 1),
			[]string{"stages[0].steps[1].with.to: required: the pod that answers, on another node"}},
		{"missing required expected value", strings.Replace(validFile, "        expect: {routeMTU: 1500}\n", "", 1),
			[]string{"stages[0].steps[1].expect.routeMTU: required: the path MTU between the pods"}},
		{"missing topology", strings.Replace(validFile, "    topology: l2-two-node-agent\n", "", 1),
			[]string{"stages[0].topology: required: a catalog topology name, a file path, or an inline topology spec"}},
		{"missing name and stages", "description: nothing\n",
			[]string{"name: required", "stages: required"}},
		{"empty steps", strings.Split(validFile, "    steps:")[0] + "    steps: []\n",
			[]string{"stages[0].steps: want at least one step"}},

		// values of the wrong type or out of range
		{"not a number", strings.Replace(validFile, "routeMTU: 1500", "routeMTU: big", 1),
			[]string{`stages[0].steps[1].expect.routeMTU: "big" is not a whole number`}},
		{"number out of range", strings.Replace(validFile, "routeMTU: 1500", "routeMTU: 10", 1),
			[]string{"stages[0].steps[1].expect.routeMTU: 10 is out of range (want 68 to 65535)"}},
		{"not a boolean", strings.Replace(validFile, "bothWays: true", "bothWays: yes please", 1),
			[]string{`stages[0].steps[0].with.bothWays: "yes please" is not true or false`}},
		{"not a list", strings.Replace(validFile, "labels: [mine]", "labels: mine", 1),
			[]string{`labels: want a list, got "mine"`}},
		{"not one of", strings.Replace(validFile, "bothWays: true}", "bothWays: true, protocols: [icmp, sctp]}", 1),
			[]string{`stages[0].steps[0].with.protocols[1]: "sctp" is not one of icmp, tcp, udp`}},
		{"bad duration", strings.Replace(validFile, "bothWays: true}", "bothWays: true}\n      - check: ping-during-restart\n        with: {from: pod1a, to: pod2a, kill: [node2], interval: soon}", 1),
			[]string{`stages[0].steps[1].with.interval: "soon" is not a duration like 10ms or 2s`}},
		{"bad regular expression", strings.Replace(validFile, "bothWays: true}", "bothWays: true}\n      - check: agent-status\n        with: {node: node1}\n        expect: {problems: [\"node (\"]}", 1),
			[]string{`stages[0].steps[1].expect.problems[0]: "node (" is not a regular expression`}},
		{"invalid name", strings.Replace(validFile, "name: my-scenario", "name: My Scenario", 1),
			[]string{`name: "My Scenario" is invalid (want lowercase letters`}},
		{"description of two lines", strings.Replace(validFile, "description: two pods talk across nodes", "description: |\n  two pods\n  talk", 1),
			[]string{"description: want one line"}},

		// references
		{"unknown pod", strings.Replace(validFile, "{from: pod1a, to: pod2a, bothWays", "{from: pod9, to: pod2a, bothWays", 1),
			[]string{`stages[0].steps[0].with.from: "pod9" is not a pod of topology l2-two-node-agent (have: pod1a, pod1b, pod2a, pod2b)`}},
		{"pods on one node where two are wanted", strings.Replace(validFile, "{from: pod1a, to: pod2a}\n        expect", "{from: pod1a, to: pod1b}\n        expect", 1),
			[]string{`stages[0].steps[1].with.to: "pod1b" is on node1, like pod1a: want a pod of another node`}},
		{"unknown catalog topology", strings.Replace(validFile, "topology: l2-two-node-agent", "topology: l2-three-node", 1),
			[]string{`stages[0].topology: unknown catalog topology "l2-three-node" (have: `, " l2-two-node-agent, "}},
		{"unknown catalog config", strings.Replace(validFile, "config: native-routing", "config: native", 1),
			[]string{`stages[0].config: unknown catalog cilium-config "native" (have: `, " native-routing, ", "or {data: {...}})"}},
		{"file reference in the embedded catalog", strings.Replace(validFile, "config: native-routing", "config: ./my-config.yaml", 1),
			[]string{`stages[0].config: "./my-config.yaml": the embedded catalog names catalog cilium-configs, not files`}},
		{"unknown service", strings.Replace(validFile, "bothWays: true}", "bothWays: true}\n      - check: service-echo\n        with: {from: pod1a, services: [web]}", 1),
			[]string{`stages[0].steps[1].with.services[0]: "web" is not a service of this stage (have: none)`}},

		// values that contradict each other or what they name
		{"inline topology invalid", strings.Replace(validFile, "    topology: l2-two-node-agent", inlineTopology("        internalInterface: eth7\n"), 1),
			[]string{`stages[0].topology.nodes[0].internalInterface: "eth7" is not an interface of node "node1"`}},
		{"inline config invalid", strings.Replace(validFile, "config: native-routing", "config: {data: {routing-mode: warp}}", 1),
			[]string{"stages[0].config.data.routing-mode:", "warp"}},
		{"config for a topology without agents", strings.Replace(strings.Replace(validFile, "l2-two-node-agent", "l2-two-node", 1), "      - check: mtu-sweep\n        with: {from: pod1a, to: pod2a}\n        expect: {routeMTU: 1500}\n", "", 1),
			[]string{"stages[0].config: topology l2-two-node plumbs its pods itself (podNetwork: kernel)"}},
		{"service without nodePort", strings.Replace(validFile, "    steps:", `    services:
      - {name: web, type: NodePort, clusterIP: 10.96.0.10, port: 80, protocol: TCP, backends: [{pod: pod1b, port: 8080}]}
    steps:`, 1),
			[]string{"stages[0].services[0].nodePort: want one for NodePort and LoadBalancer services and none for ClusterIP"}},
		{"service backend of an unknown pod", strings.Replace(validFile, "    steps:", `    services:
      - {name: web, type: ClusterIP, clusterIP: 10.96.0.10, port: 80, protocol: TCP, backends: [{pod: pod7, port: 8080}]}
    steps:`, 1),
			[]string{`stages[0].services[0].backends[0].pod: "pod7" is not a pod of topology l2-two-node-agent`}},
		{"service-echo of a whoami service", strings.Replace(validFile, "    steps:", `    services:
      - {name: web, type: ClusterIP, clusterIP: 10.96.0.10, port: 80, protocol: TCP, server: whoami, backends: [{pod: pod1b, port: 8080}]}
    steps:
      - check: service-echo
        with: {from: pod1a, services: [web]}`, 1),
			[]string{"stages[0].steps[0].with.services[0]: service web runs server whoami: want echo"}},
		{"same-node path across nodes", strings.Replace(validFile, "bothWays: true}", "bothWays: true}\n      - check: same-node-path\n        with: {from: pod1a, to: pod2a}\n        expect: {hostRouting: BPF}", 1),
			[]string{`stages[0].steps[1].with.to: "pod2a" is on node2: want another pod of pod1a's node node1`}},

		// every problem at once
		{"several problems", strings.Replace(strings.Replace(validFile, "routeMTU: 1500", "routeMTU: 1", 1), "from: pod1a, to: pod2a, bothWays", "from: podX, to: pod2a, bothWays", 1),
			[]string{`stages[0].steps[0].with.from: "podX" is not a pod`, "stages[0].steps[1].expect.routeMTU: 1 is out of range"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := scenarios.ParseScenario([]byte(tt.file), "")
			if tt.want == nil {
				if err != nil {
					t.Fatalf("want valid, got:\n%v", err)
				}
				if f.Name != "my-scenario" || len(f.Stages) != 1 || len(f.Stages[0].Steps) != 2 {
					t.Fatalf("parsed %+v", f)
				}
				return
			}
			if err == nil {
				t.Fatalf("want an error with %q, got none", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q; got:\n%v", w, err)
				}
			}
		})
	}
}

// inlineTopology is l2-two-node-agent written inline, with extra lines in its first node.
func inlineTopology(extra string) string {
	return `    topology:
      name: inline
      podNetwork: agent
      segments: [{name: lan, cidr: 10.0.0.0/24}]
      nodes:
      - name: node1
        podCIDR: 10.244.1.0/24
` + extra + `        interfaces: [{segment: lan}]
        pods: [{name: pod1a}, {name: pod1b}]
      - name: node2
        podCIDR: 10.244.2.0/24
        interfaces: [{segment: lan}]
        pods: [{name: pod2a}, {name: pod2b}]`
}

// A user's file: inline topology, a config file beside it, defaults applied.
func TestParseScenarioFiles(t *testing.T) {
	dir := t.TempDir()
	cfg := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cilium-config, namespace: kube-system}\ndata:\n  routing-mode: tunnel\n  tunnel-protocol: geneve\n"
	if err := os.WriteFile(filepath.Join(dir, "geneve.yaml"), []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	file := strings.Replace(strings.Replace(validFile, "    topology: l2-two-node-agent", inlineTopology(""), 1), "config: native-routing", "config: geneve.yaml", 1) +
		"      - do: restart-agents\n        with: {config: {data: {routing-mode: native, ipv4-native-routing-cidr: 10.244.0.0/16}}}\n" +
		"      - check: ping-during-restart\n        with: {from: pod1a, to: pod2b, kill: [node2]}\n"
	p := filepath.Join(dir, "mine.yaml")
	if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := scenarios.LoadScenario(p)
	if err != nil {
		t.Fatal(err)
	}
	st := f.Stages[0]
	if st.Topology.Name != "inline" || st.Topology.Spec.PodNetwork != "agent" {
		t.Errorf("topology %q %+v", st.Topology.Name, st.Topology.Spec)
	}
	if st.Config.Name != "geneve.yaml" || st.Config.Config == nil || st.Config.Config.TunnelProtocol != "geneve" {
		t.Errorf("config %q %+v", st.Config.Name, st.Config.Config)
	}
	// The parameters are the step package's own types: read them by field name.
	restart := reflect.ValueOf(st.Steps[2].With).FieldByName("Config").Interface().(scenarios.ConfigRef)
	if restart.Name != "inline" || !strings.Contains(string(restart.Data), "routing-mode: native") {
		t.Errorf("restart config %q %s", restart.Name, restart.Data)
	}
	ping := reflect.ValueOf(st.Steps[3].With)
	if ping.FieldByName("Count").Int() != 300 || ping.FieldByName("Interval").Interface() != 10*time.Millisecond || ping.FieldByName("Kill").Len() != 1 {
		t.Errorf("defaults not applied: %+v", ping)
	}
	if f.Source != p {
		t.Errorf("source %q", f.Source)
	}

	// A file reference that is not there names the file.
	bad := strings.Replace(file, "config: geneve.yaml", "config: vxlan.yaml", 1)
	if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := scenarios.LoadScenario(p); err == nil || !strings.Contains(err.Error(), "stages[0].config: read cilium-config file:") {
		t.Errorf("missing config file: %v", err)
	}
}

// The catalog is scenario files: each parses, is named after its file, has labels, and
// the scenarios of the issues are there.
func TestCatalog(t *testing.T) {
	want := map[string]int{ // stages
		"redirect-peer": 1, "native-routing": 2, "vxlan-mtu": 5, "geneve-mtu": 3, "services-snat": 1, "kpr-semantics": 2, "kpr-udp": 2, "kpr-addresses": 2, "maglev-consistency": 2, "dsr": 1, "dsr-geneve": 1, "hybrid": 1, "xdp-nodeport": 4, "fib-cache": 2,
		"three-leg-native": 1, "three-leg-vxlan": 1, "three-leg-geneve": 1, "path-expectations": 2, "impaired-links": 3,
		"socket-lb": 3, "masquerade": 4, "egress-gateway": 2, "bgp-native": 6, "calico-modes": 3, "policy": 3, "kvstore": 1, "etcd-outage": 1, "clustermesh": 2, "hubble": 1,
	}
	entries, err := os.ReadDir("catalog")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range entries {
		data, _ := os.ReadFile(filepath.Join("catalog", e.Name()))
		f, err := scenarios.ParseScenario(data, "")
		if err != nil {
			t.Errorf("catalog/%s:\n%v", e.Name(), err)
			continue
		}
		if f.Name+".yaml" != e.Name() {
			t.Errorf("catalog/%s: name %q", e.Name(), f.Name)
		}
		if len(f.Labels) == 0 {
			t.Errorf("catalog/%s: no labels", e.Name())
		}
		if n, ok := want[f.Name]; ok && len(f.Stages) != n {
			t.Errorf("%s: %d stages, want %d", f.Name, len(f.Stages), n)
		}
		seen[f.Name] = true
	}
	for n := range want {
		if !seen[n] {
			t.Errorf("scenario %s missing from the catalog", n)
		}
		s, err := scenarios.Lookup(n)
		if err != nil || s.Run == nil || len(s.Labels) == 0 {
			t.Errorf("Lookup(%s): %v %+v", n, err, s)
		}
	}
}

// Every step kind says what it does and what each of its values means.
func TestStepKindDocs(t *testing.T) {
	for _, k := range scenarios.StepKinds() {
		if k.Summary == "" {
			t.Errorf("step kind %s: no summary", k.Name)
		}
		for _, p := range append(append([]scenarios.ParamDoc{}, k.With...), k.Expect...) {
			if p.Doc == "" {
				t.Errorf("step kind %s: %s has no doc", k.Name, p.Name)
			}
			if strings.Contains(p.Type, "struct") {
				t.Errorf("step kind %s: %s has type %q: name it in typeName", k.Name, p.Name, p.Type)
			}
		}
	}
}

// The generic checks are a scenario file built in code from the user's files.
func TestGeneric(t *testing.T) {
	s, err := scenarios.Generic("../topology/catalog/l2-two-node-agent.yaml", "../datapath/config/configs/vxlan.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "l2-agent" || !strings.Contains(s.Description, "../datapath/config/configs/vxlan.yaml") || s.Labels[0] != "generic" {
		t.Errorf("%+v", s)
	}
	if _, err := scenarios.Generic("../topology/catalog/l2-two-node.yaml", "../datapath/config/configs/vxlan.yaml"); err == nil || !strings.Contains(err.Error(), "plumbs its pods itself") {
		t.Errorf("config for a kernel topology: %v", err)
	}
	if _, err := scenarios.Generic("../topology/catalog/l2-two-node.yaml", ""); err != nil {
		t.Errorf("kernel topology without config: %v", err)
	}
}

// The README's example is a valid scenario file, and its table names every step kind.
func TestReadme(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	_, rest, ok := strings.Cut(readme, "```yaml\n# small-underlay.yaml")
	if !ok {
		t.Fatal("README.md lacks the small-underlay example")
	}
	example, _, _ := strings.Cut(rest, "```")
	f, err := scenarios.ParseScenario([]byte("#"+example), "")
	if err != nil {
		t.Fatalf("README example:\n%v", err)
	}
	if f.Name != "small-underlay" || len(f.Stages[0].Steps) != 5 {
		t.Errorf("README example parsed as %+v", f)
	}
	for _, k := range scenarios.StepKinds() {
		if !strings.Contains(readme, "`"+k.Name+"`") {
			t.Errorf("README.md does not name step kind %s", k.Name)
		}
	}
}

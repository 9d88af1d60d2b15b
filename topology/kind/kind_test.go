// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
	"sigs.k8s.io/yaml"

	"podpath/datapath/agent"
	"podpath/datapath/cni"
	"podpath/datapath/config"
	"podpath/datapath/k8swatch"
	"podpath/topology"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

const (
	catalog      = "../catalog/"
	nativeConfig = "../../datapath/config/configs/native-routing.yaml"
)

func loadSpec(t *testing.T, name string) *topology.Spec {
	t.Helper()
	s, err := topology.Load(catalog + name)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func parseSpec(t *testing.T, text string) *topology.Spec {
	t.Helper()
	s, err := topology.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func nativeKeys(t *testing.T) map[string]string {
	t.Helper()
	data, err := ReadCiliumConfig(nativeConfig)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// golden compares got with testdata/name, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./topology/kind/ -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the output (go test ./topology/kind/ -update rewrites it):\n%s", path, lineDiff(string(want), string(got)))
	}
}

// lineDiff shows the first differing lines.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return "line " + strconv.Itoa(i+1) + ":\n  want: " + wl + "\n  got:  " + gl
		}
	}
	return "(same lines, different bytes)"
}

var servicesFixture = []Service{
	{Name: "echo", Ports: []ServicePort{{Port: 80, TargetPort: 8080}}, Backends: []string{"pod1a", "pod2a"}},
	{Name: "echo-np", Type: ServiceNodePort, ClusterIP: "10.96.0.50", ExternalTrafficPolicy: "Local",
		Ports:    []ServicePort{{Name: "http", Port: 80, NodePort: 30080}, {Name: "dns", Protocol: "UDP", Port: 53}},
		Backends: []string{"pod2b"}},
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name     string
		topology string
		opts     func(t *testing.T) Options
	}{
		{"l2-two-node-agent", "l2-two-node-agent.yaml", func(t *testing.T) Options {
			return Options{CiliumConfig: nativeKeys(t)}
		}},
		{"l2-two-node-agent-services", "l2-two-node-agent.yaml", func(t *testing.T) Options {
			return Options{CiliumConfig: nativeKeys(t), Services: servicesFixture, ClusterName: "svc",
				AgentImage: "registry.example/podpath-agent:v1", NodeImage: "kindest/node:v1.33.1"}
		}},
		{"l2-two-node-agent-defaults", "l2-two-node-agent.yaml", func(t *testing.T) Options { return Options{} }},
		// The Service semantics of issue 12 the watcher translates: ETP Local with a
		// health check node port, ITP Local, ClientIP affinity with its timeout.
		{"l2-two-node-agent-semantics", "l2-two-node-agent.yaml", func(t *testing.T) Options {
			return Options{CiliumConfig: nativeKeys(t), ClusterName: "sem", Services: []Service{
				{Name: "etp-local", Type: ServiceNodePort, ClusterIP: "10.96.1.13", ExternalTrafficPolicy: "Local", HealthCheckNodePort: 32013,
					Ports: []ServicePort{{Port: 80, TargetPort: 8081, NodePort: 31013}}, Backends: []string{"pod2a", "pod2b"}},
				{Name: "itp-local", ClusterIP: "10.96.1.16", InternalTrafficPolicy: "Local",
					Ports: []ServicePort{{Port: 80, TargetPort: 8083}}, Backends: []string{"pod1b", "pod2a"}},
				{Name: "affinity", ClusterIP: "10.96.1.12", SessionAffinity: "ClientIP", SessionAffinityTimeoutSeconds: 2,
					Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: 8080}, {Name: "dns", Protocol: "UDP", Port: 53}}, Backends: []string{"pod1b", "pod2a", "pod2b"}},
				{Name: "affinity-default", ClusterIP: "10.96.1.19", SessionAffinity: "ClientIP",
					Ports: []ServicePort{{Port: 80, TargetPort: 8087}}, Backends: []string{"pod1b"}},
			}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPlan(loadSpec(t, tt.topology), tt.opts(t))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := p.KindConfigYAML()
			if err != nil {
				t.Fatal(err)
			}
			man, err := p.Manifests()
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tt.name+".kind-config.golden", cfg)
			golden(t, tt.name+".manifests.golden", man)

			// Deterministic: a second plan renders the same bytes.
			p2, _ := NewPlan(loadSpec(t, tt.topology), tt.opts(t))
			cfg2, _ := p2.KindConfigYAML()
			man2, _ := p2.Manifests()
			if !bytes.Equal(cfg, cfg2) || !bytes.Equal(man, man2) {
				t.Error("two plans of the same spec render different bytes")
			}
		})
	}
}

func TestKindConfigDecodes(t *testing.T) {
	p, err := NewPlan(loadSpec(t, "l2-two-node-agent.yaml"), Options{CiliumConfig: nativeKeys(t)})
	if err != nil {
		t.Fatal(err)
	}
	data, err := p.KindConfigYAML()
	if err != nil {
		t.Fatal(err)
	}
	var c v1alpha4.Cluster
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		t.Fatalf("kind config does not decode into v1alpha4.Cluster: %v", err)
	}
	if c.Kind != "Cluster" || c.APIVersion != "kind.x-k8s.io/v1alpha4" || c.Name != "l2-agent" {
		t.Errorf("type/name = %s %s %s", c.Kind, c.APIVersion, c.Name)
	}
	n := c.Networking
	if !n.DisableDefaultCNI || n.KubeProxyMode != "none" || n.PodSubnet != "10.244.0.0/22" || n.ServiceSubnet != "10.96.0.0/16" || n.IPFamily != v1alpha4.IPv4Family {
		t.Errorf("networking = %+v", n)
	}
	var roles, labels []string
	for _, node := range c.Nodes {
		roles = append(roles, string(node.Role))
		labels = append(labels, node.Labels[LabelNode])
	}
	if want := []string{"control-plane", "worker", "worker"}; !reflect.DeepEqual(roles, want) {
		t.Errorf("roles = %v, want %v", roles, want)
	}
	if want := []string{"", "node1", "node2"}; !reflect.DeepEqual(labels, want) {
		t.Errorf("podpath.io/node labels = %v, want %v", labels, want)
	}
	if len(c.KubeadmConfigPatches) != 1 {
		t.Fatalf("kubeadmConfigPatches = %q", c.KubeadmConfigPatches)
	}
	var patch struct {
		Kind              string
		ControllerManager struct{ ExtraArgs map[string]string } `json:"controllerManager"`
	}
	if err := yaml.UnmarshalStrict([]byte(c.KubeadmConfigPatches[0]), &patch); err != nil {
		t.Fatal(err)
	}
	if patch.Kind != "ClusterConfiguration" || patch.ControllerManager.ExtraArgs["allocate-node-cidrs"] != "false" {
		t.Errorf("patch = %+v", patch)
	}
	want := []NodeMapping{
		{Node: "node1", KindNode: "l2-agent-worker", Role: RoleWorker, PodCIDR: netip.MustParsePrefix("10.244.1.0/24")},
		{Node: "node2", KindNode: "l2-agent-worker2", Role: RoleWorker, PodCIDR: netip.MustParsePrefix("10.244.2.0/24")},
	}
	if !reflect.DeepEqual(p.Nodes, want) {
		t.Errorf("nodes = %+v, want %+v", p.Nodes, want)
	}
	if cp := p.ControlPlane; cp.KindNode != "l2-agent-control-plane" || cp.PodCIDR != netip.MustParsePrefix("10.244.0.0/24") {
		t.Errorf("control plane = %+v", cp)
	}
}

// docs splits a YAML stream into its documents, decoded.
func docs(t *testing.T, stream []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, d := range strings.Split(string(stream), "\n---\n") {
		var m map[string]any
		if err := yaml.UnmarshalStrict([]byte(d), &m); err != nil {
			t.Fatalf("document does not parse: %v\n%s", err, d)
		}
		out = append(out, m)
	}
	return out
}

func get(m any, path ...any) any {
	for _, k := range path {
		switch k := k.(type) {
		case string:
			mm, _ := m.(map[string]any)
			m = mm[k]
		case int:
			l, _ := m.([]any)
			if k >= len(l) {
				return nil
			}
			m = l[k]
		}
	}
	return m
}

func TestManifests(t *testing.T) {
	keys := nativeKeys(t)
	p, err := NewPlan(loadSpec(t, "l2-two-node-agent.yaml"), Options{CiliumConfig: keys, Services: servicesFixture})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := p.Manifests()
	if err != nil {
		t.Fatal(err)
	}
	ds := docs(t, stream)
	var kinds []string
	byName := map[string]map[string]any{}
	for _, d := range ds {
		k := d["kind"].(string) + "/" + get(d, "metadata", "name").(string)
		kinds = append(kinds, k)
		byName[k] = d
	}
	want := []string{
		"Namespace/podpath-system", "ServiceAccount/podpath-agent", "ClusterRole/podpath-agent",
		"ClusterRoleBinding/podpath-agent", "ConfigMap/cilium-config", "ConfigMap/podpath-agent",
		"DaemonSet/podpath-agent", "Namespace/podpath-scenario",
		"Pod/pod1a", "Pod/pod1b", "Pod/pod2a", "Pod/pod2b", "Service/echo", "Service/echo-np",
	}
	if !reflect.DeepEqual(kinds, want) {
		t.Fatalf("objects = %v\nwant %v", kinds, want)
	}

	// cilium-config: the user's keys as given.
	cm := byName["ConfigMap/cilium-config"]
	if get(cm, "metadata", "namespace") != SystemNamespace {
		t.Errorf("cilium-config namespace = %v", get(cm, "metadata", "namespace"))
	}
	gotData := map[string]string{}
	for k, v := range cm["data"].(map[string]any) {
		gotData[k] = v.(string)
	}
	if !reflect.DeepEqual(gotData, keys) {
		t.Errorf("cilium-config data = %v, want %v", gotData, keys)
	}

	// The agent's --config file parses to the same Config as the original file.
	files := byName["ConfigMap/podpath-agent"]["data"].(map[string]any)
	got, _, err := config.Parse([]byte(files[agentConfigKey].(string)))
	if err != nil {
		t.Fatal(err)
	}
	orig, _, err := config.ParseFile(nativeConfig)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, orig) {
		t.Errorf("agent config = %+v\nwant %+v", got, orig)
	}
	for node, cidr := range map[string]string{"l2-agent-control-plane": "10.244.0.0/24", "l2-agent-worker": "10.244.1.0/24", "l2-agent-worker2": "10.244.2.0/24"} {
		if files[podCIDRKeyPrefix+node] != cidr {
			t.Errorf("%s%s = %v, want %s", podCIDRKeyPrefix, node, files[podCIDRKeyPrefix+node], cidr)
		}
	}

	// The DaemonSet.
	d := byName["DaemonSet/podpath-agent"]
	spec := get(d, "spec", "template", "spec")
	if get(spec, "hostNetwork") != true || get(spec, "containers", 0, "securityContext", "privileged") != true {
		t.Error("agent is not hostNetwork and privileged")
	}
	if get(spec, "containers", 0, "image") != DefaultAgentImage {
		t.Errorf("image = %v", get(spec, "containers", 0, "image"))
	}
	if get(spec, "containers", 0, "env", 0, "valueFrom", "fieldRef", "fieldPath") != "spec.nodeName" {
		t.Error("NODE_NAME does not come from spec.nodeName")
	}
	// The watcher reaches the API server directly, not through the kubernetes Service.
	env := map[string]any{}
	for _, e := range get(spec, "containers", 0, "env").([]any) {
		env[get(e, "name").(string)] = get(e, "value")
	}
	if env["KUBERNETES_SERVICE_HOST"] != "l2-agent-control-plane" || env["KUBERNETES_SERVICE_PORT"] != "6443" {
		t.Errorf("agent env = %v, want the control plane's API server", env)
	}
	if get(spec, "initContainers", 1, "name") != "install-cni" || get(spec, "initContainers", 1, "volumeMounts", 0, "mountPath") != "/host/opt/cni/bin" {
		t.Errorf("init containers = %v", get(spec, "initContainers"))
	}
	hostPaths := map[string]string{}
	for _, v := range get(spec, "volumes").([]any) {
		if hp, ok := get(v, "hostPath", "path").(string); ok {
			hostPaths[get(v, "name").(string)] = hp
		}
	}
	if hostPaths["cni-bin"] != CNIBinDir || hostPaths["cni-conf"] != CNIConfDir {
		t.Errorf("hostPath volumes = %v", hostPaths)
	}
	mounts := map[string]string{}
	for _, m := range get(spec, "containers", 0, "volumeMounts").([]any) {
		prop, _ := get(m, "mountPropagation").(string)
		mounts[get(m, "mountPath").(string)] = prop
	}
	for path, prop := range map[string]string{"/sys/fs/bpf": "Bidirectional", AgentStateDir: "", "/var/run/netns": "HostToContainer", "/host/proc": "", agentFiles: "", "/host/etc/cni/net.d": ""} {
		if got, ok := mounts[path]; !ok || got != prop {
			t.Errorf("mount %s: present %v, propagation %q, want %q", path, ok, got, prop)
		}
	}

	// Pods pinned to their kind nodes, with their topology addresses.
	for pod, want := range map[string][2]string{
		"pod1a": {"l2-agent-worker", "10.244.1.10"}, "pod1b": {"l2-agent-worker", "10.244.1.11"},
		"pod2a": {"l2-agent-worker2", "10.244.2.10"}, "pod2b": {"l2-agent-worker2", "10.244.2.11"},
	} {
		d := byName["Pod/"+pod]
		if get(d, "spec", "nodeName") != want[0] || get(d, "metadata", "annotations", AnnotationAddress) != want[1] {
			t.Errorf("pod %s: nodeName %v address %v, want %v", pod, get(d, "spec", "nodeName"), get(d, "metadata", "annotations", AnnotationAddress), want)
		}
		if get(d, "spec", "containers", 0, "image") != DefaultPodImage {
			t.Errorf("pod %s image = %v", pod, get(d, "spec", "containers", 0, "image"))
		}
	}
	// Services select their backends by label.
	if get(byName["Pod/pod1a"], "metadata", "labels", serviceLabelPrefix+"echo") != "true" ||
		get(byName["Pod/pod1b"], "metadata", "labels", serviceLabelPrefix+"echo") != nil {
		t.Error("service backend labels are wrong")
	}
	np := byName["Service/echo-np"]
	if get(np, "spec", "type") != "NodePort" || get(np, "spec", "ports", 0, "nodePort") != float64(30080) || get(np, "spec", "ports", 1, "targetPort") != float64(53) {
		t.Errorf("echo-np = %v", np["spec"])
	}
}

func TestNoServicesNoConfig(t *testing.T) {
	p, err := NewPlan(loadSpec(t, "l2-two-node-agent.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	stream, err := p.Manifests()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range docs(t, stream) {
		if d["kind"] == "Service" {
			t.Errorf("a Service was generated without Options.Services: %v", d)
		}
		if d["kind"] == "ConfigMap" && get(d, "metadata", "name") == AgentName {
			if _, ok := get(d, "data").(map[string]any)[agentConfigKey]; ok {
				t.Error("podpath-agent ConfigMap carries a cilium-config.yaml without keys")
			}
		}
	}
	if strings.Contains(agentScript(false), "--config") {
		t.Error("the agent gets --config without keys")
	}
}

// TestAgentScript runs the agent container's script with a fake podpath-agent.
func TestAgentScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	files := filepath.Join(dir, "files")
	bin := filepath.Join(dir, "bin")
	for _, d := range []string{files, bin} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(bin, "podpath-agent"), []byte("#!/bin/sh\nprintf '%s\\n' \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A ConfigMap volume file has no trailing newline.
	if err := os.WriteFile(filepath.Join(files, podCIDRKeyPrefix+"c-worker2"), []byte("10.244.2.0/24"), 0o644); err != nil {
		t.Fatal(err)
	}
	script := strings.ReplaceAll(agentScript(true), agentFiles, files)
	runScript := func(node string) (string, error) {
		cmd := exec.Command(sh, "-c", script)
		cmd.Env = []string{"PATH=" + bin + ":/usr/bin:/bin", "NODE_NAME=" + node}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := runScript("c-worker2")
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := strings.Join([]string{"run", "--node", "c-worker2", "--pod-cidr", "10.244.2.0/24", "--devices", "eth0",
		"--state-dir", AgentStateDir, "--bpffs", AgentBPFFS, "--k8s", "--cni-conf", "/host/etc/cni/net.d/05-podpath.conflist",
		"--config", files + "/" + agentConfigKey}, "\n") + "\n"
	if out != want {
		t.Errorf("agent argv:\n%s\nwant:\n%s", out, want)
	}
	out, err = runScript("c-worker9")
	if err == nil || !strings.Contains(out, "no PodCIDR for node c-worker9") {
		t.Errorf("missing PodCIDR: err %v, output %q", err, out)
	}
}

// TestInstallCNIScript runs the install-cni init container's script on a fake node:
// podpath-cni lands in the CNI folder, replacing an older one, with no temporary left.
func TestInstallCNIScript(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "image-bin"), filepath.Join(dir, "node-cni-bin")
	for _, d := range []string{src, dst} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(src, "podpath-cni"), []byte("#!/bin/sh\necho new\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dst, "podpath-cni"), []byte("old"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := strings.NewReplacer("/usr/local/bin", src, "/host/opt/cni/bin", dst).Replace(installCNIScript())
	if out, err := exec.Command(sh, "-c", script).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	out, err := exec.Command(filepath.Join(dst, "podpath-cni")).Output()
	if err != nil || string(out) != "new\n" {
		t.Errorf("installed podpath-cni says %q, %v", out, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dst, ".*")); len(left) != 0 {
		t.Errorf("left behind: %v", left)
	}
}

// The kind pods' address annotation is the one the agent's watcher reads.
func TestAnnotationAddress(t *testing.T) {
	if AnnotationAddress != k8swatch.AnnotationAddress {
		t.Errorf("kind.AnnotationAddress %q != k8swatch.AnnotationAddress %q", AnnotationAddress, k8swatch.AnnotationAddress)
	}
	if cni.DefaultAgentSocket != agent.Socket(AgentStateDir) {
		t.Errorf("podpath-cni's default socket %s is not the DaemonSet agent's %s", cni.DefaultAgentSocket, agent.Socket(AgentStateDir))
	}
}

func TestUnsupported(t *testing.T) {
	tests := []struct {
		name   string
		spec   func(t *testing.T) *topology.Spec
		mtu    int
		fields []string
		golden string
	}{
		{
			name: "routed-two-node", spec: func(t *testing.T) *topology.Spec { return loadSpec(t, "routed-two-node.yaml") },
			fields: []string{"podNetwork", "podRoutes", "segments", "segments[1].mtu", "routers[0]"},
			golden: "routed-two-node.unsupported.golden",
		},
		{
			name: "routed-two-node-agent", spec: func(t *testing.T) *topology.Spec { return loadSpec(t, "routed-two-node-agent.yaml") },
			fields: []string{"podRoutes", "segments", "segments[1].mtu", "routers[0]"},
		},
		{
			name: "l2-two-node (kernel pods)", spec: func(t *testing.T) *topology.Spec { return loadSpec(t, "l2-two-node.yaml") },
			fields: []string{"podNetwork", "podRoutes"},
		},
		{
			name: "l2-two-node-agent on a 1450 network", spec: func(t *testing.T) *topology.Spec { return loadSpec(t, "l2-two-node-agent.yaml") },
			mtu: 1450, fields: []string{"segments[0].mtu"},
		},
		{
			name: "node interfaces", spec: func(t *testing.T) *topology.Spec {
				return parseSpec(t, `
name: ifs
podNetwork: agent
segments: [{name: lan, cidr: 10.0.0.0/24}, {name: wan, cidr: 10.0.1.0/24}]
clients: [{name: c1, interfaces: [{segment: lan}]}]
nodes:
  - name: n1
    podCIDR: 10.244.1.0/24
    interfaces: [{name: ens3, segment: lan, address: 10.0.0.5, mtu: 9000}, {segment: wan}]
`)
			},
			fields: []string{"segments", "clients[0]", "nodes[0].interfaces", "nodes[0].interfaces[0].name", "nodes[0].interfaces[0].address", "nodes[0].interfaces[0].mtu"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPlan(tt.spec(t), Options{NetworkMTU: tt.mtu})
			if !errors.Is(err, ErrUnsupported) {
				t.Fatalf("err = %v, want ErrUnsupported", err)
			}
			var ue *UnsupportedError
			if !errors.As(err, &ue) {
				t.Fatalf("err %T is not an *UnsupportedError", err)
			}
			var fields []string
			for _, f := range ue.Features {
				fields = append(fields, f.Field)
			}
			if !reflect.DeepEqual(fields, tt.fields) {
				t.Errorf("fields = %q, want %q", fields, tt.fields)
			}
			if tt.golden != "" {
				golden(t, tt.golden, []byte(err.Error()+"\n"))
			}
			if err2 := CheckSupported(tt.spec(t), tt.mtu); err2 == nil || err2.Error() != err.Error() {
				t.Errorf("CheckSupported = %v, want the same error as NewPlan", err2)
			}
		})
	}
	if err := CheckSupported(loadSpec(t, "l2-two-node-agent.yaml"), 0); err != nil {
		t.Errorf("l2-two-node-agent: %v", err)
	}
}

func TestPodSubnet(t *testing.T) {
	tests := []struct {
		nodes    []string
		explicit string
		subnet   string
		cp       string
		err      string
	}{
		{nodes: []string{"10.244.1.0/24", "10.244.2.0/24"}, subnet: "10.244.0.0/22", cp: "10.244.0.0/24"},
		{nodes: []string{"10.244.0.0/24", "10.244.1.0/24"}, subnet: "10.244.0.0/22", cp: "10.244.2.0/24"},
		{nodes: []string{"10.244.5.0/24"}, subnet: "10.244.4.0/23", cp: "10.244.4.0/24"},
		{nodes: []string{"10.1.0.0/16", "10.2.0.0/24"}, subnet: "10.0.0.0/14", cp: "10.0.0.0/16"},
		{nodes: []string{"10.244.0.0/24", "10.244.1.0/24", "10.244.2.0/24", "10.244.3.0/24"}, subnet: "10.244.0.0/21", cp: "10.244.4.0/24"},
		{nodes: []string{"10.244.1.0/24", "10.244.2.0/24"}, explicit: "10.244.0.0/16", subnet: "10.244.0.0/16", cp: "10.244.0.0/24"},
		{nodes: []string{"10.244.1.0/24", "10.245.2.0/24"}, explicit: "10.244.0.0/16", err: "does not contain node PodCIDR 10.245.2.0/24"},
		{nodes: []string{"10.244.0.0/24", "10.244.1.0/24"}, explicit: "10.244.0.0/23", err: "no free /24 left"},
	}
	for _, tt := range tests {
		var ps []netip.Prefix
		for _, n := range tt.nodes {
			ps = append(ps, netip.MustParsePrefix(n))
		}
		subnet, cp, err := podSubnet(ps, tt.explicit)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v %q: err %v, want %q", tt.nodes, tt.explicit, err, tt.err)
			}
			continue
		}
		if err != nil || subnet.String() != tt.subnet || cp.String() != tt.cp {
			t.Errorf("%v %q = %v %v %v, want %s %s", tt.nodes, tt.explicit, subnet, cp, err, tt.subnet, tt.cp)
		}
	}
}

func TestPlanErrors(t *testing.T) {
	spec := func(t *testing.T) *topology.Spec { return loadSpec(t, "l2-two-node-agent.yaml") }
	tests := []struct {
		name string
		opts Options
		want []string
	}{
		{"service subnet overlaps", Options{ServiceSubnet: "10.244.0.0/16"}, []string{"service subnet 10.244.0.0/16 overlaps the pod subnet 10.244.0.0/22"}},
		{"bad cluster name", Options{ClusterName: "Not_OK"}, []string{`cluster name "Not_OK"`}},
		{"bad cilium-config", Options{CiliumConfig: map[string]string{"routing-mode": "bogus"}}, []string{"cilium-config: ", "routing-mode"}},
		{"bad services", Options{Services: []Service{
			{Name: "a", Type: "LoadBalancer", Ports: []ServicePort{{Port: 0, NodePort: 30001}}, Backends: []string{"nope"}},
			{Name: "b", ClusterIP: "10.0.0.1", Ports: []ServicePort{{Port: 80}, {Port: 81, Protocol: "SCTP"}}},
		}}, []string{
			`services[0].type: "LoadBalancer" is not one of`, "services[0].ports[0].port: 0 is outside",
			"services[0].ports[0].nodePort: set on a LoadBalancer service", `services[0].backends[0]: "nope" is not a pod`,
			`services[1].clusterIP: "10.0.0.1" is not an address inside the service subnet 10.96.0.0/16`,
			"services[1].ports[0].name: required", `services[1].ports[1].protocol: "SCTP"`, "services[1].backends: at least one",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewPlan(spec(t), tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestUpWithoutDocker(t *testing.T) {
	if CheckDocker(context.Background()) == nil {
		t.Skip("a Docker engine answers here: Up would create a real cluster")
	}
	out, _ := exec.Command("docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput()
	_, err := (&Backend{}).Up(context.Background(), loadSpec(t, "l2-two-node-agent.yaml"))
	if !errors.Is(err, ErrDockerUnavailable) {
		t.Fatalf("err = %v, want ErrDockerUnavailable", err)
	}
	var de *DockerUnavailableError
	if !errors.As(err, &de) {
		t.Fatalf("err %T is not a *DockerUnavailableError", err)
	}
	for _, w := range []string{"kind backend needs a running Docker engine: `docker info` says: ", "use --backend netns, or run where Docker and the kindest/node image are present"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	if said := strings.TrimSpace(string(out)); said != "" && !strings.Contains(err.Error(), said) {
		t.Errorf("error does not quote docker's output %q: %v", said, err)
	}
	t.Log(err)
}

func TestCheckDockerFake(t *testing.T) {
	dir := t.TempDir()
	fake := func(name, script string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
			t.Fatal(err)
		}
		return p
	}
	const noDaemon = "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?"
	tests := []struct {
		name   string
		docker string
		want   string
	}{
		{"client only", fake("d1", "echo '"+noDaemon+"' >&2; exit 1\n"),
			"kind backend needs a running Docker engine: `docker info` says: " + noDaemon + " (this machine has only the Docker client); use --backend netns, or run where Docker and the kindest/node image are present"},
		{"no docker", filepath.Join(dir, "missing"), "(no docker executable found)"},
		{"other failure", fake("d2", "echo 'permission denied while trying to connect' >&2; exit 1\n"), "says: permission denied while trying to connect (docker info failed: exit status 1)"},
		{"engine", fake("d3", "echo 28.2.2\n"), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDocker(context.Background(), tt.docker)
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrDockerUnavailable) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
	// Up: an unsupported spec is reported before Docker is asked; a supported one gets
	// the Docker error.
	b := &Backend{docker: fake("d4", "echo '"+noDaemon+"' >&2; exit 1\n")}
	if _, err := b.Up(context.Background(), loadSpec(t, "routed-two-node.yaml")); !errors.Is(err, ErrUnsupported) {
		t.Errorf("Up(routed) = %v, want ErrUnsupported", err)
	}
	if _, err := b.Up(context.Background(), loadSpec(t, "l2-two-node-agent.yaml")); !errors.Is(err, ErrDockerUnavailable) || !strings.Contains(err.Error(), noDaemon) {
		t.Errorf("Up(l2) = %v, want ErrDockerUnavailable quoting docker", err)
	}
}

func TestClusterNodes(t *testing.T) {
	p, err := NewPlan(loadSpec(t, "l2-two-node-agent.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	addrs := map[string]nodeAddr{}
	for name, out := range map[string]string{"l2-agent-worker": "172.18.0.3/16 ", "l2-agent-worker2": "fc00:f853:ccd:e793::4/64 172.18.0.4/16 "} {
		if addrs[name], err = parseInspect(out); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := parseInspect(" "); err == nil {
		t.Error("parseInspect of nothing: no error")
	}
	nodes, err := topologyNodes(p, addrs)
	if err != nil {
		t.Fatal(err)
	}
	c := &Cluster{name: "l2-agent", Plan: p, spec: p.Spec, nodes: nodes}
	n2, err := c.Node("node2")
	if err != nil {
		t.Fatal(err)
	}
	if n2.InternalIP != netip.MustParseAddr("172.18.0.4") || n2.Interfaces[0].Address != netip.MustParsePrefix("172.18.0.4/16") ||
		n2.Gateway != netip.MustParseAddr("10.244.2.1") || len(n2.Pods) != 2 {
		t.Errorf("node2 = %+v", n2)
	}
	pod, err := c.Pod("pod1b")
	if err != nil || pod.IP != netip.MustParseAddr("10.244.1.11") || pod.Node != "node1" || pod.Gateway != netip.MustParseAddr("10.244.1.1") {
		t.Errorf("pod1b = %+v, %v", pod, err)
	}
	for name, want := range map[string]string{"node1": "l2-agent-worker", "l2-agent-worker2": "l2-agent-worker2", "l2-agent-control-plane": "l2-agent-control-plane"} {
		if got, err := c.KindNode(name); err != nil || got != want {
			t.Errorf("KindNode(%s) = %q %v, want %q", name, got, err, want)
		}
	}
	if _, err := c.Exec(context.Background(), "nope", "true"); !errors.Is(err, topology.ErrNotFound) {
		t.Errorf("Exec(nope) = %v, want ErrNotFound", err)
	}
	if _, err := topologyNodes(p, map[string]nodeAddr{}); err == nil {
		t.Error("topologyNodes without addresses: no error")
	}
}

// What kind cannot do in a member says so, and wraps topology.ErrNotSupported.
func TestClusterUnsupported(t *testing.T) {
	p, err := NewPlan(loadSpec(t, "l2-two-node-agent.yaml"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	var c topology.Cluster = &Cluster{name: "l2-agent", Plan: p, spec: p.Spec}
	_, startErr := c.Start(context.Background(), "node1", "sleep", "1")
	_, mountErr := c.MountBPFFS()
	for what, err := range map[string]error{
		"Do":         c.Do("node1", func() error { return nil }),
		"Start":      startErr,
		"StartCmd":   c.StartCmd("pod1a", exec.Command("true")),
		"MountBPFFS": mountErr,
	} {
		if !errors.Is(err, topology.ErrNotSupported) || !strings.Contains(err.Error(), "kind cluster l2-agent") {
			t.Errorf("%s: %v, want ErrNotSupported naming the cluster", what, err)
		}
	}
	if c.Backend() != "kind" || c.Name() != "l2-agent" || c.RunID() != "" {
		t.Errorf("backend %q name %q run %q", c.Backend(), c.Name(), c.RunID())
	}
}

func TestBackendName(t *testing.T) {
	if got := (&Backend{}).Name(); got != "kind" {
		t.Errorf("Name() = %q", got)
	}
}

// TestSemanticsManifestsTranslate: the Services of the semantics golden, read as the
// API server would store them, reach the agent through the Kubernetes watcher's
// translation with every field of issue 12 they set, and with no warning.
func TestSemanticsManifestsTranslate(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "l2-two-node-agent-semantics.manifests.golden"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]agent.Service{}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		if !strings.Contains(doc, "\nkind: Service\n") {
			continue
		}
		var svc corev1.Service
		if err := yaml.UnmarshalStrict([]byte(doc), &svc); err != nil {
			t.Fatalf("%v in\n%s", err, doc)
		}
		svc.Spec.ClusterIPs = []string{svc.Spec.ClusterIP}
		out, notes := k8swatch.ServicesFromK8s(&svc, nil)
		if len(notes) != 0 {
			t.Errorf("service %s: notes %q", svc.Name, notes)
		}
		for _, s := range out {
			if w := s.Warnings(); len(w) != 0 {
				t.Errorf("service %s: warnings %q", s.Name, w)
			}
			got[s.Name] = s
		}
	}
	check := func(name string, ok bool) {
		if s, found := got[name]; !found || !ok {
			t.Errorf("%s: translated as %+v", name, s)
		}
	}
	etp := got["etp-local.podpath-scenario.80-tcp"]
	check("etp-local.podpath-scenario.80-tcp", etp.ExternalTrafficPolicy == "Local" && etp.HealthCheckNodePort == 32013 && etp.NodePort == 31013)
	itp := got["itp-local.podpath-scenario.80-tcp"]
	check("itp-local.podpath-scenario.80-tcp", itp.InternalTrafficPolicy == "Local")
	for _, n := range []string{"affinity.podpath-scenario.80-tcp", "affinity.podpath-scenario.53-udp"} {
		check(n, got[n].SessionAffinity == agent.AffinityClientIP && got[n].SessionAffinityTimeout == 2)
	}
	def := got["affinity-default.podpath-scenario.80-tcp"]
	check("affinity-default.podpath-scenario.80-tcp", def.SessionAffinity == agent.AffinityClientIP && def.SessionAffinityTimeout == 0)
	if len(got) != 5 {
		t.Errorf("%d services translated, want 5: %v", len(got), got)
	}
}

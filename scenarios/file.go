// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"podpath/datapath/agent"
	"podpath/datapath/config"
	"podpath/datapath/config/configs"
	"podpath/internal/strictyaml"
	"podpath/scenarios/report"
	"podpath/topology"
	"podpath/topology/catalog"
)

// ScenarioFile is a scenario as data, as a scenarios/catalog/<name>.yaml file or a
// user's own file holds it: stages, each a topology with a cilium-config, services
// and steps that drive traffic and check it. The format is described in README.md.
type ScenarioFile struct {
	Name        string      `json:"name" required:"true" doc:"the scenario's name: lowercase letters, digits and '-'"`
	Description string      `json:"description" required:"true" doc:"one line: what the scenario proves"`
	Labels      []string    `json:"labels" doc:"features, for podpath conformance --label and the e2e label filter"`
	Stages      []StageSpec `json:"stages" required:"true" doc:"run one after the other, each on its own topology"`
	// Source is where the scenario came from: catalog/<name>.yaml or the file's path.
	Source string `json:"-"`
}

// StageSpec is one stage: a topology brought up with agents configured by a
// cilium-config, services programmed into them, and steps run in order. The stage's
// topology comes down when its steps are done (unless the run keeps topologies).
type StageSpec struct {
	Name     string        `json:"name" doc:"prefixes the names of the stage's checks (e.g. L2, vxlan on l2-jumbo-agent)"`
	Topology TopologyRef   `json:"topology" required:"true" doc:"a catalog topology name, a file path, or an inline topology spec"`
	Config   ConfigRef     `json:"config" doc:"a catalog cilium-config name, a file path, or {data: {key: value}}; default: Cilium's defaults"`
	Services []ServiceSpec `json:"services" doc:"Services the agents program before the first step"`
	Policies []PolicySpec  `json:"policies" doc:"network policies (CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy objects) the agents program before the first step"`
	// EgressGatewayPolicies need enable-ipv4-egress-gateway in the stage's config.
	EgressGatewayPolicies []EgressGatewayPolicySpec `json:"egressGatewayPolicies" doc:"CiliumEgressGatewayPolicy objects (cilium.io/v2) the agents program before the first step"`
	Steps                 []StepSpec                `json:"steps" required:"true" doc:"run in order; each is {check: KIND, with: {...}, expect: {...}}"`
	// Path is the stage's field path (stages[1]), for messages.
	Path string `json:"-"`
}

// ServiceSpec is a Service as the agents take it (agent.Service), with backends named
// by pod, and the server the harness runs on the backends.
type ServiceSpec struct {
	Name        string        `json:"name" required:"true"`
	Type        string        `json:"type" required:"true" oneOf:"ClusterIP,NodePort,LoadBalancer"`
	ClusterIP   netip.Addr    `json:"clusterIP" required:"true"`
	Port        uint16        `json:"port" required:"true" range:"1..65535"`
	Protocol    string        `json:"protocol" required:"true" oneOf:"TCP,UDP"`
	NodePort    uint16        `json:"nodePort" range:"1..65535" doc:"required for NodePort and LoadBalancer services"`
	ExternalIPs []netip.Addr  `json:"externalIPs"`
	Backends    []BackendSpec `json:"backends" required:"true"`
	Server      string        `json:"server" oneOf:"echo,whoami,none" doc:"what the harness serves on each backend pod's port: echo (the default) sends every message back, whoami answers with the pod's name, none runs nothing"`
	// Service semantics (issue 12); see agent.Service.
	ExternalTrafficPolicy    string         `json:"externalTrafficPolicy" oneOf:"Cluster,Local" doc:"Local: NodePort and external frontends serve this node's backends only, client address kept"`
	InternalTrafficPolicy    string         `json:"internalTrafficPolicy" oneOf:"Cluster,Local" doc:"Local: the ClusterIP serves pods of the same node's backends only"`
	HealthCheckNodePort      uint16         `json:"healthCheckNodePort" range:"1..65535" doc:"with externalTrafficPolicy Local: the agent's kube-proxy health check port"`
	SessionAffinity          string         `json:"sessionAffinity" oneOf:"None,ClientIP" doc:"ClientIP: a client keeps its backend"`
	TimeoutSeconds           uint32         `json:"timeoutSeconds" range:"1..86400" doc:"sessionAffinityConfig.clientIP.timeoutSeconds (default 10800)"`
	LoadBalancerSourceRanges []netip.Prefix `json:"loadBalancerSourceRanges" doc:"clients from outside must come from one of these"`
	TrafficDistribution      string         `json:"trafficDistribution" oneOf:"PreferClose" doc:"PreferClose: each pod backend is hinted for its node's zone (as the EndpointSlice controller does) unless it lists zones"`
	// Cluster mesh (issue 15): in a mesh each cluster's agents get the backends that
	// are pods of their cluster; the annotations make the service global.
	Annotations map[string]string `json:"annotations" doc:"the Service's annotations: service.cilium.io/global, shared, affinity (local, remote, none) or their io.cilium/ spellings"`
}

// BackendSpec is one backend: a pod of the stage's topology or an address.
type BackendSpec struct {
	Pod    PodRef     `json:"pod" doc:"a pod of the topology (or ip)"`
	IP     netip.Addr `json:"ip" doc:"an address (or pod)"`
	Port   uint16     `json:"port" required:"true" range:"1..65535"`
	Weight uint16     `json:"weight"`
	State  string     `json:"state" oneOf:"active,terminating,maintenance"`
	Zones  []string   `json:"zones" doc:"EndpointSlice hints.forZones: nodes of these zones send their flows here (enable-service-topology)"`
}

var scenarioNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

func (f *ScenarioFile) Validate(e strictyaml.FieldErrors) {
	if !scenarioNameRE.MatchString(f.Name) {
		e.Add("name", "%q is invalid (want lowercase letters, digits and '-', starting with a letter)", f.Name)
	}
	if strings.TrimSpace(f.Description) == "" || strings.Contains(strings.TrimSpace(f.Description), "\n") {
		e.Add("description", "want one line, got %q", f.Description)
	}
	for i, l := range f.Labels {
		if !scenarioNameRE.MatchString(l) {
			e.Add(fmt.Sprintf("labels[%d]", i), "%q is invalid (want lowercase letters, digits and '-')", l)
		}
	}
	if len(f.Stages) == 0 {
		e.Add("stages", "want at least one stage")
	}
}

func (s *StageSpec) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	s.Path = path
	st := stateOf(d)
	outer := st.stage
	st.stage = s
	d.DecodeStruct(n, strictyaml.Elem(s), path)
	st.stage = outer
}

func (s *StageSpec) Validate(e strictyaml.FieldErrors) {
	if len(s.Steps) == 0 {
		e.Add("steps", "want at least one step")
	}
	agents := s.Topology.Spec != nil && s.Topology.Spec.PodNetwork == topology.PodNetworkAgent
	if !agents && s.Topology.Spec != nil {
		if s.Config.Name != "" {
			e.Add("config", "topology %s plumbs its pods itself (podNetwork: kernel): no agent reads a cilium-config; set podNetwork: agent or drop config", s.Topology.Name)
		}
		if len(s.Services) > 0 {
			e.Add("services", "topology %s runs no agents (podNetwork: kernel) to program services; set podNetwork: agent", s.Topology.Name)
		}
	}
	seen := map[string]bool{}
	for i, svc := range s.Services {
		if seen[svc.Name] {
			e.Add(fmt.Sprintf("services[%d].name", i), "%q is used twice", svc.Name)
		}
		seen[svc.Name] = true
	}
}

func (s *ServiceSpec) Validate(e strictyaml.FieldErrors) {
	if (s.Type != "ClusterIP") != (s.NodePort != 0) {
		e.Add("nodePort", "want one for NodePort and LoadBalancer services and none for ClusterIP (type %s, nodePort %d)", s.Type, s.NodePort)
	}
	for i, b := range s.Backends {
		if (b.Pod == "") == !b.IP.IsValid() {
			e.Add(fmt.Sprintf("backends[%d]", i), "want either pod or ip")
		}
		if b.Pod == "" && s.Server != "none" {
			e.Add(fmt.Sprintf("backends[%d].ip", i), "the harness serves pods only: with an address backend set server: none")
		}
	}
}

// agentService is the Service as the agents take it, backends resolved to addresses.
func (s ServiceSpec) agentService(t topology.Cluster) (agent.Service, error) {
	out := agent.Service{Name: s.Name, Type: s.Type, ClusterIP: s.ClusterIP, Port: s.Port, Protocol: s.Protocol,
		NodePort: s.NodePort, ExternalIPs: s.ExternalIPs,
		ExternalTrafficPolicy: s.ExternalTrafficPolicy, InternalTrafficPolicy: s.InternalTrafficPolicy,
		HealthCheckNodePort: s.HealthCheckNodePort, SessionAffinity: s.SessionAffinity,
		SessionAffinityTimeout: s.TimeoutSeconds, LoadBalancerSourceRanges: s.LoadBalancerSourceRanges,
		TrafficDistribution: s.TrafficDistribution, Annotations: s.Annotations}
	for _, b := range s.Backends {
		ip := b.IP
		zones := b.Zones
		if b.Pod != "" {
			p, err := t.Pod(string(b.Pod))
			if err != nil {
				return out, err
			}
			ip = p.IP
			if len(zones) == 0 && s.TrafficDistribution != "" {
				// The EndpointSlice controller's PreferClose: a hint for the zone
				// of the endpoint's own node.
				if z := podZone(t, p.Name); z != "" {
					zones = []string{z}
				}
			}
		}
		out.Backends = append(out.Backends, agent.ServiceBackend{IP: ip, Port: b.Port, Weight: b.Weight, State: b.State, Zones: zones})
	}
	return out, nil
}

// podZone is the zone of the node that runs pod ("" = none).
func podZone(t topology.Cluster, pod string) string {
	for _, n := range t.Nodes() {
		for _, p := range n.Pods {
			if p.Name == pod {
				return n.Zone
			}
		}
	}
	return ""
}

// TopologyRef is a stage's topology: a catalog name, a file, or a spec written inline.
type TopologyRef struct {
	// Name is the catalog name or the file path as written, or the inline spec's name.
	Name string
	// Spec is the parsed, validated spec.
	Spec *topology.Spec
	// resolved has every default filled in (member names, addresses), for references.
	resolved *topology.Spec
}

// looksLikePath tells file references from catalog names.
func looksLikePath(s string) bool {
	return strings.ContainsRune(s, '/') || strings.HasSuffix(s, ".yaml") || strings.HasSuffix(s, ".yml")
}

// readRef reads a file reference relative to the decoder's base folder.
func readRef(d *strictyaml.Decoder, n *yaml.Node, path, ref, what string) ([]byte, string, bool) {
	base := stateOf(d).base
	if base == "" {
		d.Fail(n, path, "%q: the embedded catalog names catalog %ss, not files", ref, what)
		return nil, "", false
	}
	p := ref
	if !filepath.IsAbs(p) {
		p = filepath.Join(base, p)
	}
	data, err := os.ReadFile(p)
	if err != nil {
		d.Fail(n, path, "read %s file: %v", what, err)
		return nil, "", false
	}
	return data, p, true
}

func (r *TopologyRef) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	before := d.ErrCount()
	switch {
	case n != nil && n.Kind == yaml.MappingNode:
		var spec topology.Spec
		d.DecodeFields(n, strictyaml.Elem(&spec), path)
		if d.ErrCount() > before {
			return
		}
		r.Name, r.Spec = spec.Name, &spec
	default:
		ref, ok := d.Scalar(n, path, "a catalog topology name, a file path or an inline topology spec")
		if !ok {
			return
		}
		r.Name = ref
		if !looksLikePath(ref) {
			spec, err := catalog.Topology(ref)
			if err != nil {
				d.Fail(n, path, "unknown catalog topology %q (have: %s; or a file path ending in .yaml, or an inline spec)", ref, strings.Join(catalog.Names(), ", "))
				return
			}
			r.Spec = spec
			break
		}
		data, _, ok := readRef(d, n, path, ref, "topology")
		if !ok {
			return
		}
		var spec topology.Spec
		root, err := strictyaml.ParseDocument(data)
		if err != nil {
			d.Fail(n, path, "%s: %v", ref, err)
			return
		}
		sub := &strictyaml.Decoder{Field: "field"}
		sub.DecodeStruct(root, strictyaml.Elem(&spec), "")
		for _, e := range errorList(sub.Err()) {
			d.Fail(n, path, "%s: %v", ref, e)
		}
		if sub.ErrCount() > 0 {
			return
		}
		r.Spec = &spec
	}
	resolved, err := r.Spec.Resolve()
	if err != nil {
		if n.Kind == yaml.MappingNode {
			d.FailFields(n, path, err)
		} else {
			d.FailAll(n, path, err)
		}
		r.Spec = nil
		return
	}
	r.resolved = resolved
}

// ConfigRef is a stage's cilium-config: a catalog name, a file, or data keys inline.
// The zero ConfigRef is Cilium's defaults.
type ConfigRef struct {
	// Name is the catalog name or the file path as written, or "inline".
	Name string
	// Data is the ConfigMap (or its data keys) as the agents read it.
	Data []byte
	// Config is what the agents will make of it.
	Config *config.Config
}

type inlineConfig struct {
	Data map[string]string `json:"data" required:"true" doc:"cilium-config data keys"`
}

func (c *ConfigRef) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	if n != nil && n.Kind == yaml.MappingNode {
		var in inlineConfig
		before := d.ErrCount()
		d.DecodeFields(n, strictyaml.Elem(&in), path)
		if d.ErrCount() > before {
			return
		}
		data, err := yaml.Marshal(in.Data)
		if err != nil {
			d.Fail(n, path, "%v", err)
			return
		}
		c.Name, c.Data = "inline", data
		c.parse(d, n, strictyaml.JoinPath(path, "data"))
		return
	}
	ref, ok := d.Scalar(n, path, "a catalog cilium-config name, a file path or {data: {...}}")
	if !ok {
		return
	}
	c.Name = ref
	if !looksLikePath(ref) {
		data, err := configs.Read(ref)
		if err != nil {
			d.Fail(n, path, "unknown catalog cilium-config %q (have: %s; or a file path ending in .yaml, or {data: {...}})", ref, strings.Join(configs.Names(), ", "))
			return
		}
		c.Data = data
		c.parse(d, n, path)
		return
	}
	data, _, ok := readRef(d, n, path, ref, "cilium-config")
	if !ok {
		return
	}
	c.Data = data
	c.parse(d, n, path)
}

// parse validates the config as the agents will, naming each bad key under path.
func (c *ConfigRef) parse(d *strictyaml.Decoder, n *yaml.Node, path string) {
	cfg, _, err := config.Parse(c.Data)
	if err != nil {
		var ve *config.ValidationError
		if errors.As(err, &ve) {
			for _, ke := range ve.Errs {
				d.Fail(n, strictyaml.JoinPath(path, ke.Key), "%s", ke.Reason)
			}
			return
		}
		d.Fail(n, path, "%v", err)
		return
	}
	c.Config = cfg
}

// Write puts the config where the agents of t read it and returns the path ("" for
// Cilium's defaults).
func (c ConfigRef) Write(t topology.Cluster) (string, error) {
	if c.Data == nil {
		return "", nil
	}
	name := c.Name
	if looksLikePath(name) {
		name = strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	}
	// Agents restarted later without a config read the file again: one file per
	// content, so that another config written for other nodes never replaces it.
	sum := sha256.Sum256(c.Data)
	p := filepath.Join(t.Dir(), fmt.Sprintf("cilium-config-%s-%x.yaml", report.FileSafe(name), sum[:4]))
	if err := os.WriteFile(p, c.Data, 0o600); err != nil {
		return "", fmt.Errorf("write config %s: %w", p, err)
	}
	return p, nil
}

// String names the config in progress lines.
func (c ConfigRef) String() string {
	if c.Name == "" {
		return "Cilium's defaults"
	}
	return c.Name
}

// References from steps to the stage's topology and services: checked when the file
// is read, against the stage's topology with every default filled in.

// PodRef names a pod of the stage's topology.
type PodRef string

// NodeRef names a node of the stage's topology.
type NodeRef string

// MemberRef names any member of the stage's topology: node, pod, router or client.
type MemberRef string

// ServiceRef names a service of the stage.
type ServiceRef string

func (r *PodRef) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	decodeRef(d, n, path, (*string)(r), "pod", func(s *topology.Spec) []string {
		var out []string
		for _, nd := range s.Nodes {
			for _, p := range nd.Pods {
				out = append(out, p.Name)
			}
		}
		return out
	})
}

func (r *NodeRef) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	decodeRef(d, n, path, (*string)(r), "node", func(s *topology.Spec) []string {
		var out []string
		for _, nd := range s.Nodes {
			out = append(out, nd.Name)
		}
		return out
	})
}

func (r *MemberRef) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	decodeRef(d, n, path, (*string)(r), "member", memberNames)
}

func memberNames(s *topology.Spec) []string {
	var out []string
	for _, nd := range s.Nodes {
		out = append(out, nd.Name)
		for _, p := range nd.Pods {
			out = append(out, p.Name)
		}
	}
	for _, r := range s.Routers {
		out = append(out, r.Name)
	}
	for _, c := range s.Clients {
		out = append(out, c.Name)
	}
	return out
}

func (r *ServiceRef) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	s, ok := d.Scalar(n, path, "a service name")
	if !ok {
		return
	}
	*r = ServiceRef(s)
	st := stateOf(d).stage
	if st == nil {
		return
	}
	var have []string
	for _, svc := range st.Services {
		have = append(have, svc.Name)
	}
	if !slices.Contains(have, s) {
		d.Fail(n, path, "%q is not a service of this stage (have: %s)", s, orNone(have))
	}
}

// decodeRef reads a name and checks it against the names of the stage's topology.
func decodeRef(d *strictyaml.Decoder, n *yaml.Node, path string, dst *string, what string, names func(*topology.Spec) []string) {
	s, ok := d.Scalar(n, path, "a "+what+" name")
	if !ok {
		return
	}
	*dst = s
	st := stateOf(d).stage
	if st == nil || st.Topology.resolved == nil {
		return // no stage, or its topology is broken: reported already
	}
	have := names(st.Topology.resolved)
	if !slices.Contains(have, s) {
		d.Fail(n, path, "%q is not a %s of topology %s (have: %s)", s, what, st.Topology.Name, orNone(have))
	}
}

func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// Service returns the stage's service name (nil when unknown or outside a stage).
func (s *StageSpec) Service(name ServiceRef) *ServiceSpec {
	if s == nil {
		return nil
	}
	for i := range s.Services {
		if s.Services[i].Name == string(name) {
			return &s.Services[i]
		}
	}
	return nil
}

// PodNode returns the node of pod p in the stage's topology ("" when unknown).
func (s *StageSpec) PodNode(p PodRef) string {
	if s.Topology.resolved == nil {
		return ""
	}
	for _, n := range s.Topology.resolved.Nodes {
		for _, pod := range n.Pods {
			if pod.Name == string(p) {
				return n.Name
			}
		}
	}
	return ""
}

// fileState is what decoding a scenario file keeps beside the decoder (its Context):
// the folder file references are relative to ("" when decoding the embedded catalog,
// where only catalog names and inline specs are accepted) and the stage being decoded,
// for the references its steps make.
type fileState struct {
	base  string
	stage *StageSpec
}

// stateOf is d's file state; a decoder made elsewhere (a sub-document) has none.
func stateOf(d *strictyaml.Decoder) *fileState {
	if st, ok := d.Context.(*fileState); ok {
		return st
	}
	return &fileState{}
}

// DecodingStage is the stage being decoded, for a step's Validate method (nil outside
// a stage).
func DecodingStage(e strictyaml.FieldErrors) *StageSpec { return stateOf(e.Decoder()).stage }

// CheckableStage is the stage being decoded when its topology is known (nil otherwise:
// its references cannot be checked, and its topology's problems are reported already).
func CheckableStage(e strictyaml.FieldErrors) *StageSpec {
	if st := DecodingStage(e); st != nil && st.Topology.resolved != nil {
		return st
	}
	return nil
}

// errorList is the errors joined in err (errors.Join), or none.
func errorList(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// ParseScenario reads a scenario file's text strictly and checks it against the step
// kinds, the catalog and the topologies it names: every problem is reported, each with
// its field path and what would be accepted. File references are relative to base
// ("" allows none: the embedded catalog).
func ParseScenario(data []byte, base string) (*ScenarioFile, error) {
	root, err := strictyaml.ParseDocument(data)
	if err != nil {
		return nil, fmt.Errorf("parse scenario: %w", err)
	}
	var f ScenarioFile
	d := &strictyaml.Decoder{Context: &fileState{base: base}}
	d.DecodeStruct(root, strictyaml.Elem(&f), "")
	if err := d.Err(); err != nil {
		return nil, err
	}
	return &f, nil
}

// LoadScenario reads the scenario file at path; see ParseScenario.
func LoadScenario(p string) (*ScenarioFile, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("load scenario: %w", err)
	}
	f, err := ParseScenario(data, filepath.Dir(p))
	if err != nil {
		return nil, fmt.Errorf("scenario %s:\n%w", p, err)
	}
	f.Source = p
	return f, nil
}

// IsScenario tells a scenario file's text from a topology spec's: it is a YAML mapping
// with stages.
func IsScenario(data []byte) bool {
	root, err := strictyaml.ParseDocument(data)
	if err != nil || root.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value == "stages" {
			return true
		}
	}
	return false
}

// IsScenarioFile tells a scenario file argument from a catalog name: it names a file
// (a path, or a name ending in .yaml or .yml).
func IsScenarioFile(arg string) bool { return looksLikePath(arg) }

// Regexp is a regular expression in a scenario file, compiled when the file is read.
type Regexp struct{ *regexp.Regexp }

func (r *Regexp) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	s, ok := d.Scalar(n, path, "a regular expression")
	if !ok {
		return
	}
	re, err := regexp.Compile(s)
	if err != nil {
		d.Fail(n, path, "%q is not a regular expression: %v", s, err)
		return
	}
	r.Regexp = re
}

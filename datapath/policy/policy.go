// SPDX-License-Identifier: Apache-2.0

// Package policy turns CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy and
// Kubernetes NetworkPolicy objects into per-endpoint policy map entries: allow and
// deny verdicts by peer identity, direction, protocol and port (prefix blocks for
// port ranges), plus a default-deny marker for every direction a policy selects.
package policy

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"

	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"podpath/datapath/identity"
)

// NamespaceLabel is the label every pod carries with its namespace (Cilium's
// k8s:io.kubernetes.pod.namespace); "default" when a pod names none.
const NamespaceLabel = "io.kubernetes.pod.namespace"

// Direction of a policy entry.
type Direction uint8

// Directions, as enum policy_dir of bpf/lib/policy.h.
const (
	Ingress Direction = 0
	Egress  Direction = 1
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// Kind of a policy entry, as enum policy_kind of bpf/lib/policy.h.
type Kind uint32

// Entry kinds.
const (
	Allow       Kind = 1
	Deny        Kind = 2
	DefaultDeny Kind = 3
)

// Protocol numbers policy knows.
const (
	ProtoICMP = 1
	ProtoTCP  = 6
	ProtoUDP  = 17
	ProtoSCTP = 132
)

// Entry is one policy map entry of an endpoint. Level says how much of the key
// counts: LevelEndpoint (the default-deny marker), LevelIdentity (every protocol and
// port of the peer), LevelProto (every port) or LevelProto+n (the top n bits of Port).
type Entry struct {
	Dir      Direction
	Identity identity.ID // 0: every peer
	Proto    uint8
	Port     uint16
	Level    int
	Kind     Kind
	Rule     uint32 // 1-based number of the source policy, for traces
}

// Prefix levels, as the POLICY_PREFIX_* of bpf/lib/policy.h.
const (
	LevelEndpoint = 40
	LevelIdentity = 96
	LevelProto    = 112
	LevelFull     = 128
)

// covers says whether e's key prefix includes o's (same direction and identity).
func (e Entry) covers(o Entry) bool {
	if e.Dir != o.Dir || e.Level > o.Level {
		return false
	}
	if e.Level <= LevelEndpoint {
		return true
	}
	if e.Identity != o.Identity {
		return false
	}
	if e.Level <= LevelIdentity {
		return true
	}
	if e.Proto != o.Proto {
		return false
	}
	bits := e.Level - LevelProto
	mask := uint16(0xffff) << (16 - bits)
	if bits == 0 {
		mask = 0
	}
	return e.Port&mask == o.Port&mask
}

// Endpoint is a local endpoint policy is computed for.
type Endpoint struct {
	Name   string
	Labels map[string]string // with NamespaceLabel
}

// Peer is a known identity and its labels (pods of every node).
type Peer struct {
	ID     identity.ID
	Labels map[string]string
}

// Policy is one parsed policy object, normalised.
type Policy struct {
	Name      string
	Namespace string // "" for clusterwide
	Source    string // CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy, NetworkPolicy
	rules     []rule
}

type rule struct {
	subject              labels.Selector
	ingress, egress      []peerRule
	ingressDeny, egressD []peerRule
	// selectsIngress/Egress: the rule puts its endpoints under enforcement in that
	// direction even without peers (KNP policyTypes, CNP ingress: [{}]).
	selectsIngress, selectsEgress bool
}

type peerRule struct {
	all       bool // no L3 part: every peer
	selectors []labels.Selector
	entities  []string
	cidrs     []cidrRule
	ports     []portRange // empty: every protocol and port
}

type cidrRule struct {
	prefix netip.Prefix
	except []netip.Prefix
}

type portRange struct {
	proto    uint8 // 0: TCP, UDP and SCTP
	lo, hi   uint16
	allPorts bool
}

// SplitDocuments splits YAML at its --- lines, leaving empty documents out.
func SplitDocuments(data []byte) ([][]byte, error) {
	var out [][]byte
	for _, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(doc)) > 0 {
			out = append(out, doc)
		}
	}
	return out, nil
}

// Parse reads one or more YAML documents (separated by ---) of CiliumNetworkPolicy,
// CiliumClusterwideNetworkPolicy or NetworkPolicy.
func Parse(data []byte) ([]Policy, error) {
	var out []Policy
	docs, _ := SplitDocuments(data)
	for i, doc := range docs {
		p, err := ParseOne(doc)
		if err != nil {
			return nil, fmt.Errorf("policy document %d: %w", i+1, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// ParseOne reads one policy object (YAML or JSON).
func ParseOne(doc []byte) (Policy, error) {
	var head struct {
		Kind string `json:"kind"`
	}
	if err := yaml.Unmarshal(doc, &head); err != nil {
		return Policy{}, fmt.Errorf("parse policy: %w", err)
	}
	switch head.Kind {
	case "NetworkPolicy":
		var np networkingv1.NetworkPolicy
		if err := yaml.UnmarshalStrict(doc, &np); err != nil {
			return Policy{}, fmt.Errorf("parse NetworkPolicy: %w", err)
		}
		return FromNetworkPolicy(&np)
	case "CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy":
		var cnp CiliumNetworkPolicy
		if err := yaml.UnmarshalStrict(doc, &cnp); err != nil {
			return Policy{}, fmt.Errorf("parse %s: %w", head.Kind, err)
		}
		return FromCilium(&cnp)
	}
	return Policy{}, fmt.Errorf("parse policy: kind %q: want CiliumNetworkPolicy, CiliumClusterwideNetworkPolicy or NetworkPolicy", head.Kind)
}

// selector turns a label selector into a labels.Selector; keys lose Cilium's source
// prefixes (k8s:, any:). In a namespaced policy, a selector that names no namespace
// is confined to the policy's namespace, as Cilium does.
func selector(ls *metav1.LabelSelector, namespace string) (labels.Selector, error) {
	c := ls.DeepCopy()
	if c == nil {
		c = &metav1.LabelSelector{}
	}
	ml := map[string]string{}
	for k, v := range c.MatchLabels {
		ml[stripSource(k)] = v
	}
	c.MatchLabels = ml
	for i := range c.MatchExpressions {
		c.MatchExpressions[i].Key = stripSource(c.MatchExpressions[i].Key)
	}
	if namespace != "" {
		named := c.MatchLabels[NamespaceLabel] != ""
		for _, e := range c.MatchExpressions {
			named = named || e.Key == NamespaceLabel
		}
		if !named {
			c.MatchLabels[NamespaceLabel] = namespace
		}
	}
	s, err := metav1.LabelSelectorAsSelector(c)
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	return s, nil
}

func stripSource(k string) string {
	for _, p := range []string{"k8s:", "any:"} {
		k = strings.TrimPrefix(k, p)
	}
	return k
}

// FromCilium normalises a CiliumNetworkPolicy or CiliumClusterwideNetworkPolicy.
func FromCilium(c *CiliumNetworkPolicy) (Policy, error) {
	p := Policy{Name: c.Metadata.Name, Source: c.Kind}
	if c.Kind == "CiliumNetworkPolicy" {
		p.Namespace = c.Metadata.Namespace
		if p.Namespace == "" {
			p.Namespace = "default"
		}
	}
	specs := c.Specs
	if c.Spec != nil {
		specs = append([]Rule{*c.Spec}, specs...)
	}
	if len(specs) == 0 {
		return p, fmt.Errorf("%s %s: no spec", c.Kind, p.Name)
	}
	for i, s := range specs {
		if s.EndpointSelector == nil {
			return p, fmt.Errorf("%s %s: spec %d: endpointSelector is required (nodeSelector is not supported)", c.Kind, p.Name, i)
		}
		subj, err := selector(s.EndpointSelector, p.Namespace)
		if err != nil {
			return p, fmt.Errorf("%s %s: endpointSelector: %w", c.Kind, p.Name, err)
		}
		r := rule{subject: subj,
			selectsIngress: s.Ingress != nil || s.IngressDeny != nil,
			selectsEgress:  s.Egress != nil || s.EgressDeny != nil}
		conv := func(eps []metav1.LabelSelector, ents, cidrs []string, sets []CIDRRule, ports []PortRule) (peerRule, error) {
			var pr peerRule
			for i := range eps {
				sel, err := selector(&eps[i], p.Namespace)
				if err != nil {
					return pr, err
				}
				pr.selectors = append(pr.selectors, sel)
			}
			for _, e := range ents {
				if !slices.Contains(Entities, e) {
					return pr, fmt.Errorf("entity %q: want one of %s", e, strings.Join(Entities, ", "))
				}
			}
			pr.entities = ents
			for _, s := range cidrs {
				sets = append(sets, CIDRRule{Cidr: s})
			}
			for _, s := range sets {
				cr, err := parseCIDRRule(s.Cidr, s.Except)
				if err != nil {
					return pr, err
				}
				pr.cidrs = append(pr.cidrs, cr)
			}
			for _, port := range ports {
				for _, pp := range port.Ports {
					rg, err := parsePort(pp.Port, pp.EndPort, pp.Protocol, "ANY")
					if err != nil {
						return pr, err
					}
					pr.ports = append(pr.ports, rg...)
				}
			}
			// A rule with ports and no peer is L4-only: every peer, on those ports. A
			// rule with neither (ingress: [{}]) allows nothing: Cilium's way to put the
			// endpoints under default deny.
			pr.all = len(eps) == 0 && len(ents) == 0 && len(pr.cidrs) == 0 && len(pr.ports) > 0
			return pr, nil
		}
		for _, in := range s.Ingress {
			pr, err := conv(in.FromEndpoints, in.FromEntities, in.FromCIDR, in.FromCIDRSet, in.ToPorts)
			if err != nil {
				return p, fmt.Errorf("%s %s: ingress: %w", c.Kind, p.Name, err)
			}
			r.ingress = append(r.ingress, pr)
		}
		for _, in := range s.IngressDeny {
			pr, err := conv(in.FromEndpoints, in.FromEntities, in.FromCIDR, in.FromCIDRSet, in.ToPorts)
			if err != nil {
				return p, fmt.Errorf("%s %s: ingressDeny: %w", c.Kind, p.Name, err)
			}
			r.ingressDeny = append(r.ingressDeny, pr)
		}
		for _, e := range s.Egress {
			pr, err := conv(e.ToEndpoints, e.ToEntities, e.ToCIDR, e.ToCIDRSet, e.ToPorts)
			if err != nil {
				return p, fmt.Errorf("%s %s: egress: %w", c.Kind, p.Name, err)
			}
			r.egress = append(r.egress, pr)
		}
		for _, e := range s.EgressDeny {
			pr, err := conv(e.ToEndpoints, e.ToEntities, e.ToCIDR, e.ToCIDRSet, e.ToPorts)
			if err != nil {
				return p, fmt.Errorf("%s %s: egressDeny: %w", c.Kind, p.Name, err)
			}
			r.egressD = append(r.egressD, pr)
		}
		p.rules = append(p.rules, r)
	}
	return p, nil
}

// Entities are the entity names podpath knows.
var Entities = []string{"world", "host", "cluster", "remote-node", "all", "health", "init", "kube-apiserver", "unmanaged"}

func parseCIDRRule(cidr string, except []string) (cidrRule, error) {
	p, err := netip.ParsePrefix(cidr)
	if err != nil || !p.Addr().Is4() {
		return cidrRule{}, fmt.Errorf("cidr %q: want an IPv4 prefix", cidr)
	}
	cr := cidrRule{prefix: p.Masked()}
	for _, e := range except {
		ep, err := netip.ParsePrefix(e)
		if err != nil || !ep.Addr().Is4() || !cr.prefix.Contains(ep.Addr()) || ep.Bits() < cr.prefix.Bits() {
			return cidrRule{}, fmt.Errorf("except %q: want an IPv4 prefix inside %s", e, cidr)
		}
		cr.except = append(cr.except, ep.Masked())
	}
	return cr, nil
}

// parsePort reads a port (number; names are not supported), an optional end port and
// a protocol (def when empty).
func parsePort(port string, end int32, proto, def string) ([]portRange, error) {
	if proto == "" {
		proto = def
	}
	var protos []uint8
	switch strings.ToUpper(proto) {
	case "TCP":
		protos = []uint8{ProtoTCP}
	case "UDP":
		protos = []uint8{ProtoUDP}
	case "SCTP":
		protos = []uint8{ProtoSCTP}
	case "ANY":
		protos = []uint8{ProtoTCP, ProtoUDP, ProtoSCTP}
	default:
		return nil, fmt.Errorf("protocol %q: want TCP, UDP, SCTP or ANY", proto)
	}
	var lo, hi uint16
	all := port == "" || port == "0"
	if !all {
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: want 1..65535 (named ports are not supported)", port)
		}
		lo, hi = uint16(n), uint16(n)
		if end != 0 {
			if end < int32(n) || end > 65535 {
				return nil, fmt.Errorf("endPort %d: want %d..65535", end, n)
			}
			hi = uint16(end)
		}
	}
	var out []portRange
	for _, p := range protos {
		out = append(out, portRange{proto: p, lo: lo, hi: hi, allPorts: all})
	}
	return out, nil
}

// FromNetworkPolicy normalises a Kubernetes NetworkPolicy. namespaceSelector matches
// namespaces by their kubernetes.io/metadata.name label only (podpath knows no other
// namespace labels); an empty one matches every namespace.
func FromNetworkPolicy(np *networkingv1.NetworkPolicy) (Policy, error) {
	ns := np.Namespace
	if ns == "" {
		ns = "default"
	}
	p := Policy{Name: np.Name, Namespace: ns, Source: "NetworkPolicy"}
	subj, err := selector(&np.Spec.PodSelector, ns)
	if err != nil {
		return p, fmt.Errorf("NetworkPolicy %s: podSelector: %w", np.Name, err)
	}
	r := rule{subject: subj}
	types := np.Spec.PolicyTypes
	if len(types) == 0 {
		types = []networkingv1.PolicyType{networkingv1.PolicyTypeIngress}
		if len(np.Spec.Egress) > 0 {
			types = append(types, networkingv1.PolicyTypeEgress)
		}
	}
	for _, t := range types {
		r.selectsIngress = r.selectsIngress || t == networkingv1.PolicyTypeIngress
		r.selectsEgress = r.selectsEgress || t == networkingv1.PolicyTypeEgress
	}
	conv := func(peers []networkingv1.NetworkPolicyPeer, ports []networkingv1.NetworkPolicyPort) (peerRule, error) {
		pr := peerRule{all: len(peers) == 0}
		for _, peer := range peers {
			switch {
			case peer.IPBlock != nil:
				cr, err := parseCIDRRule(peer.IPBlock.CIDR, peer.IPBlock.Except)
				if err != nil {
					return pr, err
				}
				pr.cidrs = append(pr.cidrs, cr)
			default:
				pod := peer.PodSelector
				if pod == nil {
					pod = &metav1.LabelSelector{}
				}
				c := pod.DeepCopy()
				scope := ns
				if peer.NamespaceSelector != nil {
					scope = ""
					if name, ok := peer.NamespaceSelector.MatchLabels["kubernetes.io/metadata.name"]; ok {
						if c.MatchLabels == nil {
							c.MatchLabels = map[string]string{}
						}
						c.MatchLabels[NamespaceLabel] = name
					} else if len(peer.NamespaceSelector.MatchLabels)+len(peer.NamespaceSelector.MatchExpressions) > 0 {
						return pr, fmt.Errorf("namespaceSelector %v: only kubernetes.io/metadata.name (or an empty selector) is supported", peer.NamespaceSelector)
					}
				}
				sel, err := selector(c, scope)
				if err != nil {
					return pr, err
				}
				pr.selectors = append(pr.selectors, sel)
			}
		}
		for _, port := range ports {
			proto := ""
			if port.Protocol != nil {
				proto = string(*port.Protocol)
			}
			ps := ""
			if port.Port != nil {
				if port.Port.Type != 0 {
					return pr, fmt.Errorf("port %q: named ports are not supported", port.Port.StrVal)
				}
				ps = strconv.Itoa(int(port.Port.IntVal))
			}
			var end int32
			if port.EndPort != nil {
				end = *port.EndPort
			}
			rg, err := parsePort(ps, end, proto, "TCP")
			if err != nil {
				return pr, err
			}
			pr.ports = append(pr.ports, rg...)
		}
		return pr, nil
	}
	for _, in := range np.Spec.Ingress {
		pr, err := conv(in.From, in.Ports)
		if err != nil {
			return p, fmt.Errorf("NetworkPolicy %s: ingress: %w", np.Name, err)
		}
		r.ingress = append(r.ingress, pr)
	}
	for _, e := range np.Spec.Egress {
		pr, err := conv(e.To, e.Ports)
		if err != nil {
			return p, fmt.Errorf("NetworkPolicy %s: egress: %w", np.Name, err)
		}
		r.egress = append(r.egress, pr)
	}
	p.rules = []rule{r}
	return p, nil
}

// CIDRIdentityBase is where the identities of CIDR prefixes start (Cilium's local
// identity scope, 1<<24: never carried in a 24-bit VNI, meaningful on this node only,
// the same on every node given the same policies).
const CIDRIdentityBase identity.ID = 1 << 24

// CIDRIdentities numbers every prefix the policies name (rules and exceptions), in
// prefix order: the agent puts them into the ipcache.
func CIDRIdentities(policies []Policy) map[netip.Prefix]identity.ID {
	set := map[netip.Prefix]bool{}
	for _, p := range policies {
		for _, r := range p.rules {
			for _, list := range [][]peerRule{r.ingress, r.egress, r.ingressDeny, r.egressD} {
				for _, pr := range list {
					for _, c := range pr.cidrs {
						set[c.prefix] = true
						for _, e := range c.except {
							set[e] = true
						}
					}
				}
			}
		}
	}
	prefixes := make([]netip.Prefix, 0, len(set))
	for p := range set {
		prefixes = append(prefixes, p)
	}
	sort.Slice(prefixes, func(i, j int) bool {
		if c := prefixes[i].Addr().Compare(prefixes[j].Addr()); c != 0 {
			return c < 0
		}
		return prefixes[i].Bits() < prefixes[j].Bits()
	})
	out := map[netip.Prefix]identity.ID{}
	for i, p := range prefixes {
		out[p] = CIDRIdentityBase + identity.ID(i)
	}
	return out
}

// Mode is enable-policy: "default", "always" or "never".
type Mode string

// Compute returns the policy map entries of ep under the given policies, with peers
// the known pod identities and cidrs the CIDR identities (CIDRIdentities).
func Compute(mode Mode, policies []Policy, ep Endpoint, peers []Peer, cidrs map[netip.Prefix]identity.ID) []Entry {
	if mode == "never" {
		return nil
	}
	set := labels.Set(ep.Labels)
	var out []Entry
	selIn, selEg := mode == "always", mode == "always"
	for pi, p := range policies {
		for _, r := range p.rules {
			if !r.subject.Matches(set) {
				continue
			}
			selIn = selIn || r.selectsIngress
			selEg = selEg || r.selectsEgress
			num := uint32(pi + 1)
			out = append(out, expand(Ingress, Allow, r.ingress, num, peers, cidrs)...)
			out = append(out, expand(Egress, Allow, r.egress, num, peers, cidrs)...)
			out = append(out, expand(Ingress, Deny, r.ingressDeny, num, peers, cidrs)...)
			out = append(out, expand(Egress, Deny, r.egressD, num, peers, cidrs)...)
		}
	}
	if selIn {
		out = append(out, Entry{Dir: Ingress, Level: LevelEndpoint, Kind: DefaultDeny})
	}
	if selEg {
		out = append(out, Entry{Dir: Egress, Level: LevelEndpoint, Kind: DefaultDeny})
	}
	return resolve(out)
}

// expand turns peer rules into entries.
func expand(dir Direction, kind Kind, prs []peerRule, num uint32, peers []Peer, cidrs map[netip.Prefix]identity.ID) []Entry {
	var out []Entry
	for _, pr := range prs {
		ids := peerIdentities(pr, peers, cidrs)
		for _, id := range ids {
			if len(pr.ports) == 0 {
				out = append(out, Entry{Dir: dir, Identity: id, Level: LevelIdentity, Kind: kind, Rule: num})
				continue
			}
			for _, rg := range pr.ports {
				if rg.allPorts {
					out = append(out, Entry{Dir: dir, Identity: id, Proto: rg.proto, Level: LevelProto, Kind: kind, Rule: num})
					continue
				}
				for _, b := range PortBlocks(rg.lo, rg.hi) {
					out = append(out, Entry{Dir: dir, Identity: id, Proto: rg.proto, Port: b.Port, Level: LevelProto + b.Bits, Kind: kind, Rule: num})
				}
			}
		}
	}
	return out
}

// peerIdentities are the identities a peer rule admits; 0 stands for every peer.
func peerIdentities(pr peerRule, peers []Peer, cidrs map[netip.Prefix]identity.ID) []identity.ID {
	if pr.all {
		return []identity.ID{0}
	}
	set := map[identity.ID]bool{}
	world := func() {
		set[identity.World] = true
		for _, id := range cidrs {
			set[id] = true
		}
	}
	for _, e := range pr.entities {
		switch e {
		case "all":
			return []identity.ID{0}
		case "world":
			world()
		case "host":
			set[identity.Host] = true
		case "remote-node":
			set[identity.RemoteNode] = true
		case "health":
			set[identity.Health] = true
		case "init":
			set[identity.Init] = true
		case "kube-apiserver":
			set[identity.KubeAPIServer] = true
		case "unmanaged":
			set[identity.Unmanaged] = true
		case "cluster":
			for _, id := range []identity.ID{identity.Host, identity.RemoteNode, identity.Health, identity.Init, identity.Unmanaged, identity.KubeAPIServer} {
				set[id] = true
			}
			for _, p := range peers {
				set[p.ID] = true
			}
		}
	}
	for _, s := range pr.selectors {
		for _, p := range peers {
			if s.Matches(labels.Set(p.Labels)) {
				set[p.ID] = true
			}
		}
	}
	for _, c := range pr.cidrs {
		if c.prefix.Bits() == 0 && len(c.except) == 0 {
			world()
			continue
		}
		if c.prefix.Bits() == 0 {
			set[identity.World] = true
		}
	next:
		for p, id := range cidrs {
			if p.Bits() < c.prefix.Bits() || !c.prefix.Contains(p.Addr()) {
				continue
			}
			for _, e := range c.except {
				if p.Bits() >= e.Bits() && e.Contains(p.Addr()) {
					continue next
				}
			}
			set[id] = true
		}
	}
	out := make([]identity.ID, 0, len(set))
	for id := range set {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// PortBlock is a port prefix: Port's top Bits bits.
type PortBlock struct {
	Port uint16
	Bits int
}

// PortBlocks covers lo..hi with the fewest aligned prefix blocks (at most 30).
func PortBlocks(lo, hi uint16) []PortBlock {
	var out []PortBlock
	l, h := uint32(lo), uint32(hi)
	for l <= h {
		size := uint32(1)
		bits := 16
		for bits > 0 {
			next := size << 1
			if l%next != 0 || l+next-1 > h {
				break
			}
			size, bits = next, bits-1
		}
		out = append(out, PortBlock{Port: uint16(l), Bits: bits})
		l += size
	}
	return out
}

// resolve merges duplicates (deny wins) and turns every allow that a deny of the same
// peer covers into that deny: the datapath's longest match would otherwise let the
// narrower allow win. Entries come out sorted.
func resolve(in []Entry) []Entry {
	type k struct {
		dir   Direction
		id    identity.ID
		proto uint8
		port  uint16
		level int
	}
	m := map[k]Entry{}
	var denies []Entry
	for _, e := range in {
		key := k{e.Dir, e.Identity, e.Proto, e.Port, e.Level}
		if old, ok := m[key]; ok && (old.Kind == Deny || e.Kind != Deny) {
			continue
		}
		m[key] = e
		if e.Kind == Deny {
			denies = append(denies, e)
		}
	}
	out := make([]Entry, 0, len(m))
	for _, e := range m {
		if e.Kind == Allow {
			for _, d := range denies {
				if d.covers(e) {
					e.Kind, e.Rule = Deny, d.Rule
					break
				}
			}
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		switch {
		case a.Dir != b.Dir:
			return a.Dir < b.Dir
		case a.Identity != b.Identity:
			return a.Identity < b.Identity
		case a.Proto != b.Proto:
			return a.Proto < b.Proto
		case a.Port != b.Port:
			return a.Port < b.Port
		}
		return a.Level < b.Level
	})
	return out
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Evaluate is what the datapath decides for a new flow of direction dir from (or to)
// a peer of identity id, proto and port, given an endpoint's entries: the reference
// model of policy_lookup() in bpf/lib/policy.h (the longest match of the peer's
// entries and of the wildcard peer's; a deny of either wins, then an allow, then the
// default-deny marker; 0 when the endpoint is not selected).
func Evaluate(es []Entry, dir Direction, id identity.ID, proto uint8, port uint16) Kind {
	probe := func(want identity.ID) Kind {
		k, lvl := Kind(0), -1
		p := Entry{Dir: dir, Identity: want, Proto: proto, Port: port, Level: LevelFull}
		for _, e := range es {
			if e.covers(p) && e.Level > lvl {
				k, lvl = e.Kind, e.Level
			}
		}
		return k
	}
	a := probe(id)
	b := Kind(0)
	if id != 0 {
		b = probe(0)
	}
	switch {
	case a == Deny || b == Deny:
		return Deny
	case a == Allow || b == Allow:
		return Allow
	case a == DefaultDeny || b == DefaultDeny:
		return DefaultDeny
	}
	return 0
}

// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// describe renders a path compactly: every link as from/if -> to/if [segment or tunnel,
// MTU, TTL], then the path MTU.
func describe(p Path) string {
	var parts []string
	for _, l := range p.Links {
		via := cmpOr(l.Segment, l.Tunnel, "veth")
		s := fmt.Sprintf("%s/%s>%s/%s[%s %d ttl%d", l.From, l.FromIf, l.To, l.ToIf, via, l.MTU, l.TTL)
		if l.Silent {
			s += " silent"
		}
		if l.Underlay != nil {
			s += " {" + describe(*l.Underlay) + "}"
		}
		parts = append(parts, s+"]")
	}
	return fmt.Sprintf("%s mtu %d", strings.Join(parts, " "), p.MTU())
}

func cmpOr(s ...string) string {
	for _, x := range s {
		if x != "" {
			return x
		}
	}
	return ""
}

// testWiring names host veths lxc-<pod> and gives every interface a MAC that spells its
// member and interface in its last byte: enough to see the right MAC on the right link.
func testWiring() Wiring {
	return Wiring{
		HostVeth: func(pod string) string { return "lxc-" + pod },
		MAC: func(member, iface string) net.HardwareAddr {
			return net.HardwareAddr{0x02, 0, 0, 0, byte(len(member)), byte(len(member + iface))}
		},
	}
}

func TestOracle(t *testing.T) {
	l2 := &Spec{
		Name:     "l2",
		Segments: []SegmentSpec{{Name: "lan", CIDR: "10.0.0.0/24"}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}},
				Pods: []PodSpec{{Name: "pod1a"}, {Name: "pod1b", MTU: 1300}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "lan"}},
				Pods: []PodSpec{{Name: "pod2a"}}},
		},
	}
	l2Agent := l2.Clone()
	l2Agent.PodNetwork = PodNetworkAgent
	routed := &Spec{
		Name:       "routed",
		PodNetwork: PodNetworkAgent, PodRoutes: PodRoutesAll,
		Segments: []SegmentSpec{{Name: "a", CIDR: "10.0.1.0/24"}, {Name: "b", CIDR: "10.0.2.0/24", MTU: 9000}},
		Routers:  []RouterSpec{{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}}, Pods: []PodSpec{{Name: "pod1"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "b"}}, Pods: []PodSpec{{Name: "pod2"}}},
		},
	}
	threeLeg, err := Load("catalog/routed-three-leg-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// r1 and r2 both join a and b; r2's leg on b is small: two paths, two MTUs.
	diamond := &Spec{
		Name:      "diamond",
		PodRoutes: PodRoutesAll,
		Segments:  []SegmentSpec{{Name: "a", CIDR: "10.0.1.0/24", MTU: 9000}, {Name: "b", CIDR: "10.0.2.0/24", MTU: 9000}},
		Routers: []RouterSpec{
			{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}},
			{Name: "r2", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b", MTU: 1500}}},
		},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}}, Pods: []PodSpec{{Name: "pod1", MTU: 9000}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "b"}}, Pods: []PodSpec{{Name: "pod2", MTU: 9000}}},
		},
	}
	// Two NICs: eth0 on a jumbo management segment, eth1 (the InternalIP) on 1500.
	multiNIC := &Spec{
		Name:       "multi",
		PodNetwork: PodNetworkAgent,
		Segments:   []SegmentSpec{{Name: "mgmt", CIDR: "10.1.0.0/24", MTU: 9000}, {Name: "underlay", CIDR: "10.0.0.0/24"}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", InternalInterface: "eth1",
				Interfaces: []InterfaceSpec{{Segment: "mgmt"}, {Segment: "underlay"}}, Pods: []PodSpec{{Name: "pod1"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", InternalInterface: "eth1",
				Interfaces: []InterfaceSpec{{Segment: "mgmt"}, {Segment: "underlay"}}, Pods: []PodSpec{{Name: "pod2"}}},
		},
	}
	multiNICKernelRoutes := multiNIC.Clone()
	multiNICKernelRoutes.PodRoutes = PodRoutesAll
	vxlan := OracleOptions{Tunnel: "vxlan"}
	direct := OracleOptions{DirectNodeRoutes: true}

	tests := []struct {
		name     string
		spec     *Spec
		opts     OracleOptions
		from     string
		to       string // a pod, or node:NAME for its InternalIP
		want     []string
		mtu, max int
		refusers []string // who refuses a DF packet of max+1 bytes
	}{
		{"l2 kernel: the pods' veths count", l2, OracleOptions{}, "pod1a", "pod2a", []string{
			"pod1a/eth0>node1/lxc-pod1a[veth 1500 ttl64] node1/eth0>node2/eth0[lan 1500 ttl63] node2/lxc-pod2a>pod2a/eth0[veth 1500 ttl62] mtu 1500",
		}, 1500, 1500, []string{"pod1a"}},
		{"l2 kernel: a pod's own small MTU is the path MTU", l2, OracleOptions{}, "pod1b", "pod2a", []string{
			"pod1b/eth0>node1/lxc-pod1b[veth 1300 ttl64] node1/eth0>node2/eth0[lan 1500 ttl63] node2/lxc-pod2a>pod2a/eth0[veth 1500 ttl62] mtu 1300",
		}, 1300, 1300, []string{"pod1b"}},
		{"l2 same node", l2, OracleOptions{}, "pod1a", "pod1b", []string{
			"pod1a/eth0>node1/lxc-pod1a[veth 1500 ttl64] node1/lxc-pod1b>pod1b/eth0[veth 1300 ttl63] mtu 1300",
		}, 1300, 1300, []string{"node1"}},
		{"l2 agent, vxlan: the agent's pod MTU is not taken as given", l2Agent, vxlan, "pod1a", "pod2a", []string{
			"pod1a/eth0>node1/lxc-pod1a[veth 0 ttl64] node1/eth0>node2/eth0[vxlan 1450 ttl63 {node1/eth0>node2/eth0[lan 1500 ttl64] mtu 1500}] node2/lxc-pod2a>pod2a/eth0[veth 0 ttl62] mtu 1450",
		}, 1450, 1450, []string{"node1"}},
		{"l2 agent, geneve with 8 bytes of options", l2Agent, OracleOptions{Tunnel: "geneve", TunnelOverhead: 58}, "pod2a", "pod1a", []string{
			"pod2a/eth0>node2/lxc-pod2a[veth 0 ttl64] node2/eth0>node1/eth0[geneve 1442 ttl63 {node2/eth0>node1/eth0[lan 1500 ttl64] mtu 1500}] node1/lxc-pod1a>pod1a/eth0[veth 0 ttl62] mtu 1442",
		}, 1442, 1442, []string{"node2"}},
		{"routed native: the router decrements TTL", routed, OracleOptions{}, "pod2", "pod1", []string{
			"pod2/eth0>node2/lxc-pod2[veth 0 ttl64] node2/eth0>r1/eth1[b 9000 ttl63] r1/eth0>node1/eth0[a 1500 ttl62] node1/lxc-pod1>pod1/eth0[veth 0 ttl61] mtu 1500",
		}, 1500, 1500, []string{"r1"}},
		{"routed vxlan: outer TTL from 64, inner one less per node", routed, vxlan, "pod1", "pod2", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] node1/eth0>node2/eth0[vxlan 1450 ttl63 {node1/eth0>r1/eth0[a 1500 ttl64] r1/eth1>node2/eth0[b 9000 ttl63] mtu 1500}] node2/lxc-pod2>pod2/eth0[veth 0 ttl62] mtu 1450",
		}, 1450, 1450, []string{"node1"}},
		{"three-leg native: jumbo to the small leg", threeLeg, OracleOptions{}, "pod1", "pod2", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] node1/eth0>r1/eth0[leg-big 9000 ttl63] r1/eth1>node2/eth0[leg-tiny 1400 ttl62] node2/lxc-pod2>pod2/eth0[veth 0 ttl61] mtu 1400",
		}, 1400, 1400, []string{"r1"}},
		{"three-leg native: small leg to standard", threeLeg, OracleOptions{}, "pod2", "pod3", []string{
			"pod2/eth0>node2/lxc-pod2[veth 0 ttl64] node2/eth0>r1/eth1[leg-tiny 1400 ttl63] r1/eth2>node3/eth0[leg-std 1500 ttl62] node3/lxc-pod3>pod3/eth0[veth 0 ttl61] mtu 1400",
		}, 1400, 1400, []string{"node2"}},
		{"three-leg native: jumbo to standard", threeLeg, OracleOptions{}, "pod1", "pod3", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] node1/eth0>r1/eth0[leg-big 9000 ttl63] r1/eth2>node3/eth0[leg-std 1500 ttl62] node3/lxc-pod3>pod3/eth0[veth 0 ttl61] mtu 1500",
		}, 1500, 1500, []string{"r1"}},
		{"three-leg vxlan: the tunnel is the underlay path less 50", threeLeg, vxlan, "pod1", "pod2", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] node1/eth0>node2/eth0[vxlan 1350 ttl63 {node1/eth0>r1/eth0[leg-big 9000 ttl64] r1/eth1>node2/eth0[leg-tiny 1400 ttl63] mtu 1400}] node2/lxc-pod2>pod2/eth0[veth 0 ttl62] mtu 1350",
		}, 1350, 1350, []string{"node1"}},
		{"three-leg: node to node", threeLeg, OracleOptions{}, "node3", "node:node1", []string{
			"node3/eth0>r1/eth2[leg-std 1500 ttl64] r1/eth0>node1/eth0[leg-big 9000 ttl63] mtu 1500",
		}, 1500, 1500, []string{"node3"}},
		{"three-leg: pod to a remote node", threeLeg, vxlan, "pod1", "node:node2", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] node1/eth0>r1/eth0[leg-big 9000 ttl63] r1/eth1>node2/eth0[leg-tiny 1400 ttl62] mtu 1400",
		}, 1400, 1400, []string{"r1"}},
		{"three-leg: pod to its own node", threeLeg, OracleOptions{}, "pod1", "node:node1", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] mtu 0",
		}, 0, 0, nil},
		{"ECMP: one alternative per next hop, the set of MTUs", diamond, OracleOptions{}, "pod1", "pod2", []string{
			"pod1/eth0>node1/lxc-pod1[veth 9000 ttl64] node1/eth0>r1/eth0[a 9000 ttl63] r1/eth1>node2/eth0[b 9000 ttl62] node2/lxc-pod2>pod2/eth0[veth 9000 ttl61] mtu 9000",
			"pod1/eth0>node1/lxc-pod1[veth 9000 ttl64] node1/eth0>r2/eth0[a 9000 ttl63] r2/eth1>node2/eth0[b 1500 ttl62] node2/lxc-pod2>pod2/eth0[veth 9000 ttl61] mtu 1500",
		}, 1500, 9000, []string{"pod1"}},
		{"ECMP: the small end on the receiving side is a silent drop", diamond, OracleOptions{}, "pod2", "pod1", []string{
			"pod2/eth0>node2/lxc-pod2[veth 9000 ttl64] node2/eth0>r1/eth1[b 9000 ttl63] r1/eth0>node1/eth0[a 9000 ttl62] node1/lxc-pod1>pod1/eth0[veth 9000 ttl61] mtu 9000",
			"pod2/eth0>node2/lxc-pod2[veth 9000 ttl64] node2/eth0>r2/eth1[b 1500 ttl63 silent] r2/eth0>node1/eth0[a 9000 ttl62] node1/lxc-pod1>pod1/eth0[veth 9000 ttl61] mtu 1500",
		}, 1500, 9000, []string{"pod2"}},
		{"multi-NIC native, planned routes: the first shared segment (mgmt)", multiNICKernelRoutes, OracleOptions{}, "pod1", "pod2", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] node1/eth0>node2/eth0[mgmt 9000 ttl63] node2/lxc-pod2>pod2/eth0[veth 0 ttl62] mtu 9000",
		}, 9000, 9000, []string{"node1"}},
		{"multi-NIC native, direct node routes: via the InternalIP (eth1)", multiNIC, direct, "pod1", "pod2", []string{
			"pod1/eth0>node1/lxc-pod1[veth 0 ttl64] node1/eth1>node2/eth1[underlay 1500 ttl63] node2/lxc-pod2>pod2/eth0[veth 0 ttl62] mtu 1500",
		}, 1500, 1500, []string{"node1"}},
		{"multi-NIC vxlan: the tunnel between InternalIPs", multiNIC, vxlan, "pod2", "pod1", []string{
			"pod2/eth0>node2/lxc-pod2[veth 0 ttl64] node2/eth1>node1/eth1[vxlan 1450 ttl63 {node2/eth1>node1/eth1[underlay 1500 ttl64] mtu 1500}] node1/lxc-pod1>pod1/eth0[veth 0 ttl62] mtu 1450",
		}, 1450, 1450, []string{"node2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts
			opts.Wiring = testWiring()
			o, err := NewOracle(tt.spec, opts)
			if err != nil {
				t.Fatal(err)
			}
			var ps Paths
			if node, ok := strings.CutPrefix(tt.to, "node:"); ok {
				if _, isPod := o.pods[tt.from]; isPod {
					ps, err = o.PodToNode(tt.from, node)
				} else {
					ps, err = o.NodeToNode(tt.from, node)
				}
			} else {
				ps, err = o.PodToPod(tt.from, tt.to)
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, p := range ps {
				got = append(got, describe(p))
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("paths:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
			if ps.MTU() != tt.mtu || ps.MaxMTU() != tt.max {
				t.Errorf("MTU %d, max %d; want %d, %d", ps.MTU(), ps.MaxMTU(), tt.mtu, tt.max)
			}
			if silent := ps.Silent(tt.mtu + 1); silent != strings.Contains(tt.name, "silent") {
				t.Errorf("silent drop of %d bytes: %v", tt.mtu+1, silent)
			}
			if r := ps.Refusers(tt.max + 1); !reflect.DeepEqual(r, tt.refusers) {
				t.Errorf("refusers of %d bytes: %v, want %v", tt.max+1, r, tt.refusers)
			}
			// Every link's MACs are those of its two ends; a tunnel's are on its underlay.
			for _, p := range ps {
				for _, l := range p.Links {
					if l.Tunnel != "" {
						continue
					}
					if l.FromIf != "" && (l.SrcMAC.String() != opts.Wiring.MAC(l.From, l.FromIf).String() ||
						l.DstMAC.String() != opts.Wiring.MAC(l.To, l.ToIf).String()) {
						t.Errorf("%s: MACs %s -> %s", l, l.SrcMAC, l.DstMAC)
					}
				}
			}
		})
	}
}

func TestOracleEncapsulated(t *testing.T) {
	spec, err := Load("catalog/routed-three-leg-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		opts OracleOptions
		want bool
	}{{OracleOptions{}, false}, {OracleOptions{Tunnel: "geneve"}, true}} {
		o, err := NewOracle(spec, tc.opts)
		if err != nil {
			t.Fatal(err)
		}
		pairs, err := o.PodPairs()
		if err != nil {
			t.Fatal(err)
		}
		if len(pairs) != 6 {
			t.Fatalf("%d ordered pairs, want 6", len(pairs))
		}
		mtus := map[string]int{}
		for _, p := range pairs {
			if p.Paths.Encapsulated() != tc.want {
				t.Errorf("%s -> %s: encapsulated %v, want %v", p.From, p.To, !tc.want, tc.want)
			}
			mtus[p.From+">"+p.To] = p.Paths.MTU()
		}
		off := 0
		if tc.want {
			off = 50
		}
		want := map[string]int{
			"pod1>pod2": 1400 - off, "pod2>pod1": 1400 - off, "pod2>pod3": 1400 - off, "pod3>pod2": 1400 - off,
			"pod1>pod3": 1500 - off, "pod3>pod1": 1500 - off,
		}
		if !reflect.DeepEqual(mtus, want) {
			t.Errorf("tunnel %q: path MTUs %v, want %v", tc.opts.Tunnel, mtus, want)
		}
	}
}

func TestOracleErrors(t *testing.T) {
	// Agents plumb pods but nobody routes PodCIDRs on the nodes: no path in native mode.
	routers := &Spec{
		Name:       "norts",
		PodNetwork: PodNetworkAgent,
		Segments:   []SegmentSpec{{Name: "a", CIDR: "10.0.1.0/24"}, {Name: "b", CIDR: "10.0.2.0/24"}},
		Routers:    []RouterSpec{{Name: "r1", Interfaces: []InterfaceSpec{{Segment: "a"}, {Segment: "b"}}}},
		Nodes: []NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []InterfaceSpec{{Segment: "a"}}, Pods: []PodSpec{{Name: "pod1"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []InterfaceSpec{{Segment: "b"}}, Pods: []PodSpec{{Name: "pod2"}}},
		},
	}
	o, err := NewOracle(routers, OracleOptions{DirectNodeRoutes: true})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := o.PodToPod("pod1", "pod2"); err == nil || !strings.Contains(err.Error(), "node1 has no route to 10.244.2.10") {
		t.Errorf("want no route at node1, got %v", err)
	}
	if _, err := o.PodToPod("pod1", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown pod: %v", err)
	}
	if _, err := o.PathTo("pod1", netip.MustParseAddr("192.0.2.1")); err == nil {
		t.Error("want an error for an address of no member")
	}
	if _, err := NewOracle(routers, OracleOptions{Tunnel: "gre"}); err == nil {
		t.Error("want an error for an unknown tunnel")
	}
	// The tunnel still reaches across the router: the nodes route each other's InternalIPs.
	o, err = NewOracle(routers, OracleOptions{Tunnel: "vxlan"})
	if err != nil {
		t.Fatal(err)
	}
	if ps, err := o.PodToPod("pod1", "pod2"); err != nil || ps.MTU() != 1450 {
		t.Errorf("vxlan without pod routes: %v, %v", ps, err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package steps

// Which addresses a service answers on (issue 12, kube-proxy replacement): NodePort on
// every address of the node's devices and on no other ("should be able to create a
// functioning NodePort service" on each node address, as Cilium serves NodePort on
// the addresses of its `devices`), a ClusterIP routed to a node from outside
// (bpf-lb-external-clusterip), and topology-aware routing (EndpointSlice hints,
// trafficDistribution PreferClose: "should route to endpoints in the same zone").

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[nodePortAddrsWith, none]{
		Name: "nodeport-addresses",
		Summary: "NodePort on every address of the node's devices: a client on each NIC's segment dialling that NIC's address at the " +
			"node port is answered by a backend, and (SNAT) the answer leaves the node through that NIC with that address as source; " +
			"an address of the node on an interface that is no device answers no service (the address itself answers ping)",
		Agents: true,
		Run:    runNodePortAddrs,
	})
	scenarios.RegisterStep(scenarios.StepDef[externalClusterIPWith, none]{
		Name: "external-clusterip",
		Summary: "bpf-lb-external-clusterip: a client outside the cluster with a route to the ClusterIP via a node is served with true; " +
			"with false the node drops it, named DROP_IS_CLUSTER_IP in its trace",
		Agents: true,
		Run:    runExternalClusterIP,
	})
	scenarios.RegisterStep(scenarios.StepDef[topologyAwareWith, none]{
		Name: "topology-aware",
		Summary: "topology-aware routing (enable-service-topology, EndpointSlice hints.forZones): a pod's connections land only on the " +
			"backends hinted for its node's zone (counts per backend), on all of them when its zone has none, when a backend has no " +
			"hint, or when the key is false",
		Agents: true,
		With:   topologyAwareWith{Connections: 40},
		Run:    runTopologyAware,
	})
}

// ---- nodeport-addresses ----

type nodePortVia struct {
	Client    scenarios.MemberRef `json:"client" required:"true" doc:"a client on the segment of the node's interface"`
	Interface string              `json:"interface" required:"true" doc:"the node's interface whose address is dialled"`
}

type nodePortAddrsWith struct {
	Node    scenarios.NodeRef    `json:"node" required:"true" doc:"the node dialled"`
	Service scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP NodePort service served by whoami"`
	Via     []nodePortVia        `json:"via" required:"true" doc:"device interfaces of the node, each dialled by a client on its segment: served"`
	// NotDevice is an interface of the node that is not among its devices.
	NotDevice *nodePortVia `json:"notDevice" doc:"an interface of the node that is no device, dialled by a client on its segment: not served"`
	// Reply says where the answer is looked for: node (SNAT: it leaves the dialled
	// NIC) or client (DSR: it comes from the backend's node; the client's capture).
	Reply string `json:"reply" oneOf:"node,client" doc:"node (default; SNAT) wants the answer leaving the dialled NIC, client (DSR) wants it at the client from the dialled address and none leaving the dialled node"`
}

func (w *nodePortAddrsWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.NodePort == 0 || svc.Protocol != "TCP" || svc.Server != "whoami") {
		e.Add("service", "want a TCP NodePort service with server whoami")
	}
}

// nodeIface is node's interface named name.
func nodeIface(n topology.Node, name string) (topology.Interface, error) {
	for _, i := range n.Interfaces {
		if i.Name == name {
			return i, nil
		}
	}
	var have []string
	for _, i := range n.Interfaces {
		have = append(have, i.Name)
	}
	return topology.Interface{}, fmt.Errorf("node %s has no interface %s (have %s)", n.Name, name, strings.Join(have, ", "))
}

func runNodePortAddrs(ctx context.Context, s *scenarios.Stage, w nodePortAddrsWith, _ none) error {
	t := s.T
	n, err := t.Node(string(w.Node))
	if err != nil {
		return err
	}
	svc := s.Services[string(w.Service)]
	for _, v := range w.Via {
		ifc, err := nodeIface(n, v.Interface)
		if err != nil {
			return err
		}
		client := string(v.Client)
		cifc, cip, err := clientAddr(t, client)
		if err != nil {
			return err
		}
		fe := netip.AddrPortFrom(ifc.Address.Addr(), svc.NodePort)
		// Captured: the node's NIC (SNAT: the answer leaves there) and the client's.
		nm, err := t.Member(n.Name)
		if err != nil {
			return err
		}
		cm, err := t.Member(client)
		if err != nil {
			return err
		}
		session, err := capture.Start(filepath.Join(s.Artifacts, "nodeport-"+v.Interface),
			capture.Point{Member: n.Name, Interface: v.Interface, NsPath: nm.NsPath},
			capture.Point{Member: client, Interface: cifc, NsPath: cm.NsPath})
		if err != nil {
			return err
		}
		name, werr := whoami(t, client, fe, time.Second)
		_ = session.Stop()
		s.Check(fmt.Sprintf("NodePort on %s's device %s: %s is answered by a backend", n.Name, v.Interface, fe),
			fmt.Sprintf("the whoami answer to %s from %s: %q", client, fe, name), werr)
		// The answer: the SYN-ACK from the dialled address:nodePort to the client.
		fromFE := func(member, iface string, outgoing bool) (int, string) {
			count, last := 0, ""
			for _, pk := range session.Packets(member, iface, capture.IPv4Flow(ip(fe.Addr()), ip(cip), layers.IPProtocolTCP)) {
				tcp, _ := pk.Decode().Layer(layers.LayerTypeTCP).(*layers.TCP)
				// The SYN-ACK of the served connection: a kernel RST (no
				// listener) from the same address is no answer of the service.
				if tcp != nil && tcp.SYN && tcp.ACK && uint16(tcp.SrcPort) == fe.Port() && (!outgoing || pk.Outgoing) {
					count++
					last = pk.Summary()
				}
			}
			return count, last
		}
		var rerr error
		where := fmt.Sprintf("capture on %s/%s: outgoing SYN-ACK %s -> %s", n.Name, v.Interface, fe, cip)
		if w.Reply == "client" {
			where = fmt.Sprintf("capture on %s/%s: SYN-ACK %s -> %s", client, cifc, fe, cip)
			if c, _ := fromFE(client, cifc, false); c == 0 {
				rerr = fmt.Errorf("no answer from %s reached %s", fe, client)
			}
			// DSR: the backend's node answers; the dialled node sends nothing back.
			if c, last := fromFE(n.Name, v.Interface, true); c != 0 {
				rerr = errors.Join(rerr, fmt.Errorf("%d answers left %s/%s itself (not DSR): %s", c, n.Name, v.Interface, last))
			}
			where += fmt.Sprintf(", and none leaving %s/%s", n.Name, v.Interface)
		} else if c, _ := fromFE(n.Name, v.Interface, true); c == 0 {
			var others []string
			for _, o := range n.Interfaces {
				for _, pk := range session.Packets(n.Name, o.Name, capture.IPv4Flow(nil, ip(cip), layers.IPProtocolTCP)) {
					others = append(others, o.Name+": "+pk.Summary())
				}
			}
			rerr = fmt.Errorf("no answer left %s/%s from %s (packets to the client seen: %q)", n.Name, v.Interface, fe, others)
		}
		s.Check(fmt.Sprintf("NodePort on %s's device %s: the answer comes from %s (through %s)", n.Name, v.Interface, fe, cmpOr(w.Reply, "node")),
			where, rerr)
	}
	if w.NotDevice == nil {
		return nil
	}
	ifc, err := nodeIface(n, w.NotDevice.Interface)
	if err != nil {
		return err
	}
	client := string(w.NotDevice.Client)
	addr := ifc.Address.Addr()
	out, perr := probe.PingSized(ctx, t, client, addr, 56, false)
	s.Check(fmt.Sprintf("NodePort not on a non-device: %s's %s address %s is up (answers ping)", n.Name, ifc.Name, addr),
		"ping -c1 from "+client+": "+strings.TrimSpace(string(out)), perr)
	fe := netip.AddrPortFrom(addr, svc.NodePort)
	name, derr := whoami(t, client, fe, 500*time.Millisecond)
	var nerr error
	if derr == nil {
		nerr = fmt.Errorf("%s (not a device) was answered by backend %q", fe, name)
	}
	s.Check(fmt.Sprintf("NodePort not on a non-device: %s (on %s, no device) serves no service", fe, ifc.Name),
		fmt.Sprintf("the connect from %s: %v", client, derr), nerr)
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ---- external-clusterip ----

type externalClusterIPWith struct {
	Client  scenarios.MemberRef  `json:"client" required:"true" doc:"a client outside the cluster on a segment of the node"`
	Node    scenarios.NodeRef    `json:"node" required:"true" doc:"the node the client routes the ClusterIP through"`
	Service scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP service served by whoami"`
	Expect  string               `json:"expect" required:"true" oneOf:"served,dropped" doc:"served (bpf-lb-external-clusterip true) or dropped with DROP_IS_CLUSTER_IP (false)"`
}

func (w *externalClusterIPWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.Protocol != "TCP" || svc.Server != "whoami") {
		e.Add("service", "want a TCP service with server whoami")
	}
}

func runExternalClusterIP(ctx context.Context, s *scenarios.Stage, w externalClusterIPWith, _ none) error {
	t := s.T
	client := string(w.Client)
	_, cip, err := clientAddr(t, client)
	if err != nil {
		return err
	}
	n, err := t.Node(string(w.Node))
	if err != nil {
		return err
	}
	svc := s.Services[string(w.Service)]
	vip := netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	// The client's route to the ClusterIP through the node, for this step only (in
	// the client's namespace, which the run created).
	route := &netlink.Route{Dst: &net.IPNet{IP: ip(svc.ClusterIP), Mask: net.CIDRMask(32, 32)}, Gw: ip(n.InternalIP)}
	if err := t.Do(client, func() error { return netlink.RouteReplace(route) }); err != nil {
		return fmt.Errorf("%s: ip route replace %s/32 via %s: %w", client, svc.ClusterIP, n.InternalIP, err)
	}
	defer func() { _ = t.Do(client, func() error { return netlink.RouteDel(route) }) }()
	traces, err := s.OpenTraces(t, n.Name)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	if w.Expect == "served" {
		name, werr := whoami(t, client, vip, time.Second)
		if werr == nil && !backendNames(t, svc, "")[name] {
			werr = fmt.Errorf("answered by %q, not an active backend of %s", name, svc.Name)
		}
		s.Check(fmt.Sprintf("bpf-lb-external-clusterip true: %s routed via %s reaches %s from outside", vip, n.Name, svc.Name),
			fmt.Sprintf("the whoami answer to %s (route %s/32 via %s): %q", client, svc.ClusterIP, n.InternalIP, name), werr)
		return nil
	}
	name, cerr := whoami(t, client, vip, 300*time.Millisecond)
	derr := expectDrop(traces, n.Name, cip, vip, "DROP_IS_CLUSTER_IP")
	if cerr == nil {
		derr = errors.Join(fmt.Errorf("the connection to %s was answered by %s", vip, name), derr)
	}
	s.Check(fmt.Sprintf("bpf-lb-external-clusterip false: %s routed via %s from outside is dropped, named DROP_IS_CLUSTER_IP", vip, n.Name),
		fmt.Sprintf("%s's trace records of %s -> %s, and the client's connect (no answer)", n.Name, cip, vip), derr)
	return nil
}

// ---- topology-aware ----

type topologyAwareWith struct {
	From        scenarios.MemberRef  `json:"from" required:"true" doc:"the pod that connects"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP ClusterIP service served by whoami"`
	Connections int                  `json:"connections" range:"4..1000" doc:"new connections made (default 40)"`
	Expect      string               `json:"expect" required:"true" oneOf:"zone,all" doc:"zone: only (and every one of) the backends hinted for the pod's node's zone; all: every backend"`
}

func (w *topologyAwareWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.Protocol != "TCP" || svc.Server != "whoami") {
		e.Add("service", "want a TCP service with server whoami")
	}
}

func runTopologyAware(ctx context.Context, s *scenarios.Stage, w topologyAwareWith, _ none) error {
	t := s.T
	from := string(w.From)
	pod, err := t.Pod(from)
	if err != nil {
		return err
	}
	node, err := t.Node(pod.Node)
	if err != nil {
		return err
	}
	svc := s.Services[string(w.Service)]
	// The expectation, from the spec: the backends whose hints name the node's zone
	// (the topology file's label), or all of them.
	all := backendNames(t, svc, "")
	want := map[string]bool{}
	for _, b := range svc.Backends {
		if p, ok := podByIP(t, b.IP); ok && slices.Contains(b.Zones, node.Zone) && all[p.Name] {
			want[p.Name] = true
		}
	}
	if w.Expect == "all" {
		want = all
	} else if node.Zone == "" || len(want) == 0 {
		return fmt.Errorf("expect zone: %s's node %s has zone %q and service %s hints no backend for it", from, node.Name, node.Zone, svc.Name)
	}
	vip := netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	counts := map[string]int{}
	var errs []error
	for i := 0; i < w.Connections; i++ {
		name, err := whoami(t, from, vip, time.Second)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		counts[name]++
	}
	var names []string
	for n := range counts {
		names = append(names, n)
	}
	sort.Strings(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s=%d", n, counts[n]))
	}
	var wantNames []string
	for n := range want {
		wantNames = append(wantNames, n)
	}
	sort.Strings(wantNames)
	for _, n := range names {
		if !want[n] {
			errs = append(errs, fmt.Errorf("%d connections landed on %s, not among %v", counts[n], n, wantNames))
		}
	}
	for _, n := range wantNames {
		if counts[n] == 0 {
			errs = append(errs, fmt.Errorf("no connection landed on %s (want every one of %v)", n, wantNames))
		}
	}
	name := fmt.Sprintf("topology-aware: %s's connections to %s (node %s, zone %q) land on only the backends hinted for zone %s", from, svc.Name, node.Name, node.Zone, node.Zone)
	if w.Expect == "all" {
		name = fmt.Sprintf("topology-aware: %s's connections to %s (node %s, zone %q) land on every backend", from, svc.Name, node.Name, node.Zone)
	}
	s.Check(name,
		fmt.Sprintf("whoami answers of %d connections to %s, per backend: %s; want %v", w.Connections, vip, strings.Join(parts, " "), wantNames),
		errors.Join(errs...))
	return nil
}

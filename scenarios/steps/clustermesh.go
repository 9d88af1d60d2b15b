// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/google/gopacket/layers"

	"podpath/datapath/agent"
	"podpath/datapath/kvstore"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[none, none]{
		Name: "clustermesh-status",
		Summary: "every cluster's etcd holds its nodes, its pods' addresses and identities with the cluster's ID in bits 16-23 " +
			"(etcdctl), and every agent reports each other cluster ready with all of its nodes and pods",
		Agents: true,
		Run:    runMeshStatus,
	})
	scenarios.RegisterStep(scenarios.StepDef[podPairWith, none]{
		Name: "clustermesh-path",
		Summary: "a pod reaches a pod of another cluster through the tunnel: the sender's ipcache holds the remote pod from " +
			"the remote etcd, the VXLAN VNI on the sender's NIC, the router and the receiver's NIC is the sender's identity with " +
			"its cluster ID in bits 16-23 (tshark agrees), both directions",
		Agents: true,
		Run:    runMeshPath,
	})
	scenarios.RegisterStep(scenarios.StepDef[globalServiceWith, globalServiceExpect]{
		Name: "global-service",
		Summary: "connections from a pod to a global service land on the backends the mesh and the annotations select " +
			"(whoami answers counted per backend), after changing one cluster's Service (annotations, removed backends)",
		Agents:  true,
		With:    globalServiceWith{Connections: 30},
		Timeout: 2 * time.Minute,
		Run:     runGlobalService,
	})
}

// meshWait bounds every wait for the mesh to converge (etcd watches across clusters).
const meshWait = 30 * time.Second

func podCluster(s *scenarios.Stage, pod string) (*topology.ClusterSpec, error) {
	p, err := s.T.Pod(pod)
	if err != nil {
		return nil, err
	}
	c := s.T.Spec().ClusterOfNode(p.Node)
	if c == nil {
		return nil, fmt.Errorf("pod %s is in no cluster: the stage's topology declares no clusters", pod)
	}
	return c, nil
}

// meshEtcdGet reads one key from a cluster's own etcd with etcdctl.
func meshEtcdGet(ctx context.Context, s *scenarios.Stage, cluster, key string) (string, error) {
	e, ok := s.T.(topology.Etcd)
	if !ok {
		return "", errors.New("the backend runs no etcd")
	}
	out, err := e.Etcdctl(ctx, topology.ClusterEtcdMemberName(cluster, 1), "get", "--print-value-only", key)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("etcdctl get %s (cluster %s): no such key", key, cluster)
	}
	return v, nil
}

// meshIdentity reads pod's identity from its cluster's etcd and checks it carries the
// cluster's ID (from the topology) in bits 16-23.
func meshIdentity(ctx context.Context, s *scenarios.Stage, pod string) (uint32, error) {
	p, err := s.T.Pod(pod)
	if err != nil {
		return 0, err
	}
	c, err := podCluster(s, pod)
	if err != nil {
		return 0, err
	}
	key := kvstore.IPKey(p.IP)
	var v string
	deadline := time.Now().Add(meshWait)
	for {
		if v, err = meshEtcdGet(ctx, s, c.Name, key); err == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return 0, err
	}
	var pair kvstore.IPIdentityPair
	if err := json.Unmarshal([]byte(v), &pair); err != nil {
		return 0, fmt.Errorf("%s: %w", key, err)
	}
	// Cilium's layout, written out here rather than taken from the code under test:
	// cluster-id in bits 16-23, the cluster's own number (256 and up) below.
	if pair.ID>>16 != uint32(c.ID) || pair.ID&0xffff < 256 {
		return pair.ID, fmt.Errorf("%s's identity %d (0x%06x) is not cluster %s's: want cluster-id %d in bits 16-23 and at least 256 in bits 0-15: %s", pod, pair.ID, pair.ID, c.Name, c.ID, v)
	}
	return pair.ID, nil
}

func runMeshStatus(ctx context.Context, s *scenarios.Stage, _ none, _ none) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	spec := s.T.Spec()
	if !spec.IsMesh() {
		return errors.New("the stage's topology declares no clusters")
	}
	e, ok := s.T.(topology.Etcd)
	if !ok {
		return errors.New("the backend runs no etcd")
	}
	nodesOf := map[string][]string{}
	podsOf := map[string]int{}
	for _, n := range s.T.Nodes() {
		c := spec.ClusterOfNode(n.Name)
		nodesOf[c.Name] = append(nodesOf[c.Name], n.Name)
		podsOf[c.Name] += len(n.Pods)
	}
	// etcdctl: each cluster's etcd holds exactly its own nodes under nodes/v1/<cluster>/.
	for _, c := range spec.Clusters {
		prefix := kvstore.NodesPrefix + c.Name + "/"
		var got []string
		var gerr error
		deadline := time.Now().Add(meshWait)
		want := slices.Sorted(slices.Values(nodesOf[c.Name]))
		for {
			out, err := e.Etcdctl(ctx, topology.ClusterEtcdMemberName(c.Name, 1), "get", "--keys-only", "--prefix", kvstore.NodesPrefix)
			got, gerr = nil, err
			for _, k := range strings.Fields(string(out)) {
				got = append(got, strings.TrimPrefix(k, prefix))
			}
			sort.Strings(got)
			if gerr == nil && slices.Equal(got, want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		if gerr == nil && !slices.Equal(got, want) {
			gerr = fmt.Errorf("keys under %s: %v, want the topology's nodes of %s: %v", kvstore.NodesPrefix, got, c.Name, want)
		}
		s.Check(fmt.Sprintf("etcd of %s: %s holds exactly the cluster's nodes %v", c.Name, prefix, want),
			"etcdctl get --keys-only --prefix "+kvstore.NodesPrefix+" in "+topology.ClusterEtcdMemberName(c.Name, 1), gerr)
	}
	// etcdctl: every pod's identity carries its cluster's ID.
	for _, p := range s.T.Pods() {
		c := spec.ClusterOfNode(p.Node)
		id, err := meshIdentity(ctx, s, p.Name)
		s.Check(fmt.Sprintf("etcd of %s: %s's identity %d has cluster-id %d in bits 16-23", c.Name, p.Name, id, c.ID),
			"etcdctl get "+kvstore.IPKey(p.IP), err)
	}
	// Every agent: each other cluster ready with all its nodes and endpoints.
	for _, n := range s.T.Nodes() {
		self := spec.ClusterOfNode(n.Name).Name
		var others []string
		for _, c := range spec.Clusters {
			if c.Name != self {
				others = append(others, c.Name)
			}
		}
		deadline := time.Now().Add(meshWait)
		var last []agent.MeshStatus
		var serr error
		for {
			st, err := agents.Client(n.Name).Status(ctx)
			serr = err
			if err == nil {
				last = st.ClusterMesh
				serr = meshStatusMatches(last, others, nodesOf, podsOf)
			}
			if serr == nil || time.Now().After(deadline) || ctx.Err() != nil {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		s.Check(fmt.Sprintf("%s's agent (cluster %s): remote clusters %v ready with all their nodes and pods", n.Name, self, others),
			fmt.Sprintf("podpath-agent status of %s: ClusterMesh %+v", n.Name, last), serr)
	}
	return nil
}

func meshStatusMatches(got []agent.MeshStatus, want []string, nodesOf map[string][]string, podsOf map[string]int) error {
	by := map[string]agent.MeshStatus{}
	for _, m := range got {
		by[m.Cluster] = m
	}
	var errs []error
	if len(got) != len(want) {
		errs = append(errs, fmt.Errorf("%d remote clusters, want %d (%v)", len(got), len(want), want))
	}
	for _, c := range want {
		m, ok := by[c]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("%s: not watched", c))
		case !m.Ready:
			errs = append(errs, fmt.Errorf("%s: not ready (%s)", c, m.KVStore))
		case m.Nodes != len(nodesOf[c]) || m.Endpoints < podsOf[c]:
			errs = append(errs, fmt.Errorf("%s: %d nodes and %d endpoints, want %d and at least %d", c, m.Nodes, m.Endpoints, len(nodesOf[c]), podsOf[c]))
		}
	}
	return errors.Join(errs...)
}

// runMeshPath pings from a pod to a pod of another cluster and reads the VXLAN frames
// on the sender's NIC, the router's interfaces and the receiver's NIC.
func runMeshPath(ctx context.Context, s *scenarios.Stage, w podPairWith, _ none) error {
	from, err := s.T.Pod(string(w.From))
	if err != nil {
		return err
	}
	to, err := s.T.Pod(string(w.To))
	if err != nil {
		return err
	}
	cf, err := podCluster(s, from.Name)
	if err != nil {
		return err
	}
	ct, err := podCluster(s, to.Name)
	if err != nil {
		return err
	}
	if cf.Name == ct.Name {
		return fmt.Errorf("%s and %s are both in cluster %s: the step wants pods of two clusters", from.Name, to.Name, cf.Name)
	}
	idFrom, ferr := meshIdentity(ctx, s, from.Name)
	idTo, terr := meshIdentity(ctx, s, to.Name)
	s.Check(fmt.Sprintf("etcd: %s's identity %d carries cluster-id %d (%s), %s's %d carries %d (%s)", from.Name, idFrom, cf.ID, cf.Name, to.Name, idTo, ct.ID, ct.Name),
		"etcdctl get ip/v1 keys in each cluster's etcd", errors.Join(ferr, terr))
	nf, _ := s.T.Node(from.Node)
	nt, _ := s.T.Node(to.Node)
	// Each node learned the other cluster's pod from the other cluster's etcd.
	s.Check(fmt.Sprintf("%s's ipcache holds %s/32 from %s's etcd: identity %d, tunnel endpoint %s", nf.Name, to.Name, ct.Name, idTo, nt.Name),
		fmt.Sprintf("%s pinned map ipcache (%s/32)", nf.Name, to.IP),
		waitIPCache(ctx, filepath.Join(s.T.Dir(), "bpffs", nf.Name, "maps"), netip.PrefixFrom(to.IP, 32), idTo, nt.InternalIP))
	s.Check(fmt.Sprintf("%s's ipcache holds %s/32 from %s's etcd: identity %d, tunnel endpoint %s", nt.Name, from.Name, cf.Name, idFrom, nf.Name),
		fmt.Sprintf("%s pinned map ipcache (%s/32)", nt.Name, from.IP),
		waitIPCache(ctx, filepath.Join(s.T.Dir(), "bpffs", nt.Name, "maps"), netip.PrefixFrom(from.IP, 32), idFrom, nf.InternalIP))

	uf, ut := internalIface(nf), internalIface(nt)
	mf, _ := s.T.Member(nf.Name)
	mt, _ := s.T.Member(nt.Name)
	points := []capture.Point{{Member: nf.Name, Interface: uf.Name, NsPath: mf.NsPath}, {Member: nt.Name, Interface: ut.Name, NsPath: mt.NsPath}}
	// The routers between the clusters' segments: every interface of each.
	var routerPoints []capture.Point
	for _, r := range s.T.Spec().Routers {
		ifs, err := s.T.Interfaces(r.Name)
		if err != nil {
			return err
		}
		m, _ := s.T.Member(r.Name)
		for _, i := range ifs {
			routerPoints = append(routerPoints, capture.Point{Member: r.Name, Interface: i.Name, NsPath: m.NsPath})
		}
	}
	dir := filepath.Join(s.Artifacts, "clustermesh-path-"+from.Name+"-"+to.Name)
	session, err := capture.Start(dir, append(points, routerPoints...)...)
	if err != nil {
		return err
	}
	defer session.Stop()
	exErr := probe.Exchange(ctx, s.T, probe.ICMP, from.Name, to.Name)
	if err := session.Stop(); err != nil {
		return err
	}
	s.Check(fmt.Sprintf("ping %s (%s) -> %s (%s) across the mesh", from.Name, cf.Name, to.Name, ct.Name), "echo request and reply", exErr)

	vxlanAt := func(member, iface string, src, dst topology.Pod, reply bool, outerDst netip.Addr, id uint32, srcCluster *topology.ClusterSpec) error {
		kind, echo := "request", capture.ICMPEcho(ip(src.IP), ip(dst.IP))
		if reply {
			kind, echo = "reply", capture.ICMPEchoReply(ip(src.IP), ip(dst.IP))
		}
		frames := session.Packets(member, iface, capture.And(capture.InnerIPv4(ip(src.IP), ip(dst.IP)), echo))
		if len(frames) == 0 {
			return fmt.Errorf("no encapsulated echo %s %s -> %s on %s/%s (pcap %s)", kind, src.IP, dst.IP, member, iface, session.PcapPath(member, iface))
		}
		pk := frames[0].Decode()
		vx, _ := pk.Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		ip4, _ := pk.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		switch {
		case vx == nil:
			return fmt.Errorf("not VXLAN: %s", frames[0].Summary())
		case vx.VNI != id:
			return fmt.Errorf("VNI %d (0x%06x), want %s's identity %d (0x%06x): %s", vx.VNI, vx.VNI, src.Name, id, id, frames[0].Summary())
		case vx.VNI>>16 != uint32(srcCluster.ID):
			return fmt.Errorf("VNI %d (0x%06x) carries cluster-id %d in bits 16-23, want %s's %d: %s", vx.VNI, vx.VNI, vx.VNI>>16, srcCluster.Name, srcCluster.ID, frames[0].Summary())
		case ip4 == nil || netip.AddrFrom4([4]byte(ip4.DstIP.To4())) != outerDst:
			return fmt.Errorf("outer destination is not %s: %s", outerDst, frames[0].Summary())
		}
		return nil
	}
	hop := func(src, dst topology.Pod, reply bool, srcNode, dstNode topology.Node, id uint32, c *topology.ClusterSpec) {
		what := fmt.Sprintf("VXLAN to %s, VNI %d = %s's identity, cluster-id %d (%s) in bits 16-23", dstNode.Name, id, src.Name, c.ID, c.Name)
		us, ud := internalIface(srcNode), internalIface(dstNode)
		what = map[bool]string{false: "echo request", true: "echo reply"}[reply] + ": " + what
		s.Check(fmt.Sprintf("%s -> %s leaves %s/%s: %s", src.Name, dst.Name, srcNode.Name, us.Name, what),
			session.PcapPath(srcNode.Name, us.Name), vxlanAt(srcNode.Name, us.Name, src, dst, reply, dstNode.InternalIP, id, c))
		var rerr error
		seen := 0
		for _, p := range routerPoints {
			if vxlanAt(p.Member, p.Interface, src, dst, reply, dstNode.InternalIP, id, c) == nil {
				seen++
			}
		}
		if len(routerPoints) > 0 && seen < 2 {
			rerr = fmt.Errorf("the encapsulated echo crossed %d router interfaces, want 2 (in and out)", seen)
		}
		s.Check(fmt.Sprintf("%s -> %s crosses the router between the clusters encapsulated, VNI %d unchanged", src.Name, dst.Name, id),
			"router interfaces' pcaps in "+dir, rerr)
		s.Check(fmt.Sprintf("%s -> %s reaches %s/%s: %s", src.Name, dst.Name, dstNode.Name, ud.Name, what),
			session.PcapPath(dstNode.Name, ud.Name), vxlanAt(dstNode.Name, ud.Name, src, dst, reply, dstNode.InternalIP, id, c))
	}
	var wantCluster error
	if idFrom>>16 != uint32(cf.ID) || idTo>>16 != uint32(ct.ID) {
		wantCluster = fmt.Errorf("identities %d and %d carry cluster-ids %d and %d in bits 16-23, the topology gives %d and %d", idFrom, idTo,
			idFrom>>16, idTo>>16, cf.ID, ct.ID)
	}
	s.Check("the identities on the wire name the clusters the topology gives", "identity bits 16-23", wantCluster)
	hop(from, to, false, nf, nt, idFrom, cf)
	hop(to, from, true, nt, nf, idTo, ct)
	// tshark, an independent dissector, reads the same VNI on the sender's NIC.
	s.Check(fmt.Sprintf("tshark reads VNI %d on %s/%s", idFrom, nf.Name, uf.Name), session.PcapPath(nf.Name, uf.Name),
		tsharkAgrees(ctx, session.PcapPath(nf.Name, uf.Name), overlays["vxlan"], idFrom))
	return nil
}

type globalServiceWith struct {
	Client      scenarios.PodRef     `json:"client" required:"true" doc:"the pod that connects"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP service with whoami servers"`
	Connections int                  `json:"connections" range:"1..1000" doc:"connections counted (default 30)"`
	In          string               `json:"in" doc:"the cluster whose Service changes first (with annotations or remove); empty: none changes"`
	Annotations map[string]string    `json:"annotations" doc:"the changed Service's annotations (replacing the file's)"`
	Remove      []scenarios.PodRef   `json:"remove" doc:"backend pods the changed Service no longer lists"`
}

func (w *globalServiceWith) Validate(e strictyaml.FieldErrors) {
	if w.In == "" && (len(w.Annotations) > 0 || len(w.Remove) > 0) {
		e.Add("in", "annotations and remove change one cluster's Service: name it")
	}
}

type globalServiceExpect struct {
	Reach []scenarios.PodRef `json:"reach" required:"true" doc:"the backend pods connections land on: each gets at least one, no other gets any"`
}

func runGlobalService(ctx context.Context, s *scenarios.Stage, w globalServiceWith, e globalServiceExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	svc, ok := s.Services[string(w.Service)]
	if !ok {
		return fmt.Errorf("service %s is not programmed in this stage", w.Service)
	}
	if w.In != "" {
		changed := svc
		if w.Annotations != nil {
			changed.Annotations = maps.Clone(w.Annotations)
		}
		changed.Backends = nil
		for _, b := range svc.Backends {
			removed := false
			for _, r := range w.Remove {
				if p, err := s.T.Pod(string(r)); err == nil && p.IP == b.IP {
					removed = true
				}
			}
			if !removed {
				changed.Backends = append(changed.Backends, b)
			}
		}
		if err := agents.ServiceUpsertIn(ctx, w.In, changed); err != nil {
			return err
		}
		s.Progress("service %s changed in cluster %s: annotations %v, backends %d of %d", svc.Name, w.In, changed.Annotations, len(changed.Backends), len(svc.Backends))
	}
	want := map[string]bool{}
	for _, r := range e.Reach {
		want[string(r)] = true
	}
	dst := netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	round := func(n int) (map[string]int, error) {
		counts := map[string]int{}
		var errs []error
		for i := 0; i < n; i++ {
			name, err := whoami(s.T, string(w.Client), dst, time.Second)
			if err != nil {
				errs = append(errs, err)
				counts["(failed)"]++
				continue
			}
			counts[name]++
		}
		return counts, errors.Join(errs...)
	}
	matches := func(counts map[string]int) error {
		var errs []error
		for name, n := range counts {
			if !want[name] && n > 0 {
				errs = append(errs, fmt.Errorf("%d connections landed on %s, not one of %v", n, name, e.Reach))
			}
		}
		for name := range want {
			if counts[name] == 0 {
				errs = append(errs, fmt.Errorf("no connection landed on %s", name))
			}
		}
		return errors.Join(errs...)
	}
	// The change travels through etcd to the other clusters' agents: wait (bounded) for
	// a round that matches, then count the measured one.
	deadline := time.Now().Add(meshWait)
	var counts map[string]int
	for {
		c, rerr := round(w.Connections)
		counts = c
		if rerr == nil && matches(c) == nil || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	counts, rerr := round(w.Connections)
	cl, _ := podCluster(s, string(w.Client))
	perCluster := map[string]int{}
	for name, n := range counts {
		if c, err := podCluster(s, name); err == nil {
			perCluster[c.Name] += n
		}
	}
	s.Check(fmt.Sprintf("%d connections from %s (cluster %s) to %s land on %v only, each at least once", w.Connections, w.Client, cl.Name, svc.Name, e.Reach),
		fmt.Sprintf("whoami answers per backend %v, per cluster %v", counts, perCluster), errors.Join(rerr, matches(counts)))
	return nil
}

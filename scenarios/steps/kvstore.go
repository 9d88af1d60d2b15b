// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/google/gopacket/layers"

	"podpath/datapath/kvstore"
	"podpath/datapath/maps"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
	"podpath/topology/agentrun"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[kvStatusWith, kvStatusExpect]{
		Name:    "kvstore-status",
		Summary: "every agent's KVStore status: N/N etcd members connected and a quorum (N from the topology's etcd)",
		Agents:  true,
		Run:     runKVStatus,
	})
	scenarios.RegisterStep(scenarios.StepDef[kvIdentityWith, none]{
		Name: "kvstore-identity",
		Summary: "pods with the same labels on different nodes share one identity: read from etcd with etcdctl (ip/v1 and " +
			"identities/v1 keys, labels as the topology gives them) and from the VNI of their packets on the wire",
		Agents: true,
		Run:    runKVIdentity,
	})
	scenarios.RegisterStep(scenarios.StepDef[etcdOutageWith, etcdOutageExpect]{
		Name: "etcd-outage",
		Summary: "every etcd member stopped during a continuous ping and new TCP flows between known pods: nothing lost, " +
			"agents report the outage, then reconnect and resync when etcd is back",
		Agents: true,
		With:   etcdOutageWith{Outage: 5 * time.Second, Interval: 20 * time.Millisecond},
		Run:    runEtcdOutage,
	})
}

const kvWait = 20 * time.Second

// kvLeaseTTL is the agents' lease TTL (kvstore.Options' default).
const kvLeaseTTL = 15 * time.Second

func etcdOf(s *scenarios.Stage) (topology.Etcd, error) {
	e, ok := s.T.(topology.Etcd)
	if !ok || s.T.Spec().Etcd == nil {
		return nil, errors.New("the stage's topology runs no etcd (declare etcd: {members: N, segment: S})")
	}
	return e, nil
}

type kvStatusWith struct {
	Nodes []scenarios.NodeRef `json:"nodes" doc:"whose agents (default: every node's)"`
}

type kvStatusExpect struct {
	Quorum bool `json:"quorum" doc:"true: every member connected and has-quorum=true; false: has-quorum=false (an outage)"`
}

func stageNodes(s *scenarios.Stage, refs []scenarios.NodeRef) []string {
	var out []string
	for _, n := range refs {
		out = append(out, string(n))
	}
	if len(out) == 0 {
		for _, n := range s.T.Nodes() {
			out = append(out, n.Name)
		}
	}
	return out
}

// waitKV polls node's agent status until want says yes or kvWait passes; it returns
// the last KVStore line.
func waitKV(ctx context.Context, agents *agentrun.Agents, node string, want func(*kvstore.Status) bool) (string, error) {
	deadline := time.Now().Add(kvWait)
	last := "no status"
	for {
		st, err := agents.Client(node).Status(ctx)
		switch {
		case err != nil:
			last = err.Error()
		case st.KVStore == nil:
			last = "no KVStore in the status (kvstore mode off?)"
		default:
			last = st.KVStore.String()
			if want(st.KVStore) {
				return last, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return last, fmt.Errorf("not within %v; last KVStore status: %s", kvWait, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func runKVStatus(ctx context.Context, s *scenarios.Stage, w kvStatusWith, e kvStatusExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	if _, err := etcdOf(s); err != nil {
		return err
	}
	members := s.T.Spec().Etcd.Members
	for _, n := range stageNodes(s, w.Nodes) {
		want := func(k *kvstore.Status) bool {
			return k.HasQuorum && k.Connected == members && len(k.Endpoints) == members
		}
		title := fmt.Sprintf("%s's agent: KVStore Ok, etcd %d/%d connected, has-quorum=true", n, members, members)
		if !e.Quorum {
			want = func(k *kvstore.Status) bool { return !k.HasQuorum && k.Connected == 0 }
			title = fmt.Sprintf("%s's agent reports the etcd outage: 0/%d connected, has-quorum=false", n, members)
		}
		line, err := waitKV(ctx, agents, n, want)
		s.Check(title, "podpath-agent status of "+n+": KVStore: "+line, err)
	}
	return nil
}

type kvIdentityWith struct {
	Pods []scenarios.PodRef `json:"pods" required:"true" doc:"two or more pods with the same labels, on different nodes; the first one sends the probe whose VNI is read"`
}

func (w *kvIdentityWith) Validate(e strictyaml.FieldErrors) {
	if len(w.Pods) < 2 {
		e.Add("pods", "want at least two pods")
	}
}

// etcdGet reads one key with etcdctl from the first etcd member's namespace.
func etcdGet(ctx context.Context, s *scenarios.Stage, key string) (string, error) {
	e, err := etcdOf(s)
	if err != nil {
		return "", err
	}
	out, err := e.Etcdctl(ctx, topology.EtcdMemberName(1), "get", "--print-value-only", key)
	if err != nil {
		return "", err
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("etcdctl get %s: no such key", key)
	}
	return v, nil
}

func runKVIdentity(ctx context.Context, s *scenarios.Stage, w kvIdentityWith, _ none) error {
	ids := map[string]uint32{}
	var firstLabels string
	for i, ref := range w.Pods {
		p, err := s.T.Pod(string(ref))
		if err != nil {
			return err
		}
		labels := kvstore.CanonicalLabels(agentrun.PodLabels(s.T.Spec(), p.Name), "")
		if i == 0 {
			firstLabels = labels
		} else if labels != firstLabels {
			return fmt.Errorf("pods %s and %s have different labels in the topology (%s, %s): the step wants the same", w.Pods[0], p.Name, firstLabels, labels)
		}
		key := kvstore.IPKey(p.IP)
		var cerr error
		v, err := etcdGet(ctx, s, key)
		var pair kvstore.IPIdentityPair
		if err == nil {
			err = json.Unmarshal([]byte(v), &pair)
		}
		node, _ := s.T.Node(p.Node)
		switch {
		case err != nil:
			cerr = err
		case pair.HostIP != node.InternalIP.String():
			cerr = fmt.Errorf("HostIP %s, want %s's InternalIP %s: %s", pair.HostIP, p.Node, node.InternalIP, v)
		case pair.ID < kvstore.FirstIdentity:
			cerr = fmt.Errorf("ID %d is not an allocated identity (want >= %d): %s", pair.ID, kvstore.FirstIdentity, v)
		}
		if cerr == nil {
			lv, err := etcdGet(ctx, s, kvstore.IdentityIDKey(pair.ID))
			if err != nil {
				cerr = err
			} else if lv != labels {
				cerr = fmt.Errorf("identity %d has labels %q, want the topology's %q", pair.ID, lv, labels)
			}
		}
		ids[p.Name] = pair.ID
		s.Check(fmt.Sprintf("etcd: %s's address maps to an identity whose labels are the pod's (%s)", p.Name, labels),
			"etcdctl get "+key+" and "+kvstore.IdentitiesPrefix+"id/<ID>", cerr)
	}
	first := string(w.Pods[0])
	var serr error
	if ids[first] == 0 {
		serr = fmt.Errorf("%s has no identity in etcd", first)
	}
	for _, ref := range w.Pods[1:] {
		if ids[string(ref)] != ids[first] {
			serr = errors.Join(serr, fmt.Errorf("%s has identity %d, %s has %d", first, ids[first], ref, ids[string(ref)]))
		}
	}
	var names []string
	for _, ref := range w.Pods {
		names = append(names, string(ref))
	}
	s.Check(fmt.Sprintf("etcd: pods with the same labels share one identity (%s)", strings.Join(names, ", ")), "the ID of each pod's ip/v1 key", serr)

	// The other nodes learned each pod from etcd: a /32 in their pinned ipcache with
	// that identity and the pod's node as tunnel endpoint (waiting for the watch).
	for _, ref := range w.Pods {
		p, _ := s.T.Pod(string(ref))
		owner, _ := s.T.Node(p.Node)
		for _, n := range s.T.Nodes() {
			if n.Name == p.Node {
				continue
			}
			s.Check(fmt.Sprintf("%s's ipcache holds %s/32 from etcd: identity %d, tunnel endpoint %s", n.Name, p.Name, ids[p.Name], p.Node),
				fmt.Sprintf("%s pinned map ipcache (%s/32)", n.Name, p.IP),
				waitIPCache(ctx, filepath.Join(s.T.Dir(), "bpffs", n.Name, "maps"), netip.PrefixFrom(p.IP, 32), ids[p.Name], owner.InternalIP))
		}
	}

	// The wire: the first pod's packets carry that identity in the VNI.
	from, _ := s.T.Pod(first)
	to, _ := s.T.Pod(string(w.Pods[1]))
	n1, _ := s.T.Node(from.Node)
	u1 := internalIface(n1)
	m1, _ := s.T.Member(n1.Name)
	dir := filepath.Join(s.Artifacts, "kvstore-identity-"+first)
	session, err := capture.Start(dir, capture.Point{Member: n1.Name, Interface: u1.Name, NsPath: m1.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	exErr := probe.Exchange(ctx, s.T, probe.ICMP, first, to.Name)
	if err := session.Stop(); err != nil {
		return err
	}
	wire := session.Packets(n1.Name, u1.Name, capture.And(capture.InnerIPv4(ip(from.IP), ip(to.IP)), capture.ICMPEcho(ip(from.IP), ip(to.IP))))
	var werr error
	switch {
	case len(wire) == 0:
		werr = errors.Join(exErr, fmt.Errorf("no encapsulated echo request %s -> %s on %s/%s (pcap %s)", from.IP, to.IP, n1.Name, u1.Name, session.PcapPath(n1.Name, u1.Name)))
	default:
		vx, _ := wire[0].Decode().Layer(layers.LayerTypeVXLAN).(*layers.VXLAN)
		switch {
		case vx == nil:
			werr = fmt.Errorf("not VXLAN: %s", wire[0].Summary())
		case vx.VNI != ids[first]:
			werr = fmt.Errorf("VNI %d, want the identity etcd gives %s: %d (%s)", vx.VNI, first, ids[first], wire[0].Summary())
		}
	}
	s.Check(fmt.Sprintf("wire: %s's echo request to %s carries its etcd identity %d in the VNI", first, to.Name, ids[first]),
		fmt.Sprintf("%s/%s (pcap %s)", n1.Name, u1.Name, session.PcapPath(n1.Name, u1.Name)), werr)
	return nil
}

type etcdOutageWith struct {
	From     scenarios.PodRef `json:"from" required:"true" doc:"the pod that pings and opens TCP connections"`
	To       scenarios.PodRef `json:"to" required:"true" doc:"the pod it reaches"`
	Outage   time.Duration    `json:"outage" doc:"how long every etcd member stays stopped after the agents report the outage"`
	Interval time.Duration    `json:"interval" doc:"between echo requests (ping -i)"`
	AddPod   scenarios.PodRef `json:"addPod" doc:"a pod (not from or to) removed from its agent before the outage and added again (CNI ADD) while etcd is down: it waits with the init identity (5) and gets its labels' identity, and is reachable from from, after the resync"`
}

func (w *etcdOutageWith) Validate(e strictyaml.FieldErrors) {
	if w.AddPod != "" && (w.AddPod == w.From || w.AddPod == w.To) {
		e.Add("addPod", "%s is from or to: want a third pod", w.AddPod)
	}
}

// endpointIdentity is the identity node's agent holds for pod (0: not listed).
func endpointIdentity(ctx context.Context, agents *agentrun.Agents, node, pod string) (uint32, error) {
	eps, err := agents.Client(node).EndpointList(ctx)
	if err != nil {
		return 0, err
	}
	for _, ep := range eps {
		if ep.Name == pod {
			return ep.Identity, nil
		}
	}
	return 0, nil
}

type etcdOutageExpect struct {
	MaxLost int `json:"maxLost" range:"0.." doc:"echo requests and TCP exchanges that may fail"`
}

func runEtcdOutage(ctx context.Context, s *scenarios.Stage, w etcdOutageWith, e etcdOutageExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	et, err := etcdOf(s)
	if err != nil {
		return err
	}
	to, _ := s.T.Pod(string(w.To))
	// The ping spans the outage, the agents noticing it, and etcd's return and resync
	// (about 10 s here); it ends by itself after count x interval.
	span := w.Outage + 12*time.Second
	count := int(span / w.Interval)
	type result struct {
		lost int
		out  string
		err  error
	}
	pingDone := make(chan result, 1)
	pctx, pcancel := context.WithCancel(ctx)
	defer pcancel()
	go func() {
		lost, out, err := longPing(pctx, s.T, string(w.From), to.IP, count, w.Interval)
		pingDone <- result{lost, out, err}
	}()
	var added topology.Pod
	if w.AddPod != "" {
		added, _ = s.T.Pod(string(w.AddPod))
		if err := agents.Client(added.Node).EndpointDelete(ctx, added.Name); err != nil {
			return fmt.Errorf("remove %s before the outage: %w", added.Name, err)
		}
	}
	time.Sleep(300 * time.Millisecond)
	s.Progress("stopping every etcd member during a %s ping %s -> %s", w.Interval, w.From, w.To)
	stopErr := et.EtcdStop(ctx)
	s.Check("every etcd member stopped", "etcd processes in the members' namespaces", stopErr)
	nodes := stageNodes(s, nil)
	for _, n := range nodes {
		line, err := waitKV(ctx, agents, n, func(k *kvstore.Status) bool { return !k.HasQuorum && k.Connected == 0 })
		s.Check(n+"'s agent reports the etcd outage (has-quorum=false, 0 connected)", "podpath-agent status of "+n+": KVStore: "+line, err)
	}
	if w.AddPod != "" {
		aerr := agents.Client(added.Node).EndpointAdd(ctx, agents.Endpoint(added))
		id, lerr := endpointIdentity(ctx, agents, added.Node, added.Name)
		if aerr == nil && lerr == nil && id != 5 {
			aerr = fmt.Errorf("identity %d, want init (5) while etcd is down", id)
		}
		s.Check(fmt.Sprintf("%s added to %s's agent during the outage waits with the init identity (5)", added.Name, added.Node),
			"the endpoint list of "+added.Node+"'s agent", errors.Join(aerr, lerr))
	}
	// New TCP connections between known endpoints while etcd is down.
	var tcpFailed []string
	tcpTried := 0
	end := time.Now().Add(w.Outage)
	for time.Now().Before(end) {
		tcpTried++
		if err := probe.Exchange(ctx, s.T, probe.TCP, string(w.From), string(w.To)); err != nil {
			tcpFailed = append(tcpFailed, err.Error())
		}
		time.Sleep(200 * time.Millisecond)
	}
	var terr error
	if len(tcpFailed) > e.MaxLost {
		terr = fmt.Errorf("%d of %d new TCP connections failed: %s", len(tcpFailed), tcpTried, strings.Join(tcpFailed, "; "))
	}
	s.Check(fmt.Sprintf("new TCP connections %s -> %s during the outage: at most %d of %d fail", w.From, w.To, e.MaxLost, tcpTried),
		"the echo server's answers in "+string(w.To), terr)
	resyncs := map[string]int{}
	for _, n := range nodes {
		if st, err := agents.Client(n).Status(ctx); err == nil && st.KVStore != nil {
			resyncs[n] = st.KVStore.Resyncs
		}
	}
	s.Progress("starting every etcd member again")
	startErr := et.EtcdStart(ctx)
	s.Check("every etcd member back and healthy", "etcdctl endpoint health --cluster", startErr)
	members := s.T.Spec().Etcd.Members
	for _, n := range nodes {
		line, err := waitKV(ctx, agents, n, func(k *kvstore.Status) bool {
			return k.HasQuorum && k.Connected == members && k.Resyncs > resyncs[n]
		})
		s.Check(fmt.Sprintf("%s's agent reconnects (%d/%d, has-quorum=true) and resyncs", n, members, members),
			"podpath-agent status of "+n+": KVStore: "+line+" (resyncs before: "+strconv.Itoa(resyncs[n])+")", err)
	}
	if w.AddPod != "" {
		labels := kvstore.CanonicalLabels(agentrun.PodLabels(s.T.Spec(), added.Name), "")
		deadline := time.Now().Add(kvWait)
		var err error
		var id uint32
		for {
			err = nil
			var v, lv string
			var pair kvstore.IPIdentityPair
			if v, err = etcdGet(ctx, s, kvstore.IPKey(added.IP)); err == nil {
				if err = json.Unmarshal([]byte(v), &pair); err == nil {
					if lv, err = etcdGet(ctx, s, kvstore.IdentityIDKey(pair.ID)); err == nil && lv != labels {
						err = fmt.Errorf("identity %d has labels %q, want %q", pair.ID, lv, labels)
					}
				}
			}
			if err == nil {
				var aid uint32
				if aid, err = endpointIdentity(ctx, agents, added.Node, added.Name); err == nil && aid != pair.ID {
					err = fmt.Errorf("agent holds identity %d, etcd %d", aid, pair.ID)
				}
				id = pair.ID
			}
			if err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(200 * time.Millisecond)
		}
		s.Check(fmt.Sprintf("after the resync %s has its labels' identity in etcd and in its agent", added.Name),
			fmt.Sprintf("etcdctl get %s and identities/v1/id/%d; %s's endpoint list", kvstore.IPKey(added.IP), id, added.Node), err)
		var xerr error
		for _, proto := range []probe.Protocol{probe.ICMP, probe.TCP} {
			xerr = errors.Join(xerr, probe.Exchange(ctx, s.T, proto, string(w.From), added.Name))
		}
		s.Check(fmt.Sprintf("%s reaches %s, added during the outage, after the resync (icmp, tcp)", w.From, added.Name),
			"the echo server's answers in "+added.Name, xerr)
	}
	// The keys must outlive the lease the agents had before the outage.
	s.Progress("waiting one lease TTL (%v) after the resync", kvLeaseTTL+2*time.Second)
	time.Sleep(kvLeaseTTL + 2*time.Second)
	out, lerr := et.Etcdctl(ctx, topology.EtcdMemberName(1), "get", "--keys-only", "--prefix", kvstore.IPPrefix+kvstore.AddressSpace+"/")
	if lerr == nil {
		var missing []string
		for _, p := range s.T.Pods() {
			if !strings.Contains(string(out), kvstore.IPKey(p.IP)+"\n") {
				missing = append(missing, p.Name+" ("+kvstore.IPKey(p.IP)+")")
			}
		}
		if len(missing) > 0 {
			lerr = fmt.Errorf("no key for %s; keys:\n%s", strings.Join(missing, ", "), out)
		}
	}
	s.Check(fmt.Sprintf("every pod's ip/v1 key is still in etcd %v after the resync (the agents' leases live on)", kvLeaseTTL+2*time.Second),
		"etcdctl get --prefix "+kvstore.IPPrefix+kvstore.AddressSpace+"/", lerr)
	r := <-pingDone
	var perr error
	if r.lost > e.MaxLost {
		perr = fmt.Errorf("%d echo requests unanswered (at most %d):\n%s", r.lost, e.MaxLost, r.out)
	}
	s.Check(fmt.Sprintf("ping %s -> %s every %s across the outage: at most %d lost", w.From, w.To, w.Interval, e.MaxLost),
		"ping's statistics in "+string(w.From), perr)
	return nil
}

// longPing is `ping -c count -i interval` whose deadline allows for a loaded machine
// (ping's timer slips: count x interval plus a quarter and 3 s); it returns how many
// requests went unanswered, and ping's summary.
func longPing(ctx context.Context, t topology.Cluster, src string, dst netip.Addr, count int, interval time.Duration) (int, string, error) {
	within := time.Duration(count)*interval*5/4 + 3*time.Second
	b, err := probe.Exec(ctx, t, within, src, "ping", "-q", "-c", strconv.Itoa(count), "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1", dst.String())
	out := string(b)
	for _, line := range strings.Split(out, "\n") {
		var sent, recv int
		if _, serr := fmt.Sscanf(line, "%d packets transmitted, %d received", &sent, &recv); serr == nil && sent > 0 {
			return sent - recv + (count - sent), out, nil
		}
	}
	return count, out, errors.Join(errors.New("no ping statistics (ping killed at its deadline?)"), err)
}

// waitIPCache waits (kvWait) until the pinned ipcache under dir holds prefix with
// identity and tunnel endpoint.
func waitIPCache(ctx context.Context, dir string, prefix netip.Prefix, identity uint32, tunnel netip.Addr) error {
	m, err := maps.OpenPinned(dir)
	if err != nil {
		return err
	}
	defer m.Close()
	deadline := time.Now().Add(kvWait)
	for {
		cache, err := m.IPCacheList()
		if err != nil {
			return err
		}
		last := "no entry"
		for _, e := range cache {
			if e.Prefix == prefix {
				if e.Identity == identity && e.TunnelEndpoint == tunnel {
					return nil
				}
				last = fmt.Sprintf("identity %d, tunnel endpoint %s", e.Identity, e.TunnelEndpoint)
			}
		}
		if identity == 0 || time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: %s within %v, want identity %d and tunnel endpoint %s", prefix, last, kvWait, identity, tunnel)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/config"
	"podpath/datapath/endpoint"
	"podpath/datapath/identity"
	"podpath/datapath/kvstore"
	"podpath/datapath/maps"
)

// Options configure one agent. The agent runs inside its node's network namespace.
type Options struct {
	Node string
	// ConfigFile is a cilium-config ConfigMap in any form datapath/config accepts; empty
	// means Cilium's defaults (tunnel mode, VXLAN).
	ConfigFile string
	// Devices are the underlay NICs that get from-netdev/to-netdev.
	Devices []string
	// PodCIDR of this node; pods get addresses from it, its first address is their gateway.
	PodCIDR netip.Prefix
	// NodeIP is the node's address for node-to-node traffic (Kubernetes' InternalIP);
	// the device holding it carries the tunnels and sets the MTU. Default: the first
	// IPv4 address of the first device.
	NodeIP netip.Addr
	// Zone is the node's topology.kubernetes.io/zone label: with
	// enable-service-topology its frontends take the backends hinted for it.
	Zone string
	// StateDir holds the desired state (desired.json) and the API socket (agent.sock).
	StateDir string
	// BPFFS is this node's folder on a bpf filesystem, for pinned maps and links.
	BPFFS string
	// Cgroup is the node's cgroup v2 directory (e.g. /sys/fs/cgroup/unified/RUN/NODE,
	// made by the harness, holding every process of the node and its pods): with
	// bpf-lb-sock the agent attaches socket-LB there. Empty with bpf-lb-sock: socket-LB
	// is not attached, and the agent warns.
	Cgroup string
	// EtcdConfig is the etcd-config file (the file kvstore-opt's etcd.config names; the
	// harness writes one per node); empty: the config's inline etcd-config key.
	EtcdConfig string
	// ClusterName and ClusterID override the config's cluster-name and cluster-id
	// (Cilium's --cluster-name and --cluster-id flags); "" and 0: the config's.
	ClusterName string
	ClusterID   uint32
	// ClusterMeshConfig is Cilium's clustermesh-config directory: one file per remote
	// cluster, named after it, holding its etcd-config (mesh.go).
	ClusterMeshConfig string
	// HubbleSocket, when set, is the unix socket where the agent serves Hubble's
	// Observer API (hubble.go); the agent then consumes the node's trace ring buffer.
	HubbleSocket string
	// HubbleBufferCapacity is how many flows the agent keeps (default 4095, Cilium's).
	HubbleBufferCapacity int
	// MetricsAddr, when set, is the TCP address (in the node's namespace) of the
	// agent's Prometheus metrics; it too consumes the trace ring buffer.
	MetricsAddr string
	Log         *slog.Logger
}

// Agent reconciles the node's datapath with the desired endpoints and nodes.
type Agent struct {
	opts   Options
	cfg    *config.Config
	report *config.Report
	store  *store
	nl     *netlink.Handle
	dp     *datapath

	mu       sync.Mutex // serialises reconciliation
	problems map[string]string
	// mesh is the view of the remote clusters (mesh.go).
	mesh *mesh
	// peers is the per-peer tunnel MTU table (pmtu.go), by node name.
	peers map[string]PeerMTU
	// Identities and policy (policy.go): ids allocates identities from labels,
	// cidrs are the CIDR prefixes policy put into the ipcache.
	ids   identity.Allocator
	cidrs map[netip.Prefix]identity.ID

	// CNI attachments (attachments.go): cniMu serialises them, ipam keeps their
	// addresses, pods (optional) says which address a pod asks for.
	cniMu sync.Mutex
	ipam  *ipamStore
	pods  PodAddresses

	// bgp is the BGP speaker (bgp.go); nil unless enable-bgp-control-plane.
	bgp *bgpSpeaker
	// kv is the etcd connection with kvstore: etcd (kvstore.go); nil otherwise.
	kv *kvstore.Store
}

// Socket returns the API socket path of an agent with this state dir.
func Socket(stateDir string) string { return filepath.Join(stateDir, "agent.sock") }

// New validates the options and the configuration; it changes nothing on the node.
func New(opts Options) (*Agent, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	var errs []error
	if !nameRE.MatchString(opts.Node) {
		errs = append(errs, fmt.Errorf("node: %q is not a valid node name", opts.Node))
	}
	if !opts.PodCIDR.IsValid() || !opts.PodCIDR.Addr().Is4() || opts.PodCIDR.Bits() > 30 {
		errs = append(errs, fmt.Errorf("pod-cidr: %v is not an IPv4 prefix of /30 or shorter", opts.PodCIDR))
	}
	if len(opts.Devices) == 0 {
		errs = append(errs, errors.New("devices: at least one underlay device is required"))
	}
	if opts.StateDir == "" || opts.BPFFS == "" {
		errs = append(errs, errors.New("state-dir and bpffs: both folders are required"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("agent options: %w", err)
	}
	a := &Agent{opts: opts, problems: map[string]string{}, mesh: newMesh(), peers: map[string]PeerMTU{}, ids: identity.NewLocal()}
	var err error
	if a.cfg, a.report, err = loadConfig(opts.ConfigFile); err == nil {
		a.cfg.IPMasqAgentConfigPath = ipMasqAgentPath(a.cfg.IPMasqAgentConfigPath, opts.ConfigFile)
	}
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent state dir: %w", err)
	}
	if a.store, err = openStore(opts.StateDir); err != nil {
		return nil, err
	}
	if a.ipam, err = openIPAM(opts.StateDir); err != nil {
		return nil, err
	}
	if a.nl, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	return a, nil
}

// loadConfig reads and validates the agent's cilium-config (the defaults without a
// file), as `podpath validate` does: every combination rule lives in package config.
func loadConfig(file string) (*config.Config, *config.Report, error) {
	if file == "" {
		return config.Default(), &config.Report{Source: "defaults"}, nil
	}
	return config.ParseFile(file)
}

// Run loads or adopts the datapath, reconciles everything, then serves the API until ctx
// ends. On return the programs stay attached and the maps pinned: the datapath keeps
// forwarding while no agent runs.
func (a *Agent) Run(ctx context.Context) error {
	// Every setting podpath does not do as written is a WARNING line saying what
	// podpath does instead; `podpath-agent status` lists them again.
	for _, f := range a.report.Warnings {
		a.opts.Log.Warn("config "+f.String(), "key", f.Key)
	}
	if n := len(a.report.Warnings); n > 0 {
		a.opts.Log.Warn(fmt.Sprintf("config: %d settings are not done as written (see the warnings above, or podpath-agent status)", n))
	}
	for _, f := range a.report.Notices {
		a.opts.Log.Info("config "+f.String(), "key", f.Key)
	}
	if a.cfg.ServiceTopology && a.opts.Zone == "" {
		a.opts.Log.Warn("config enable-service-topology: this node has no zone (--zone): every backend serves it")
	}
	dp, err := openDatapath(a.cfg, a.opts, a.nodeID())
	if err != nil {
		return err
	}
	a.dp = dp
	defer dp.Close()
	// The FIB generation follows every route, neighbour and link change from here on;
	// the watcher ends (and stops using dp_gen) before the datapath is closed.
	fibCtx, fibStop := context.WithCancel(ctx)
	fibDone := make(chan struct{})
	go func() {
		defer close(fibDone)
		watchFIB(fibCtx, nil, func(why string) { dp.bumpGen(maps.GenFIB, why) }, a.opts.Log, nil)
	}()
	defer func() { fibStop(); <-fibDone }()
	for _, dev := range a.opts.Devices {
		if err := a.dp.attachDevice(dev); err != nil {
			return err
		}
		if err := a.dp.attachXDP(dev, a.cfg.LBAcceleration); err != nil {
			return err
		}
	}
	if err := a.dp.attachOverlay(); err != nil {
		return err
	}
	if err := a.dp.attachSock(a.cfg, a.opts.Cgroup, a.opts.Log); err != nil {
		return err
	}
	if err := a.reconcileAll(ctx); err != nil {
		a.opts.Log.Warn("reconcile", "err", err)
	}
	if err := a.masqSetup(ctx); err != nil {
		return fmt.Errorf("masquerading: %w", err)
	}
	go a.watchPeerMTUs(ctx)
	bgpDone := a.startBGP(ctx)
	if err := a.startObservability(ctx); err != nil {
		return err
	}
	if err := a.startKVStore(ctx); err != nil {
		return err
	}
	if err := a.startClusterMesh(ctx); err != nil {
		return err
	}
	a.opts.Log.Info("agent ready", "node", a.opts.Node, "socket", Socket(a.opts.StateDir), "adopted", dp.adopted)
	err = a.serve(ctx, Socket(a.opts.StateDir))
	<-bgpDone // BGP told its peers (Cease) before the agent exits
	return err
}

// nodeID numbers this node in trace records: stable for a name.
func (a *Agent) nodeID() uint32 {
	for _, n := range a.store.nodes() {
		if n.Name == a.opts.Node && n.ID != 0 {
			return n.ID
		}
	}
	return hash32(a.opts.Node)%0xfffe + 1
}

func hash32(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}

// Reserved identities, as Cilium numbers them.
const (
	identityHost       = 1
	identityWorld      = 2
	identityRemoteNode = 6
)

// hostVethName is lxc-<name> when it fits 15 characters, else lxc + 8 hex of a hash.
func hostVethName(pod string) string {
	if n := "lxc-" + pod; len(n) <= 15 {
		return n
	}
	return fmt.Sprintf("lxc%08x", hash32(pod))
}

func (a *Agent) setProblem(key, msg string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if msg == "" {
		delete(a.problems, key)
	} else {
		a.problems[key] = msg
	}
}

// EndpointAdd records a pod and plumbs it: veth, addresses, routes, programs, maps.
// Adding the same endpoint again reconciles it (idempotent, like CNI ADD on retry).
func (a *Agent) EndpointAdd(ctx context.Context, ep Endpoint) error {
	if ep.HostVeth == "" {
		ep.HostVeth = hostVethName(ep.Name)
	}
	if ep.Identity == 0 {
		id, err := a.allocateIdentity(ctx, ep)
		if err != nil {
			return err
		}
		ep.Identity = id
	}
	if err := ep.validate(a.opts.PodCIDR); err != nil {
		return &InputError{Err: err}
	}
	err := a.store.update(func(d *desired) error {
		for _, other := range d.Endpoints {
			if other.Name != ep.Name && (other.IP == ep.IP || other.HostVeth == ep.HostVeth) {
				return badInput("endpoint %s: ip %s / hostVeth %s already used by endpoint %s", ep.Name, ep.IP, ep.HostVeth, other.Name)
			}
		}
		d.Endpoints[ep.Name] = ep
		return nil
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if err := errors.Join(a.reconcileEndpoint(ep), a.programPolicies()); err != nil {
		return err
	}
	a.kvEndpointUpsert(ctx, ep)
	return nil
}

// EndpointDelete removes a pod's map entries, programs and veth.
func (a *Agent) EndpointDelete(ctx context.Context, name string) error {
	var ep Endpoint
	err := a.store.update(func(d *desired) error {
		var ok bool
		if ep, ok = d.Endpoints[name]; !ok {
			return badInput("endpoint %s: not found", name)
		}
		delete(d.Endpoints, name)
		return nil
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.kvEndpointDelete(ctx, ep)
	return errors.Join(a.removeEndpoint(ep), a.programPolicies())
}

// NodeUpsert records a cluster node and programs the ipcache, node map and routes.
func (a *Agent) NodeUpsert(ctx context.Context, n Node) error {
	if err := n.validate(); err != nil {
		return &InputError{Err: err}
	}
	if n.ID == 0 {
		n.ID = hash32(n.Name)%0xfffe + 1
	}
	if err := a.store.update(func(d *desired) error { d.Nodes[n.Name] = n; return nil }); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.reconcileNode(n), a.masqNodesChanged(ctx), a.programPolicies())
}

// NodeDelete removes a node's ipcache entries, node map entry and route.
func (a *Agent) NodeDelete(ctx context.Context, name string) error {
	var n Node
	err := a.store.update(func(d *desired) error {
		var ok bool
		if n, ok = d.Nodes[name]; !ok {
			return badInput("node %s: not found", name)
		}
		delete(d.Nodes, name)
		return nil
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.removeNode(n), a.masqNodesChanged(ctx), a.programPolicies())
}

// ServiceUpsert records a service and programs its frontends and backends.
func (a *Agent) ServiceUpsert(ctx context.Context, s Service) error {
	if err := a.balancing("service " + s.Name); err != nil {
		return err
	}
	if err := s.validate(); err != nil {
		return &InputError{Err: err}
	}
	a.warnService(&s)
	return a.recordAndProgram([]Service{s})
}

// ServicesUpsert records many services in one step and programs them together (see
// programServices): what a watcher resyncing thousands of Services, or a restart,
// needs. Every invalid service is named; none is recorded then.
func (a *Agent) ServicesUpsert(ctx context.Context, list []Service) error {
	if err := a.balancing("services"); err != nil {
		return err
	}
	var errs []error
	seen := map[string]bool{}
	for i := range list {
		if err := list[i].validate(); err != nil {
			errs = append(errs, fmt.Errorf("services[%d]: %w", i, err))
		}
		if seen[list[i].Name] {
			errs = append(errs, fmt.Errorf("services[%d]: name %q given twice", i, list[i].Name))
		}
		seen[list[i].Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return &InputError{Err: err}
	}
	for i := range list {
		a.warnService(&list[i])
	}
	return a.recordAndProgram(list)
}

// warnService logs what of s podpath does not do as written (Service.Warnings).
func (a *Agent) warnService(s *Service) {
	for _, w := range append(s.Warnings(), s.TopologyWarnings(a.cfg.ServiceTopology, a.opts.Zone)...) {
		a.opts.Log.Warn(w, "service", s.Name)
	}
}

// balancing refuses services (what names them) when the agent balances none.
func (a *Agent) balancing(what string) error {
	if a.cfg.KubeProxyReplacement != config.KPRTrue {
		return badInput("%s: kube-proxy-replacement is off in the cilium-config: this agent balances no service", what)
	}
	return nil
}

// recordAndProgram saves valid services in the desired state and programs them.
// Backends the services had before and no service has now are deleted afterwards
// (removedBackends): conntrack entries of flows to them then find no backend and
// their next packet picks a live one. Left in place, a removed backend would keep
// every flow conntrack gave it (a UDP client sending from one port refreshes its
// entry forever) blackholed: the Kubernetes e2e test "should be able to preserve UDP
// traffic when server pod cycles".
func (a *Agent) recordAndProgram(list []Service) error {
	prev := map[string]Service{}
	if err := a.store.update(func(d *desired) error {
		for _, s := range list {
			if old, ok := d.Services[s.Name]; ok {
				prev[s.Name] = old
			}
			d.Services[s.Name] = s
		}
		return nil
	}); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	err := a.programServices(list)
	if err == nil {
		err = a.dp.deleteBackends(removedBackends(prev, a.store.services()))
	}
	a.opts.Log.Debug("services programmed", "count", len(list), "took", time.Since(start), "err", err)
	err = errors.Join(err, a.bgpServices())
	a.mu.Unlock()
	for _, s := range list {
		a.kvServiceUpsert(context.Background(), s)
	}
	a.mu.Lock()
	return err
}

// programServices programs services as the datapath takes them: a global service with
// the backends the mesh adds (withGlobalBackends). The caller holds a.mu.
func (a *Agent) programServices(list []Service) error {
	out := make([]Service, len(list))
	for i, s := range list {
		out[i] = a.withGlobalBackends(s)
	}
	return a.dp.programServices(out, a.cfg)
}

// ServiceDelete removes a service.
func (a *Agent) ServiceDelete(ctx context.Context, name string) error {
	var s Service
	err := a.store.update(func(d *desired) error {
		var ok bool
		if s, ok = d.Services[name]; !ok {
			return badInput("service %s: not found", name)
		}
		delete(d.Services, name)
		return nil
	})
	if err != nil {
		return err
	}
	a.kvServiceDelete(ctx, s)
	a.mu.Lock()
	defer a.mu.Unlock()
	return errors.Join(a.dp.unprogramService(&s, a.store.services()), a.bgpServices())
}

func (a *Agent) reconcileEndpoint(ep Endpoint) error {
	host, err := a.nl.LinkByName(ep.HostVeth)
	if err != nil {
		if err := a.plumb(ep); err != nil {
			a.problems["endpoint/"+ep.Name] = err.Error()
			return err
		}
		if host, err = a.nl.LinkByName(ep.HostVeth); err != nil {
			return fmt.Errorf("endpoint %s: find %s after plumbing: %w", ep.Name, ep.HostVeth, err)
		}
	}
	podMAC, err := a.podMAC(ep)
	if err != nil {
		a.problems["endpoint/"+ep.Name] = err.Error()
		return err
	}
	if err := a.dp.attachEndpoint(host); err != nil {
		return err
	}
	if err := a.dp.endpointUpsert(ep, host, podMAC); err != nil {
		return err
	}
	delete(a.problems, "endpoint/"+ep.Name)
	return nil
}

func (a *Agent) plumb(ep Endpoint) error {
	pod, err := netns.GetFromPath(ep.Netns)
	if err != nil {
		return fmt.Errorf("endpoint %s: open pod namespace %s: %w", ep.Name, ep.Netns, err)
	}
	defer pod.Close()
	if err := endpoint.EnsureGateway(a.nl, a.opts.PodCIDR.Addr().Next()); err != nil {
		return err
	}
	v := endpoint.Veth{
		HostName: ep.HostVeth, PodIP: ep.IP, MTU: ep.MTU, RouteMTU: a.dp.mtu.Route, Gateway: a.opts.PodCIDR.Addr().Next(),
	}
	if v.MTU == 0 {
		v.MTU = a.dp.mtu.Route
	}
	v.RouteMTU = min(v.RouteMTU, v.MTU)
	var perr error
	if v.HostMAC, perr = parseMAC(ep.HostMAC); perr != nil {
		return &InputError{Err: fmt.Errorf("endpoint %s: hostMAC: %w", ep.Name, perr)}
	}
	if v.PodMAC, perr = parseMAC(ep.PodMAC); perr != nil {
		return &InputError{Err: fmt.Errorf("endpoint %s: podMAC: %w", ep.Name, perr)}
	}
	return endpoint.Plumb(a.nl, pod, v)
}

func parseMAC(s string) (net.HardwareAddr, error) {
	if s == "" {
		return nil, nil
	}
	return net.ParseMAC(s)
}

// podMAC reads the MAC of eth0 inside the pod.
func (a *Agent) podMAC(ep Endpoint) (net.HardwareAddr, error) {
	pod, err := netns.GetFromPath(ep.Netns)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: open pod namespace %s: %w", ep.Name, ep.Netns, err)
	}
	defer pod.Close()
	h, err := netlink.NewHandleAt(pod)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: netlink in pod: %w", ep.Name, err)
	}
	defer h.Close()
	l, err := h.LinkByName("eth0")
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: pod eth0: %w", ep.Name, err)
	}
	return l.Attrs().HardwareAddr, nil
}

func (a *Agent) removeEndpoint(ep Endpoint) error {
	errs := []error{a.dp.endpointDelete(ep), a.dp.detachEndpoint(ep.HostVeth), endpoint.Unplumb(a.nl, ep.HostVeth)}
	delete(a.problems, "endpoint/"+ep.Name)
	return errors.Join(errs...)
}

func (a *Agent) reconcileNode(n Node) error {
	a.ensurePeerMTU(n)
	ident := a.podIdentity
	if a.kvIdentities() {
		ident = nil // etcd's ip/v1 keys place the remote pods, with etcd's identities (kvstore.go)
	}
	if err := a.dp.nodeUpsert(n, n.Name == a.opts.Node, a.peerMapMTU(n), ident); err != nil {
		return err
	}
	r, err := a.nodeRoute(n)
	if err != nil {
		a.problems["node/"+n.Name] = err.Error()
		return err
	}
	if r != nil {
		if err := a.nl.RouteReplace(r); err != nil {
			return fmt.Errorf("route %s via %s: %w", n.PodCIDR, r.Gw, err)
		}
	}
	delete(a.problems, "node/"+n.Name)
	return nil
}

// nodeRoute is the route the agent keeps to another node's PodCIDR: a direct route
// with auto-direct-node-routes in native routing, an MTU-carrying route in tunnel mode,
// none otherwise.
func (a *Agent) nodeRoute(n Node) (*netlink.Route, error) {
	switch {
	case n.Name == a.opts.Node:
		return nil, nil
	case a.peerNative(n):
		return crossSubnetDirectRoute(a.nl, n, a.peerPathMTU(n))
	case a.cfg.RoutingMode == config.RoutingTunnel:
		return tunnelRoute(a.nl, n, a.peerRouteMTU(n))
	case a.wantsDirectRoutes():
		return directRoute(a.nl, n)
	}
	return nil, nil
}

func (a *Agent) wantsDirectRoutes() bool {
	return a.cfg.AutoDirectNodeRoutes && a.cfg.RoutingMode == config.RoutingNative
}

func (a *Agent) removeNode(n Node) error {
	err := a.dp.nodeDelete(n)
	routes, rerr := ownedRoutes(a.nl)
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == n.PodCIDR.String() {
			rerr = errors.Join(rerr, a.nl.RouteDel(&r))
		}
	}
	delete(a.problems, "node/"+n.Name)
	delete(a.peers, n.Name)
	return errors.Join(err, rerr)
}

// reconcileAll brings everything in line with the desired state: entries and routes
// of endpoints and nodes that are gone are removed, the rest (re)programmed.
func (a *Agent) reconcileAll(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	eps, nodes := a.store.endpoints(), a.store.nodes()
	var errs []error
	errs = append(errs, a.dp.prune(eps, nodes))
	wantRoute := map[string]bool{}
	for _, n := range nodes {
		wantRoute[n.PodCIDR.String()] = n.Name != a.opts.Node && (a.wantsDirectRoutes() || a.cfg.RoutingMode == config.RoutingTunnel)
		if err := a.reconcileNode(n); err != nil {
			errs = append(errs, err)
		}
	}
	routes, err := ownedRoutes(a.nl)
	errs = append(errs, err)
	for _, r := range routes {
		if r.Dst != nil && !wantRoute[r.Dst.String()] {
			errs = append(errs, a.nl.RouteDel(&r))
		}
	}
	for _, ep := range eps {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.reconcileEndpoint(ep); err != nil {
			errs = append(errs, err)
		}
	}
	if a.cfg.KubeProxyReplacement == config.KPRTrue {
		errs = append(errs, a.programServices(a.store.services()))
	}
	errs = append(errs, a.programPolicies())
	return errors.Join(errs...)
}

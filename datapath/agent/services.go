// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/cilium/ebpf"

	"podpath/datapath/config"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
)

// Service is a Kubernetes Service as the API receives it: its frontends (cluster IP,
// node port, external IPs) and its backends.
type Service struct {
	Name        string           `json:"name"`
	Type        string           `json:"type"` // ClusterIP, NodePort or LoadBalancer
	ClusterIP   netip.Addr       `json:"clusterIP"`
	Port        uint16           `json:"port"`
	Protocol    string           `json:"protocol"` // TCP or UDP
	NodePort    uint16           `json:"nodePort,omitempty"`
	ExternalIPs []netip.Addr     `json:"externalIPs,omitempty"`
	Backends    []ServiceBackend `json:"backends"`

	// Service semantics (issue 12).
	// ExternalTrafficPolicy: Cluster (default) or Local: NodePort and external
	// frontends send new flows to this node's backends only (the client's address is
	// kept, no SNAT); a node without one drops them (DROP_SVC_NO_LOCAL_BACKEND).
	ExternalTrafficPolicy string `json:"externalTrafficPolicy,omitempty"`
	// InternalTrafficPolicy: Cluster (default) or Local: the ClusterIP frontend sends
	// pods' new flows to backends of their own node only.
	InternalTrafficPolicy string `json:"internalTrafficPolicy,omitempty"`
	// HealthCheckNodePort: with externalTrafficPolicy Local, the agent answers
	// kube-proxy's health check (JSON with localEndpoints; 200, or 503 without a
	// local backend) on this TCP port of the node.
	HealthCheckNodePort uint16 `json:"healthCheckNodePort,omitempty"`
	// SessionAffinity: None (default) or ClientIP: a client's new flows go to the
	// backend its last one got, while they come within SessionAffinityTimeout seconds
	// (default 10800).
	SessionAffinity        string `json:"sessionAffinity,omitempty"`
	SessionAffinityTimeout uint32 `json:"sessionAffinityTimeoutSeconds,omitempty"`
	// LoadBalancerSourceRanges: clients from outside (NodePort, external and
	// LoadBalancer frontends) must come from one of these (enable-svc-source-range-check).
	LoadBalancerSourceRanges []netip.Prefix `json:"loadBalancerSourceRanges,omitempty"`
	// TrafficDistribution: PreferClose asks for topology-aware routing; the
	// EndpointSlice controller then writes each backend's Zones (hints.forZones),
	// which are what the agent follows (enable-service-topology), as kube-proxy does.
	TrafficDistribution string `json:"trafficDistribution,omitempty"`
	// Unsupported names the fields of the Kubernetes Service the client saw set and
	// podpath does not implement: each is a warning (the agent logs it and the API
	// returns it), never silently dropped.
	Unsupported []string `json:"unsupported,omitempty"`
	// Annotations are the Service's; the cluster mesh reads the global service ones
	// (service.cilium.io/global, shared, affinity and their io.cilium/ aliases).
	Annotations map[string]string `json:"annotations,omitempty"`
}

// ServiceBackend is one endpoint of a service.
type ServiceBackend struct {
	IP   netip.Addr `json:"ip"`
	Port uint16     `json:"port"`
	// Weight for Maglev (default 1); State: active (default), terminating, maintenance.
	Weight uint16 `json:"weight,omitempty"`
	State  string `json:"state,omitempty"`
	// Zones are the EndpointSlice hints.forZones: with enable-service-topology, a
	// node of one of these zones sends its new flows here (topology-aware routing).
	Zones []string `json:"zones,omitempty"`
}

var backendStates = map[string]maps.BackendState{
	"": maps.BackendActive, "active": maps.BackendActive,
	"terminating": maps.BackendTerminating, "maintenance": maps.BackendMaintenance,
}

func (s *Service) validate() error {
	var errs []error
	if !nameRE.MatchString(s.Name) {
		errs = append(errs, fmt.Errorf("service name %q: want lowercase letters, digits, '-' or '.'", s.Name))
	}
	if _, err := ParseGlobalService(s.Annotations); err != nil {
		errs = append(errs, fmt.Errorf("service %s: %w", s.Name, err))
	}
	switch s.Type {
	case "ClusterIP", "NodePort", "LoadBalancer":
	default:
		errs = append(errs, fmt.Errorf("service %s: type: %q is not one of ClusterIP, NodePort, LoadBalancer", s.Name, s.Type))
	}
	if s.Protocol != "TCP" && s.Protocol != "UDP" {
		errs = append(errs, fmt.Errorf("service %s: protocol: %q is not one of TCP, UDP", s.Name, s.Protocol))
	}
	if !s.ClusterIP.Is4() {
		errs = append(errs, fmt.Errorf("service %s: clusterIP: %v is not an IPv4 address", s.Name, s.ClusterIP))
	}
	if s.Port == 0 {
		errs = append(errs, fmt.Errorf("service %s: port: 0 is not a port", s.Name))
	}
	if (s.Type != "ClusterIP") != (s.NodePort != 0) {
		errs = append(errs, fmt.Errorf("service %s: nodePort: %d, want one for NodePort and LoadBalancer services and none for ClusterIP", s.Name, s.NodePort))
	}
	errs = append(errs, s.validateSemantics()...)
	switch s.TrafficDistribution {
	case "", "PreferClose", "PreferSameZone":
	default:
		errs = append(errs, fmt.Errorf("service %s: trafficDistribution: %q is not one of PreferClose, PreferSameZone (zones are followed; PreferSameNode is not implemented)", s.Name, s.TrafficDistribution))
	}
	for i, b := range s.Backends {
		if !b.IP.Is4() || b.Port == 0 {
			errs = append(errs, fmt.Errorf("service %s: backends[%d]: %v:%d is not an IPv4 address and port", s.Name, i, b.IP, b.Port))
		}
		for j, z := range b.Zones {
			if z == "" {
				errs = append(errs, fmt.Errorf("service %s: backends[%d].zones[%d]: empty zone", s.Name, i, j))
			}
		}
		if _, ok := backendStates[b.State]; !ok {
			errs = append(errs, fmt.Errorf("service %s: backends[%d].state: %q is not one of active, terminating, maintenance", s.Name, i, b.State))
		}
	}
	return errors.Join(errs...)
}

func (s *Service) proto() maps.Proto {
	if s.Protocol == "UDP" {
		return maps.ProtoUDP
	}
	return maps.ProtoTCP
}

// stableID numbers a service or backend the same way on every node: Maglev tables are
// built from backend IDs, so IDs allocated per node would give each node its own table.
func stableID(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()%0xfffffffe + 1
}

func backendID(s *Service, b ServiceBackend) uint32 {
	return stableID(fmt.Sprintf("backend %s %s", netip.AddrPortFrom(b.IP, b.Port), s.Protocol))
}

// frontends are the addresses a service answers on here: its cluster IP, every
// NodePort address of this node (the IPv4 addresses of the --devices, as Cilium's
// NodePort frontends are the addresses of its `devices`) on the node port, and its
// external IPs.
func (s *Service) frontends(nodePortAddrs []netip.Addr) []maps.Service {
	key := func(a netip.Addr, port uint16) maps.ServiceKey {
		return maps.ServiceKey{Addr: a, Port: port, Proto: s.proto(), Scope: maps.ScopeExternal}
	}
	out := []maps.Service{{ServiceKey: key(s.ClusterIP, s.Port), Flags: maps.ServiceClusterIP}}
	if s.NodePort != 0 {
		for _, a := range nodePortAddrs {
			out = append(out, maps.Service{ServiceKey: key(a, s.NodePort), Flags: maps.ServiceNodePort})
		}
	}
	for _, ip := range s.ExternalIPs {
		out = append(out, maps.Service{ServiceKey: key(ip, s.Port), Flags: maps.ServiceExternal})
	}
	return out
}

// programServices writes services into the LB maps: backends, each frontend with its
// reverse-NAT entry and the active backends as slots, and the Maglev table when the
// algorithm is maglev (established flows keep their backends through conntrack).
// The tables are computed on every CPU and installed together before the frontends
// that use them are written (maps.LB.MaglevSetMany: one RCU grace period per batch
// of tables, not one per service). A service that fails is named in the error; the
// others are programmed.
func (d *datapath) programServices(list []Service, c *config.Config) error {
	lb := d.dp.LB
	errs := make([]error, len(list))
	if c.LBAlgorithm == config.LBMaglev {
		// Every backend set of every service (one per traffic-policy scope).
		type job struct {
			svc int
			set backendSet
		}
		var jobs []job
		for i := range list {
			for _, set := range d.backendSets(&list[i]) {
				jobs = append(jobs, job{i, set})
			}
		}
		tables := make([][]uint32, len(jobs))
		jerrs := make([]error, len(jobs))
		parallel(len(jobs), func(j int) {
			tables[j], jerrs[j] = maglev.Table(jobs[j].set.maglev, c.MaglevTableSize, c.MaglevHashSeed)
		})
		set := map[uint32][]uint32{}
		for j, jb := range jobs {
			switch {
			case errors.Is(jerrs[j], maglev.ErrNoBackends):
				if err := lb.MaglevDelete(jb.set.id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
					errs[jb.svc] = errors.Join(errs[jb.svc], err)
				}
			case jerrs[j] != nil:
				errs[jb.svc] = errors.Join(errs[jb.svc], fmt.Errorf("service %s: %w", list[jb.svc].Name, jerrs[j]))
			default:
				set[jb.set.id] = tables[j]
			}
		}
		if err := lb.MaglevSetMany(set); err != nil {
			return err
		}
	}
	for i := range list {
		if errs[i] == nil {
			errs[i] = d.programFrontends(&list[i], c)
		}
	}
	errs = append(errs, d.hostServiceRoutes(list, c))
	return errors.Join(errs...)
}

// programFrontends writes a service's backends, then each frontend with its
// reverse-NAT entry, its backend set as slots (backendSetFor: the traffic policy's
// scope, terminating backends only as the fallback) and its flags (Maglev, Local,
// affinity, source ranges), the source ranges of its sets, and the health check
// node port's server.
func (d *datapath) programFrontends(s *Service, c *config.Config) error {
	lb := d.dp.LB
	for _, b := range s.Backends {
		if err := lb.BackendUpsert(maps.Backend{ID: backendID(s, b), Addr: b.IP, Port: b.Port, Proto: s.proto(), State: backendStates[b.State]}); err != nil {
			return err
		}
	}
	timeout := s.affinityTimeout()
	ranged := map[uint32]bool{}
	for _, fe := range s.frontends(d.nodePortAddrs) {
		local := s.localFrontend(fe)
		set := s.backendSetFor(local, d.podCIDR, d.topologyZone)
		fe.ID, fe.Backends = set.id, set.ids
		fe.RevNatID = stableID("revnat " + fe.ServiceKey.String())
		if c.LBAlgorithm == config.LBMaglev {
			fe.Flags |= maps.ServiceMaglev
		}
		// A Local frontend of a service with backends elsewhere drops with its own
		// reason; a service with no backend at all is rejected like any other.
		if local && len(s.Backends) > 0 {
			fe.Flags |= maps.ServiceLocal
		}
		if set.fallback {
			fe.Flags |= maps.ServiceFallback
		}
		if timeout != 0 {
			fe.Flags |= maps.ServiceAffinity
			fe.AffinityTimeout = timeout
		}
		if len(s.LoadBalancerSourceRanges) > 0 && fe.Flags&maps.ServiceClusterIP == 0 {
			fe.Flags |= maps.ServiceSourceRange
			ranged[fe.ID] = true
		}
		if err := lb.RevNatUpsert(fe.RevNatID, netip.AddrPortFrom(fe.Addr, fe.Port)); err != nil {
			return err
		}
		if err := lb.ServiceUpsert(fe); err != nil {
			return err
		}
	}
	for _, set := range d.backendSets(s) {
		var ranges []netip.Prefix
		if ranged[set.id] {
			ranges = s.LoadBalancerSourceRanges
		}
		if err := lb.SourceRangesSet(set.id, ranges); err != nil {
			return err
		}
		if timeout == 0 {
			if err := lb.AffinityDeleteService(set.id); err != nil {
				return err
			}
		}
	}
	return d.healthSync(s.Name, s)
}

// parallel runs fn(0..n-1) on GOMAXPROCS goroutines.
func parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// removedBackends are the backend ids the previous versions of services (prev, by
// name) had and no service of all (the desired state now) has, sorted.
func removedBackends(prev map[string]Service, all []Service) []uint32 {
	inUse := map[uint32]bool{}
	for i := range all {
		for _, b := range all[i].Backends {
			inUse[backendID(&all[i], b)] = true
		}
	}
	var out []uint32
	for _, s := range prev {
		for _, b := range s.Backends {
			if id := backendID(&s, b); !inUse[id] && !slices.Contains(out, id) {
				out = append(out, id)
			}
		}
	}
	slices.Sort(out)
	return out
}

// deleteBackends removes backends from lb_backends (after the services that used
// them were reprogrammed without them); one already gone is no error.
func (d *datapath) deleteBackends(ids []uint32) error {
	var errs []error
	for _, id := range ids {
		if err := d.dp.LB.BackendDelete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// unprogramService removes a service's frontends, reverse-NAT entries and Maglev table,
// and the backends no remaining service uses.
func (d *datapath) unprogramService(s *Service, remaining []Service) error {
	lb := d.dp.LB
	var errs []error
	for _, fe := range s.frontends(d.nodePortAddrs) {
		errs = append(errs, lb.ServiceDelete(fe.ServiceKey), lb.RevNatDelete(stableID("revnat "+fe.ServiceKey.String())))
	}
	for _, set := range d.backendSets(s) {
		errs = append(errs, lb.ServiceBackendsDelete(set.id), lb.SourceRangesSet(set.id, nil), lb.AffinityDeleteService(set.id))
		if err := lb.MaglevDelete(set.id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, d.healthSync(s.Name, nil))
	var inUse []uint32
	for _, o := range remaining {
		for _, b := range o.Backends {
			inUse = append(inUse, backendID(&o, b))
		}
	}
	for _, b := range s.Backends {
		if bid := backendID(s, b); !slices.Contains(inUse, bid) {
			errs = append(errs, lb.BackendDelete(bid))
		}
	}
	return errors.Join(errs...)
}

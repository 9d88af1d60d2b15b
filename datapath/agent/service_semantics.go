// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"podpath/datapath/maglev"
	"podpath/datapath/maps"
)

// Service semantics beyond the frontends (issue 12): traffic policies, session
// affinity, source ranges, terminating endpoints, and the health check node port.

// DefaultAffinityTimeout is Kubernetes' default sessionAffinityConfig.clientIP.timeoutSeconds.
const DefaultAffinityTimeout = 10800

// maxAffinityTimeout is Kubernetes' upper bound of timeoutSeconds (one day).
const maxAffinityTimeout = 86400

// Traffic policy and affinity values as the Service API spells them.
const (
	PolicyCluster    = "Cluster"
	PolicyLocal      = "Local"
	AffinityNone     = "None"
	AffinityClientIP = "ClientIP"
)

func (s *Service) validateSemantics() []error {
	var errs []error
	for _, p := range []struct{ field, v string }{
		{"externalTrafficPolicy", s.ExternalTrafficPolicy}, {"internalTrafficPolicy", s.InternalTrafficPolicy},
	} {
		if p.v != "" && p.v != PolicyCluster && p.v != PolicyLocal {
			errs = append(errs, fmt.Errorf("service %s: %s: %q is not one of Cluster, Local", s.Name, p.field, p.v))
		}
	}
	if s.SessionAffinity != "" && s.SessionAffinity != AffinityNone && s.SessionAffinity != AffinityClientIP {
		errs = append(errs, fmt.Errorf("service %s: sessionAffinity: %q is not one of None, ClientIP", s.Name, s.SessionAffinity))
	}
	if s.SessionAffinityTimeout > maxAffinityTimeout {
		errs = append(errs, fmt.Errorf("service %s: sessionAffinityTimeoutSeconds: %d is over %d", s.Name, s.SessionAffinityTimeout, maxAffinityTimeout))
	}
	if s.HealthCheckNodePort != 0 && (s.ExternalTrafficPolicy != PolicyLocal || s.Type == "ClusterIP") {
		errs = append(errs, fmt.Errorf("service %s: healthCheckNodePort: %d, want one only with externalTrafficPolicy Local on a NodePort or LoadBalancer service", s.Name, s.HealthCheckNodePort))
	}
	for i, p := range s.LoadBalancerSourceRanges {
		if !p.IsValid() || !p.Addr().Is4() {
			errs = append(errs, fmt.Errorf("service %s: loadBalancerSourceRanges[%d]: %v is not an IPv4 prefix", s.Name, i, p))
		}
	}
	return errs
}

// affinityTimeout is the service's ClientIP affinity timeout in seconds, 0 without affinity.
func (s *Service) affinityTimeout() uint32 {
	if s.SessionAffinity != AffinityClientIP {
		return 0
	}
	if s.SessionAffinityTimeout == 0 {
		return DefaultAffinityTimeout
	}
	return s.SessionAffinityTimeout
}

// localFrontend says whether frontend fe takes this node's backends only: a
// NodePort or external frontend under externalTrafficPolicy Local, a ClusterIP one
// under internalTrafficPolicy Local.
func (s *Service) localFrontend(fe maps.Service) bool {
	if fe.Flags&maps.ServiceClusterIP != 0 {
		return s.InternalTrafficPolicy == PolicyLocal
	}
	return s.ExternalTrafficPolicy == PolicyLocal
}

// backendSet is what new flows to a frontend may take.
type backendSet struct {
	id       uint32 // lb service id: the slots and Maglev table of this set
	ids      []uint32
	maglev   []maglev.Backend
	fallback bool // no backend ready: the terminating ones serve (KEP-1669)
}

// backendSetFor is the set of the service's backends new flows to a frontend take:
// all of them, or with local those of this node (podCIDR); the active ones, or if
// none is active the terminating ones (KEP-1669: a terminating endpoint still
// serving is used only when no ready one is left). Maintenance backends never.
// With zone (enable-service-topology and the node's zone label), a set that is not
// local narrows further to the backends hinted for zone (topologyFilter).
func (s *Service) backendSetFor(local bool, podCIDR netip.Prefix, zone string) backendSet {
	set := backendSet{id: stableID("service " + s.Name)}
	if local {
		set.id = stableID("service-local " + s.Name)
	}
	pick := func(state maps.BackendState) {
		var chosen []ServiceBackend
		for _, b := range s.Backends {
			if backendStates[b.State] != state || (local && !podCIDR.Contains(b.IP)) {
				continue
			}
			chosen = append(chosen, b)
		}
		if !local {
			chosen = topologyFilter(chosen, zone)
		}
		for _, b := range chosen {
			w := b.Weight
			if w == 0 {
				w = maglev.DefaultWeight
			}
			set.ids = append(set.ids, backendID(s, b))
			set.maglev = append(set.maglev, maglev.Backend{ID: backendID(s, b), Weight: w})
		}
	}
	pick(maps.BackendActive)
	if len(set.ids) == 0 {
		pick(maps.BackendTerminating)
		set.fallback = len(set.ids) > 0
	}
	return set
}

// topologyFilter is kube-proxy's topology-aware routing: the backends whose hints
// name zone, but all of them when zone is "" (off, or the node has no zone label),
// when any backend has no hint (hints are all or nothing: a half-hinted slice is
// being rewritten), or when none is hinted for zone (the fallback to all).
func topologyFilter(bs []ServiceBackend, zone string) []ServiceBackend {
	if zone == "" {
		return bs
	}
	var out []ServiceBackend
	for _, b := range bs {
		if len(b.Zones) == 0 {
			return bs
		}
		if slices.Contains(b.Zones, zone) {
			out = append(out, b)
		}
	}
	if len(out) == 0 {
		return bs
	}
	return out
}

// backendSets are the distinct sets of the service's frontends on this node.
func (d *datapath) backendSets(s *Service) []backendSet {
	var out []backendSet
	seen := map[uint32]bool{}
	for _, fe := range s.frontends(d.nodePortAddrs) {
		set := s.backendSetFor(s.localFrontend(fe), d.podCIDR, d.topologyZone)
		if !seen[set.id] {
			seen[set.id] = true
			out = append(out, set)
		}
	}
	return out
}

// Warnings says what of the Service podpath does not do as written: the fields a
// client (the Kubernetes watcher) listed as Unsupported, and combinations podpath
// serves differently from Kubernetes.
func (s *Service) Warnings() []string {
	var out []string
	for _, f := range s.Unsupported {
		out = append(out, fmt.Sprintf("service %s: %s is not implemented by podpath and is ignored", s.Name, f))
	}
	if s.ExternalTrafficPolicy == PolicyLocal && len(s.LoadBalancerSourceRanges) > 0 && s.Type == "ClusterIP" {
		out = append(out, fmt.Sprintf("service %s: loadBalancerSourceRanges on a ClusterIP service are not checked (only NodePort and external frontends reached from outside are)", s.Name))
	}
	return out
}

// TopologyWarnings says when the service asks for topology-aware routing (hints or
// trafficDistribution) and this node will not follow it: enable-service-topology is
// off, or the node has no zone label.
func (s *Service) TopologyWarnings(enabled bool, zone string) []string {
	hinted := s.TrafficDistribution != ""
	for _, b := range s.Backends {
		hinted = hinted || len(b.Zones) > 0
	}
	switch {
	case !hinted:
		return nil
	case !enabled:
		return []string{fmt.Sprintf("service %s: topology hints (trafficDistribution, hints.forZones) are ignored: enable-service-topology is false", s.Name)}
	case zone == "":
		return []string{fmt.Sprintf("service %s: topology hints are ignored on this node: it has no zone (podpath-agent --zone, the topology.kubernetes.io/zone label)", s.Name)}
	}
	return nil
}

// ---- health check node port ----

// healthServer answers kube-proxy's health check for one service on its
// healthCheckNodePort: 200 with localEndpoints > 0, else 503.
type healthServer struct {
	srv *http.Server
	mu  sync.Mutex
	ns  string
	svc string
	n   int
}

// healthReply is kube-proxy's health check body.
type healthReply struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      int  `json:"localEndpoints"`
	ServiceProxyHealthy bool `json:"serviceProxyHealthy"`
}

func (h *healthServer) ServeHTTP(w http.ResponseWriter, _ *http.Request) {
	h.mu.Lock()
	var r healthReply
	r.Service.Namespace, r.Service.Name, r.LocalEndpoints, r.ServiceProxyHealthy = h.ns, h.svc, h.n, true
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Header().Set("X-Load-Balancing-Endpoint-Weight", strconv.Itoa(r.LocalEndpoints))
	if r.LocalEndpoints > 0 {
		w.WriteHeader(http.StatusOK)
	} else {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(r)
}

// splitName is the Kubernetes namespace and name of an agent service: the watcher
// names them <name>.<namespace>.<port>-<protocol> (k8swatch.ServiceName); any other
// name is a Service of namespace default.
func splitName(n string) (string, string) {
	parts := strings.Split(n, ".")
	if k := len(parts); k >= 3 && (strings.HasSuffix(parts[k-1], "-tcp") || strings.HasSuffix(parts[k-1], "-udp")) {
		return parts[k-2], strings.Join(parts[:k-2], ".")
	}
	return "default", n
}

// healthSync starts, updates or stops the health server of service s (nil: s is gone,
// named by name) on this node: one per healthCheckNodePort, on every address of the node.
func (d *datapath) healthSync(name string, s *Service) error {
	d.healthMu.Lock()
	defer d.healthMu.Unlock()
	if d.health == nil {
		d.health = map[string]*healthPort{}
	}
	old := d.health[name]
	var port uint16
	if s != nil {
		port = s.HealthCheckNodePort
	}
	if old != nil && old.port != port {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_ = old.h.srv.Shutdown(ctx)
		cancel()
		delete(d.health, name)
		old = nil
	}
	if port == 0 {
		return nil
	}
	n := 0
	for _, b := range s.Backends {
		if backendStates[b.State] == maps.BackendActive && d.podCIDR.Contains(b.IP) {
			n++
		}
	}
	if old == nil {
		ln, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
		if err != nil {
			return fmt.Errorf("service %s: health check node port %d: %w", name, port, err)
		}
		h := &healthServer{}
		h.ns, h.svc = splitName(name)
		h.srv = &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := h.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				slog.Warn("health check node port stopped", "service", name, "port", port, "err", err)
			}
		}()
		old = &healthPort{port: port, h: h}
		d.health[name] = old
	}
	old.h.mu.Lock()
	old.h.n = n
	old.h.mu.Unlock()
	return nil
}

// healthPort is a running health server and its port.
type healthPort struct {
	port uint16
	h    *healthServer
}

// healthClose stops every health server.
func (d *datapath) healthClose() {
	d.healthMu.Lock()
	defer d.healthMu.Unlock()
	for name, hp := range d.health {
		_ = hp.h.srv.Close()
		delete(d.health, name)
	}
}

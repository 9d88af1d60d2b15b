// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"podpath/datapath/hubble"
	"podpath/datapath/trace"
)

// podNamespace is the namespace of podpath's pods: they have none of their own.
const podNamespace = "default"

// startObservability consumes the trace ring buffer when Hubble or metrics are asked
// for: every record becomes a flow in the Hubble ring and counts in the metrics.
func (a *Agent) startObservability(ctx context.Context) error {
	if a.opts.HubbleSocket == "" && a.opts.MetricsAddr == "" {
		return nil
	}
	names, err := trace.DefaultNames()
	if err != nil {
		return err
	}
	rd, err := trace.NewReader(a.dp.dp.TraceEvents)
	if err != nil {
		return err
	}
	capacity := a.opts.HubbleBufferCapacity
	if capacity <= 0 {
		capacity = 4095
	}
	ring := hubble.NewRing(capacity)
	conv := hubble.NewConverter(names, a.opts.Node, a)
	metrics := hubble.NewMetrics(names)
	metrics.Registry.MustRegister(hubble.NewMapPressure(a.mapFill))
	go func() { <-ctx.Done(); rd.Close() }()
	go func() {
		for {
			r, err := rd.Read()
			if err != nil {
				if ctx.Err() == nil {
					a.opts.Log.Warn("hubble: trace ring buffer", "err", err)
				}
				if errors.Is(err, os.ErrClosed) || ctx.Err() != nil {
					return
				}
				continue
			}
			f := conv.Flow(r)
			ring.Add(f)
			metrics.Observe(r, f.GetVerdict().String())
		}
	}()
	if p := a.opts.HubbleSocket; p != "" {
		srv := hubble.NewServer(ring, a.opts.Node)
		go func() {
			if err := srv.Serve(ctx, p); err != nil {
				a.setProblem("hubble", err.Error())
			}
		}()
		a.opts.Log.Info("hubble observer serving", "socket", p, "flows", capacity)
	}
	if addr := a.opts.MetricsAddr; addr != "" {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics listener: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { <-ctx.Done(); hs.Close() }()
		go func() {
			if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
				a.setProblem("metrics", err.Error())
			}
		}()
		a.opts.Log.Info("metrics serving", "addr", l.Addr().String())
	}
	return nil
}

// Endpoint implements hubble.Resolver from the desired state: the node's pods, this
// node and the other nodes (reserved identities host and remote-node).
func (a *Agent) Endpoint(ip netip.Addr) (hubble.EndpointInfo, bool) {
	for _, ep := range a.store.endpoints() {
		if ep.IP == ip {
			return hubble.EndpointInfo{Identity: ep.Identity, Namespace: podNamespace, PodName: ep.Name,
				Labels: []string{"k8s:io.kubernetes.pod.namespace=" + podNamespace}}, true
		}
	}
	for _, n := range a.store.nodes() {
		if n.IP != ip {
			continue
		}
		if n.Name == a.opts.Node {
			return hubble.EndpointInfo{Identity: identityHost, Labels: []string{"reserved:host"}}, true
		}
		return hubble.EndpointInfo{Identity: identityRemoteNode, Labels: []string{"reserved:remote-node"}}, true
	}
	return hubble.EndpointInfo{}, false
}

// Service implements hubble.Resolver: the service with a frontend at addr (cluster
// IP or external IP and port, or any address with its node port).
func (a *Agent) Service(addr netip.AddrPort, ipProto uint8) (string, string, bool) {
	proto := map[uint8]string{6: "TCP", 17: "UDP"}[ipProto]
	for _, s := range a.store.services() {
		if s.Protocol != "" && proto != "" && !strings.EqualFold(s.Protocol, proto) {
			continue
		}
		match := (s.ClusterIP == addr.Addr() && s.Port == addr.Port()) || (s.NodePort != 0 && s.NodePort == addr.Port())
		for _, ip := range s.ExternalIPs {
			match = match || (ip == addr.Addr() && s.Port == addr.Port())
		}
		if match {
			ns, name, ok := strings.Cut(s.Name, "/")
			if !ok {
				return podNamespace, s.Name, true
			}
			return ns, name, true
		}
	}
	return "", "", false
}

// mapFill counts the entries of the conntrack, SNAT and other pressure-prone maps.
func (a *Agent) mapFill() map[string][2]float64 {
	out := map[string][2]float64{}
	if a.dp == nil || a.dp.dp == nil {
		return out
	}
	o := a.dp.dp.Lxc
	for name, m := range map[string]*ebpf.Map{"ct_tcp": o.CtTcp, "ct_any": o.CtAny, "snat": o.Snat,
		"ipcache": o.Ipcache, "endpoints": o.Endpoints, "lb_services": o.LbServices, "lb_backends": o.LbBackends} {
		if m == nil {
			continue
		}
		out[name] = [2]float64{float64(countEntries(m)), float64(m.MaxEntries())}
	}
	return out
}

// countEntries walks the keys of a hash map.
func countEntries(m *ebpf.Map) int {
	key := make([]byte, m.KeySize())
	next := make([]byte, m.KeySize())
	n := 0
	var cur any
	for n < int(m.MaxEntries())+1 {
		if err := m.NextKey(cur, next); err != nil {
			break
		}
		n++
		copy(key, next)
		cur = key
	}
	return n
}

// SPDX-License-Identifier: Apache-2.0

package steps

// Service semantics of kube-proxy replacement (issue 12), after the Kubernetes
// sig-network Services e2e assertions: "should be rejected when no endpoints exist",
// "should have session affinity work / timeout work for service with type clusterIP",
// "should work for type=NodePort/LoadBalancer with externalTrafficPolicy Local"
// (client IP preserved, health check node port), "should respect internalTrafficPolicy=Local",
// "should fallback to terminating endpoints when there are no ready endpoints",
// "should only allow access from service loadbalancer source ranges".

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"podpath/datapath/agent"
	"podpath/datapath/config"
	"podpath/datapath/maglev"
	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[serviceRejectWith, none]{
		Name: "service-reject",
		Summary: "a service without endpoints is refused at once: a TCP connect gets ECONNREFUSED from an RST sent by the frontend, a UDP datagram " +
			"an ICMP port unreachable from it, measured within the deadline (not a timeout); the client's capture shows the answer",
		Agents: true,
		With:   serviceRejectWith{Frontend: "clusterIP", WithinMs: 10},
		Run:    runServiceReject,
	})
	scenarios.RegisterStep(scenarios.StepDef[sessionAffinityWith, none]{
		Name: "session-affinity",
		Summary: "sessionAffinity ClientIP: connections from one client land on one backend (whoami), also connections spaced over several timeouts (each restarts it); after timeoutSeconds without a " +
			"new connection the choice is made anew, and the affinity is in the pinned lb_affinity map",
		Agents: true,
		With:   sessionAffinityWith{Frontend: "clusterIP", Connections: 100},
		Run:    runSessionAffinity,
	})
	scenarios.RegisterStep(scenarios.StepDef[affinityRestartWith, none]{
		Name: "affinity-restart",
		Summary: "sessionAffinity ClientIP survives agent restarts: a client's connections land on one backend before and after every " +
			"agent is killed (SIGKILL) and started again (the affinity lives in the pinned lb_affinity map)",
		Agents: true,
		With:   affinityRestartWith{Connections: 10},
		Run:    runAffinityRestart,
	})
	scenarios.RegisterStep(scenarios.StepDef[etpLocalWith, none]{
		Name: "etp-local",
		Summary: "externalTrafficPolicy Local: via a node without a local backend the NodePort drops (DROP_SVC_NO_LOCAL_BACKEND in the trace); " +
			"via a node with one, the backend sees the client's own address (pcap on the backend: no SNAT)",
		Agents: true,
		Run:    runETPLocal,
	})
	scenarios.RegisterStep(scenarios.StepDef[healthCheckWith, none]{
		Name: "health-check-nodeport",
		Summary: "GET http://node:healthCheckNodePort/healthz from a client: kube-proxy's JSON (service, localEndpoints, serviceProxyHealthy) " +
			"with 200 on a node with local endpoints and 503 on one without",
		Agents: true,
		Run:    runHealthCheck,
	})
	scenarios.RegisterStep(scenarios.StepDef[sourceRangesWith, none]{
		Name: "source-ranges",
		Summary: "loadBalancerSourceRanges: a client inside a service's ranges is served through the NodePort, one outside another's is " +
			"dropped (DROP_SVC_SOURCE_RANGE in the trace)",
		Agents: true,
		Run:    runSourceRanges,
	})
	scenarios.RegisterStep(scenarios.StepDef[terminatingWith, none]{
		Name: "terminating-fallback",
		Summary: "terminating endpoints: new connections avoid them while a ready one is left; an open connection keeps its backend " +
			"after it turns terminating; when only terminating ones are left, new connections use them (KEP-1669)",
		Agents: true,
		With:   terminatingWith{Connections: 20},
		Run:    runTerminating,
	})
	scenarios.RegisterStep(scenarios.StepDef[itpLocalWith, none]{
		Name: "itp-local",
		Summary: "internalTrafficPolicy Local: a pod's connections to the ClusterIP land on backends of its own node only; with none " +
			"there, they are dropped (DROP_SVC_NO_LOCAL_BACKEND in the trace)",
		Agents: true,
		With:   itpLocalWith{Connections: 20},
		Run:    runITPLocal,
	})
}

// ---- shared helpers ----

// clientAddr is the member's sending interface and address (eth0 for a pod).
func clientAddr(t topology.Cluster, member string) (string, netip.Addr, error) {
	if p, err := t.Pod(member); err == nil {
		return "eth0", p.IP, nil
	}
	ifs, err := t.Interfaces(member)
	if err != nil || len(ifs) == 0 {
		return "", netip.Addr{}, fmt.Errorf("member %s: no interface (%v)", member, err)
	}
	return ifs[0].Name, ifs[0].Address.Addr(), nil
}

// whoami connects from member to dst over TCP, sends a line and returns the backend
// pod's name it answers with (server: whoami).
func whoami(t topology.Cluster, member string, dst netip.AddrPort, timeout time.Duration) (string, error) {
	var name string
	err := t.Do(member, func() error {
		c, err := net.DialTimeout("tcp4", dst.String(), timeout)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("who\n")); err != nil {
			return err
		}
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return fmt.Errorf("read from %s: %w", dst, err)
		}
		name = strings.TrimSpace(line)
		return nil
	})
	return name, err
}

// expectDrop wants a VERDICT_DROP record with reason on node for src -> dst (TCP).
func expectDrop(tr *trace.Collector, node string, src netip.Addr, dst netip.AddrPort, reason string) error {
	if err := tr.Collect(); err != nil {
		return err
	}
	n := tr.Names()
	recs := tr.Find(node, func(r trace.Record) bool {
		return r.Pkt.Src == src && r.Pkt.Dst == dst.Addr() && r.Pkt.DstPort == dst.Port()
	})
	for _, r := range recs {
		if n.Verdict(r.Verdict) == "VERDICT_DROP" && n.DropReason(r.DropReason) == reason {
			return nil
		}
	}
	if len(recs) == 0 {
		return fmt.Errorf("no trace record of %s -> %s on %s; records there:\n%s", src, dst, node, tr.Dump(node))
	}
	return fmt.Errorf("want VERDICT_DROP %s for %s -> %s on %s; got:\n%s", reason, src, dst, node, formatRecords(n, node, recs))
}

// backendNames are the pod names of the service's backends in the given states
// ("" = active).
func backendNames(t topology.Cluster, svc agent.Service, states ...string) map[string]bool {
	out := map[string]bool{}
	for _, b := range svc.Backends {
		for _, st := range states {
			if b.State == st || (st == "" && b.State == "active") {
				if p, ok := podByIP(t, b.IP); ok {
					out[p.Name] = true
				}
			}
		}
	}
	return out
}

// ---- service-reject ----

type serviceRejectWith struct {
	From     scenarios.MemberRef  `json:"from" required:"true" doc:"the pod or client that connects"`
	Service  scenarios.ServiceRef `json:"service" required:"true" doc:"a service of the stage without backends"`
	Frontend string               `json:"frontend" oneOf:"clusterIP,nodePort" doc:"the ClusterIP, or node's InternalIP at the NodePort"`
	Node     scenarios.NodeRef    `json:"node" doc:"with frontend nodePort: the node dialled"`
	WithinMs int                  `json:"withinMs" range:"1..1000" doc:"the deadline of the refusal, measured from connect()/send() (default 10)"`
	Response string               `json:"response" oneOf:"reject,drop" doc:"the stage's service-no-backend-response: reject (default) wants the refusal, drop wants no answer and DROP_NO_SERVICE_BACKEND in the entry node's trace"`
}

func (w *serviceRejectWith) Validate(e strictyaml.FieldErrors) {
	if (w.Frontend == "nodePort") != (w.Node != "") {
		e.Add("node", "want a node with frontend nodePort, and none with %s", w.Frontend)
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && len(svc.Backends) != 0 {
		e.Add("service", "service %s has %d backends: want none", w.Service, len(svc.Backends))
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && w.Response == "drop" && svc.Protocol != "TCP" {
		e.Add("response", "drop is checked over TCP: service %s is %s", w.Service, svc.Protocol)
	}
}

// refuse connects (TCP) or sends one datagram and reads (UDP) from member to dst and
// returns how long the refusal took; an error when none came within a second.
func refuse(t topology.Cluster, member string, proto string, dst netip.AddrPort) (time.Duration, error) {
	var took time.Duration
	err := t.Do(member, func() error {
		typ := unix.SOCK_STREAM
		if proto == "UDP" {
			typ = unix.SOCK_DGRAM
		}
		fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		tv := unix.Timeval{Sec: 1}
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
		_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
		sa := &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}
		start := time.Now()
		if proto == "UDP" {
			if err := unix.Connect(fd, sa); err != nil {
				return fmt.Errorf("connect %s: %w", dst, err)
			}
			start = time.Now()
			if _, err := unix.Write(fd, []byte("podpath service-reject")); err != nil {
				return fmt.Errorf("send to %s: %w", dst, err)
			}
			_, err = unix.Read(fd, make([]byte, 64))
		} else {
			err = unix.Connect(fd, sa)
		}
		took = time.Since(start)
		if !errors.Is(err, unix.ECONNREFUSED) {
			return fmt.Errorf("%s %s: want ECONNREFUSED, got %v after %v", proto, dst, err, took)
		}
		return nil
	})
	return took, err
}

func runServiceReject(ctx context.Context, s *scenarios.Stage, w serviceRejectWith, _ none) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	dst, err := frontend(t, svc, w.Frontend, string(w.Node))
	if err != nil {
		return err
	}
	from := string(w.From)
	if w.Response == "drop" {
		return runServiceNoBackendDrop(s, w, svc, dst)
	}
	ifname, _, err := clientAddr(t, from)
	if err != nil {
		return err
	}
	m, err := t.Member(from)
	if err != nil {
		return err
	}
	session, err := capture.Start(filepath.Join(s.Artifacts, "service-reject-"+w.Frontend+"-"+strings.ToLower(svc.Protocol)),
		capture.Point{Member: from, Interface: ifname, NsPath: m.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	took, rerr := refuse(t, from, svc.Protocol, dst)
	if rerr == nil && took > time.Duration(w.WithinMs)*time.Millisecond {
		rerr = fmt.Errorf("refused after %v, want within %d ms", took, w.WithinMs)
	}
	answer := "RST"
	if svc.Protocol == "UDP" {
		answer = "ICMP port unreachable"
	}
	s.Check(fmt.Sprintf("no endpoints: %s %s -> %s %s refused with %s within %d ms", svc.Protocol, from, w.Frontend, svc.Name, answer, w.WithinMs),
		fmt.Sprintf("the client's socket in %s: ECONNREFUSED and the time from connect/send to it (took %v)", from, took), rerr)
	// The socket saw the answer before the capture's reader did: wait (at most 1 s)
	// for the frame to reach the capture before stopping it.
	wctx, cancel := context.WithTimeout(ctx, time.Second)
	_, _ = session.WaitFor(wctx, from, ifname, capture.IPv4Flow(ip(dst.Addr()), nil, 0), 1)
	cancel()
	if err := session.Stop(); err != nil {
		return err
	}
	var werr error
	found := false
	for _, p := range session.Packets(from, ifname, capture.IPv4Flow(ip(dst.Addr()), nil, 0)) {
		if p.Outgoing {
			continue
		}
		pkt := p.Decode()
		if svc.Protocol == "TCP" {
			if tcp, ok := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP); ok && tcp.RST && uint16(tcp.SrcPort) == dst.Port() {
				found = true
			}
		} else if icmp, ok := pkt.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok &&
			icmp.TypeCode == layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort) {
			found = true
		}
	}
	if !found {
		werr = fmt.Errorf("no %s from %s on %s/%s; packets from it: %d", answer, dst.Addr(), from, ifname,
			len(session.Packets(from, ifname, capture.IPv4Flow(ip(dst.Addr()), nil, 0))))
	}
	s.Check(fmt.Sprintf("no endpoints: the %s comes from the %s frontend", answer, w.Frontend),
		fmt.Sprintf("%s/%s capture: an incoming %s with source %s", from, ifname, answer, dst.Addr()), werr)
	var req, ans []byte
	for _, p := range session.Packets(from, ifname, capture.IPv4Flow(nil, nil, 0)) {
		ip4, ok := parseIPv4Frame(p.Data)
		switch {
		case !ok:
		case p.Outgoing && req == nil && ip4.dst == dst.Addr():
			req = p.Data
		case !p.Outgoing && ans == nil && ip4.src == dst.Addr():
			ans = p.Data
		}
	}
	s.Check(fmt.Sprintf("no endpoints: the %s answer is well formed (MACs, IPv4 header, %s fields and checksums against the request)", answer, strings.ToLower(svc.Protocol)),
		fmt.Sprintf("%s/%s capture: the client's request and the answer, byte by byte", from, ifname), rejectWellFormed(req, ans))
	return nil
}

// rejectWellFormed checks the answer lb_reject() built to the request frame req:
// MACs swapped, IPv4 version/IHL 5, TTL 64, addresses swapped, header checksum right;
// TCP: ports swapped, RST (with ACK acking a SYN's seq+1 and the payload), complete
// checksum right; UDP: ICMP type 3 code 3, checksum right, quoting the request's IPv4
// header and first 8 bytes as sent.
func rejectWellFormed(req, ans []byte) error {
	if req == nil || ans == nil {
		return fmt.Errorf("captured request %v, answer %v: want both", req != nil, ans != nil)
	}
	q, _ := parseIPv4Frame(req)
	a, _ := parseIPv4Frame(ans)
	var errs []error
	if string(ans[0:6]) != string(req[6:12]) || string(ans[6:12]) != string(req[0:6]) {
		errs = append(errs, fmt.Errorf("MACs %x -> %x, want the request's swapped %x -> %x", ans[6:12], ans[0:6], req[0:6], req[6:12]))
	}
	if a.hdr[0] != 0x45 || a.hdr[8] != 64 || a.src != q.dst || a.dst != q.src {
		errs = append(errs, fmt.Errorf("IPv4 %#02x TTL %d %s -> %s, want 0x45 TTL 64 %s -> %s", a.hdr[0], a.hdr[8], a.src, a.dst, q.dst, q.src))
	}
	errs = append(errs, a.headerChecksumErr())
	switch q.proto {
	case 6:
		if a.proto != 6 || len(a.l4) < 20 || len(q.l4) < 20 {
			return errors.Join(append(errs, fmt.Errorf("answer protocol %d, want a TCP RST", a.proto))...)
		}
		qs, qd := q.ports()
		as, ad := a.ports()
		flags := a.l4[13]
		seq := binary.BigEndian.Uint32(q.l4[4:8])
		payload := uint32(len(q.l4)) - uint32(q.l4[12]>>4)*4
		if as != qd || ad != qs || flags&0x04 == 0 {
			errs = append(errs, fmt.Errorf("TCP %d -> %d flags %#02x, want %d -> %d with RST", as, ad, flags, qd, qs))
		}
		if q.l4[13]&0x10 == 0 && (flags&0x10 == 0 || binary.BigEndian.Uint32(a.l4[8:12]) != seq+payload+uint32(q.l4[13]&0x02>>1)+uint32(q.l4[13]&0x01)) {
			errs = append(errs, fmt.Errorf("ack %d (flags %#02x), want ACK of %d (the request's seq %d + SYN + payload)", binary.BigEndian.Uint32(a.l4[8:12]), flags, seq+payload+1, seq))
		}
		pseudo := onesSum(0, a.hdr[12:20]) + 6 + uint32(len(a.l4))
		if fold(onesSum(pseudo, a.l4)) != 0xffff {
			errs = append(errs, fmt.Errorf("TCP checksum %#04x is not complete and right", binary.BigEndian.Uint16(a.l4[16:18])))
		}
	case 17:
		if a.proto != 1 || len(a.l4) < 8+28 {
			return errors.Join(append(errs, fmt.Errorf("answer protocol %d, %d bytes, want ICMP with a 28-byte quote", a.proto, len(a.l4)))...)
		}
		if a.l4[0] != 3 || a.l4[1] != 3 {
			errs = append(errs, fmt.Errorf("ICMP type %d code %d, want 3/3 (port unreachable)", a.l4[0], a.l4[1]))
		}
		if fold(onesSum(0, a.l4)) != 0xffff {
			errs = append(errs, fmt.Errorf("ICMP checksum %#04x is wrong", binary.BigEndian.Uint16(a.l4[2:4])))
		}
		if string(a.l4[8:8+28]) != string(req[14:14+28]) {
			errs = append(errs, fmt.Errorf("quote %x, want the request's IPv4 header and 8 bytes %x", a.l4[8:8+28], req[14:14+28]))
		}
	}
	return errors.Join(errs...)
}

// runServiceNoBackendDrop: with service-no-backend-response drop, the client gets no
// answer and the entry node's trace names the drop.
func runServiceNoBackendDrop(s *scenarios.Stage, w serviceRejectWith, svc agent.Service, dst netip.AddrPort) error {
	t := s.T
	from := string(w.From)
	_, cip, err := clientAddr(t, from)
	if err != nil {
		return err
	}
	node := string(w.Node)
	if p, err := t.Pod(from); err == nil {
		node = p.Node
	}
	traces, err := s.OpenTraces(t, node)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	name, cerr := whoami(t, from, dst, 300*time.Millisecond)
	derr := expectDrop(traces, node, cip, dst, "DROP_NO_SERVICE_BACKEND")
	if cerr == nil {
		derr = errors.Join(fmt.Errorf("answered by %s", name), derr)
	} else if errors.Is(cerr, unix.ECONNREFUSED) {
		derr = errors.Join(fmt.Errorf("refused (%v): want no answer", cerr), derr)
	}
	s.Check(fmt.Sprintf("no endpoints, service-no-backend-response drop: %s -> %s %s gets no answer, dropped, named DROP_NO_SERVICE_BACKEND", from, w.Frontend, svc.Name),
		fmt.Sprintf("%s's trace records of %s -> %s, and the client's connect (%v)", node, cip, dst, cerr), derr)
	return nil
}

// ---- session-affinity ----

type sessionAffinityWith struct {
	From        scenarios.MemberRef  `json:"from" required:"true" doc:"the pod or client that connects"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP service with sessionAffinity ClientIP, a short timeoutSeconds and whoami servers"`
	Frontend    string               `json:"frontend" oneOf:"clusterIP,nodePort" doc:"the ClusterIP, or node's InternalIP at the NodePort"`
	Node        scenarios.NodeRef    `json:"node" doc:"with frontend nodePort: the node dialled"`
	Connections int                  `json:"connections" range:"2..1000" doc:"connections that must land on one backend"`
}

func (w *sessionAffinityWith) Validate(e strictyaml.FieldErrors) {
	if (w.Frontend == "nodePort") != (w.Node != "") {
		e.Add("node", "want a node with frontend nodePort, and none with %s", w.Frontend)
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil &&
		(svc.SessionAffinity != "ClientIP" || svc.Server != "whoami" || svc.Protocol != "TCP" || svc.TimeoutSeconds == 0 || svc.TimeoutSeconds > 5 || len(svc.Backends) < 2) {
		e.Add("service", "service %s: want TCP, sessionAffinity ClientIP, timeoutSeconds 1..5, server whoami and 2 or more backends", w.Service)
	}
}

func runSessionAffinity(ctx context.Context, s *scenarios.Stage, w sessionAffinityWith, _ none) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	dst, err := frontend(t, svc, w.Frontend, string(w.Node))
	if err != nil {
		return err
	}
	from := string(w.From)
	counts := map[string]int{}
	var first string
	var aerr error
	for i := range w.Connections {
		name, err := whoami(t, from, dst, time.Second)
		if err != nil {
			return fmt.Errorf("connection %d to %s: %w", i, dst, err)
		}
		counts[name]++
		if first == "" {
			first = name
		}
	}
	if len(counts) != 1 {
		aerr = fmt.Errorf("backends answering: %v, want one", counts)
	}
	s.Check(fmt.Sprintf("affinity: %d connections from %s to %s %s land on one backend", w.Connections, from, w.Frontend, svc.Name),
		"the whoami answer (backend pod name) of every connection", aerr)

	timeout := time.Duration(svc.SessionAffinityTimeout) * time.Second

	// Each new connection restarts the timeout (kube-proxy's `recent` match sets the
	// client's time on every new connection; Cilium refreshes the affinity entry):
	// connections a quarter of the timeout apart, for four timeouts, stay on the first
	// backend. An entry that kept its first time would expire and pick again (a new
	// backend with probability 1 - 1/backends each time).
	var rerr error
	var rseen []string
	gap, span := timeout/4, 4*timeout
	for end := time.Now().Add(span); time.Now().Before(end); {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(gap):
		}
		name, err := whoami(t, from, dst, time.Second)
		if err != nil {
			return fmt.Errorf("refresh connection to %s: %w", dst, err)
		}
		rseen = append(rseen, name)
		if name != first {
			rerr = fmt.Errorf("connection %d (each %v after the previous, %v after the first) landed on %s, not %s: %v", len(rseen), gap, time.Duration(len(rseen))*gap, name, first, rseen)
			break
		}
	}
	s.Check(fmt.Sprintf("affinity refresh: connections %v apart for %v stay on %s (each restarts timeoutSeconds)", gap, span, first),
		fmt.Sprintf("whoami answers of connections %v apart", gap), rerr)

	// Past the timeout with no new connection, the choice is new: wait each time.
	var spread error = fmt.Errorf("every connection made %v+ after the previous one still landed on %s", timeout, first)
	var seen []string
	for range 12 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(timeout + 300*time.Millisecond):
		}
		name, err := whoami(t, from, dst, time.Second)
		if err != nil {
			return err
		}
		seen = append(seen, name)
		if name != first {
			spread = nil
			break
		}
	}
	s.Check(fmt.Sprintf("affinity timeout: after timeoutSeconds (%v) a new connection may land elsewhere", timeout),
		fmt.Sprintf("whoami answers of connections %v apart: %v", timeout, seen), spread)
	return nil
}

// ---- affinity-restart ----

type affinityRestartWith struct {
	From        scenarios.MemberRef  `json:"from" required:"true" doc:"the pod or client that connects to the ClusterIP"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP service with sessionAffinity ClientIP, whoami servers, two or more backends and a timeoutSeconds longer than a restart"`
	Connections int                  `json:"connections" range:"1..1000" doc:"connections before and after the restart"`
}

func (w *affinityRestartWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil &&
		(svc.SessionAffinity != "ClientIP" || svc.Server != "whoami" || (svc.TimeoutSeconds != 0 && svc.TimeoutSeconds < 60) || len(svc.Backends) < 2) {
		e.Add("service", "service %s: want sessionAffinity ClientIP, timeoutSeconds 60 or more, server whoami and 2 or more backends", w.Service)
	}
}

func runAffinityRestart(ctx context.Context, s *scenarios.Stage, w affinityRestartWith, _ none) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	dst := netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	from := string(w.From)
	round := func() (map[string]int, error) {
		counts := map[string]int{}
		for range w.Connections {
			name, err := whoami(t, from, dst, time.Second)
			if err != nil {
				return counts, err
			}
			counts[name]++
		}
		return counts, nil
	}
	before, err := round()
	if err != nil {
		return err
	}
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	for _, n := range t.Nodes() {
		if err := agents.Restart(ctx, n.Name, "", true); err != nil {
			return fmt.Errorf("restart the agent of %s: %w", n.Name, err)
		}
	}
	after, aerr := round()
	if aerr == nil && (len(before) != 1 || len(after) != 1 || !sameKeys(before, after)) {
		aerr = fmt.Errorf("backends before the restart %v, after %v: want one, the same", before, after)
	}
	s.Check(fmt.Sprintf("affinity: %s keeps its backend across a restart (SIGKILL) of every agent", from),
		fmt.Sprintf("whoami answers of %d connections before (%v) and after (%v) the restart", w.Connections, before, after), aerr)
	return nil
}

// ---- etp-local ----

type etpLocalWith struct {
	Client    scenarios.MemberRef  `json:"client" required:"true" doc:"the client outside the cluster"`
	Service   scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP NodePort service with externalTrafficPolicy Local and whoami servers, backends on one node"`
	LocalNode scenarios.NodeRef    `json:"localNode" required:"true" doc:"a node with a backend"`
	OtherNode scenarios.NodeRef    `json:"otherNode" required:"true" doc:"a node without one"`
}

func (w *etpLocalWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.ExternalTrafficPolicy != "Local" || svc.NodePort == 0 || svc.Server != "whoami") {
		e.Add("service", "service %s: want externalTrafficPolicy Local, a nodePort and server whoami", w.Service)
	}
}

func runETPLocal(ctx context.Context, s *scenarios.Stage, w etpLocalWith, _ none) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	client := string(w.Client)
	cif, cip, err := clientAddr(t, client)
	if err != nil {
		return err
	}
	local, err := t.Node(string(w.LocalNode))
	if err != nil {
		return err
	}
	other, err := t.Node(string(w.OtherNode))
	if err != nil {
		return err
	}
	_ = cif
	// Via the node without a local backend: dropped, named.
	traces, err := s.OpenTraces(t, other.Name)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	viaOther := netip.AddrPortFrom(other.InternalIP, svc.NodePort)
	name, cerr := whoami(t, client, viaOther, 300*time.Millisecond)
	derr := expectDrop(traces, other.Name, cip, viaOther, "DROP_SVC_NO_LOCAL_BACKEND")
	if cerr == nil {
		derr = errors.Join(fmt.Errorf("the connection via %s was answered by %s", other.Name, name), derr)
	}
	s.Check(fmt.Sprintf("externalTrafficPolicy Local: via %s (no local backend) the NodePort drops, named DROP_SVC_NO_LOCAL_BACKEND", other.Name),
		fmt.Sprintf("%s's trace records of %s -> %s, and the client's connect (no answer)", other.Name, cip, viaOther), derr)

	// Via the node with one: the backend sees the client's address.
	var points []capture.Point
	var pods []topology.Pod
	for _, b := range svc.Backends {
		if p, ok := podByIP(t, b.IP); ok && p.Node == local.Name {
			pm, err := t.Member(p.Name)
			if err != nil {
				return err
			}
			pods = append(pods, p)
			points = append(points, capture.Point{Member: p.Name, Interface: "eth0", NsPath: pm.NsPath})
		}
	}
	if len(points) == 0 {
		return fmt.Errorf("service %s has no backend on %s", svc.Name, local.Name)
	}
	session, err := capture.Start(filepath.Join(s.Artifacts, "etp-local"), points...)
	if err != nil {
		return err
	}
	defer session.Stop()
	viaLocal := netip.AddrPortFrom(local.InternalIP, svc.NodePort)
	name, lerr := whoami(t, client, viaLocal, time.Second)
	s.Check(fmt.Sprintf("externalTrafficPolicy Local: via %s the NodePort is answered by its local backend", local.Name),
		"the whoami answer through "+viaLocal.String()+": "+name, lerr)
	if err := session.Stop(); err != nil {
		return err
	}
	var serr error
	seen := 0
	for _, p := range pods {
		for _, pk := range session.Packets(p.Name, "eth0", capture.IPv4Flow(nil, ip(p.IP), layers.IPProtocolTCP)) {
			ip4 := pk.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			seen++
			if ip4.SrcIP.String() != cip.String() {
				serr = fmt.Errorf("packet to the backend from %s, want the client's %s (no SNAT): %s", ip4.SrcIP, cip, pk.Summary())
				break
			}
		}
	}
	if seen == 0 && serr == nil {
		serr = errors.New("no packet reached a local backend's eth0")
	}
	s.Check("externalTrafficPolicy Local: the backend sees the client's own address (no SNAT)",
		fmt.Sprintf("capture on the local backends' eth0: IPv4 source of %d packets to them", seen), serr)
	return nil
}

// ---- health-check-nodeport ----

type healthCheckWith struct {
	Client  scenarios.MemberRef  `json:"client" required:"true" doc:"the member that sends the HTTP GET"`
	Service scenarios.ServiceRef `json:"service" required:"true" doc:"a service with a healthCheckNodePort"`
	Node    scenarios.NodeRef    `json:"node" required:"true" doc:"the node asked"`
	Status  int                  `json:"status" required:"true" doc:"the HTTP status the node must answer with"`
}

func (w *healthCheckWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && svc.HealthCheckNodePort == 0 {
		e.Add("service", "service %s has no healthCheckNodePort", w.Service)
	}
}

// healthBody is kube-proxy's health check answer, decoded strictly.
type healthBody struct {
	Service struct {
		Namespace string `json:"namespace"`
		Name      string `json:"name"`
	} `json:"service"`
	LocalEndpoints      *int  `json:"localEndpoints"`
	ServiceProxyHealthy *bool `json:"serviceProxyHealthy"`
}

func runHealthCheck(ctx context.Context, s *scenarios.Stage, w healthCheckWith, _ none) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	n, err := t.Node(string(w.Node))
	if err != nil {
		return err
	}
	// Expected from the spec and the topology: the active backends on the node.
	wantLocal := 0
	for _, b := range svc.Backends {
		if p, ok := podByIP(t, b.IP); ok && p.Node == n.Name && (b.State == "" || b.State == "active") {
			wantLocal++
		}
	}
	url := fmt.Sprintf("http://%s/healthz", netip.AddrPortFrom(n.InternalIP, svc.HealthCheckNodePort))
	var status int
	var body []byte
	// The connection is made on the namespace's thread itself (an http.Client dials
	// from its own goroutines, which are not in the client's namespace).
	herr := t.Do(string(w.Client), func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(n.InternalIP, svc.HealthCheckNodePort).String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		req, err := http.NewRequest(http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		req.Close = true
		if err := req.Write(c); err != nil {
			return err
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		status = resp.StatusCode
		body, err = io.ReadAll(io.LimitReader(resp.Body, 4096))
		return err
	})
	if herr == nil {
		var hb healthBody
		dec := json.NewDecoder(strings.NewReader(string(body)))
		dec.DisallowUnknownFields()
		switch err := dec.Decode(&hb); {
		case err != nil:
			herr = fmt.Errorf("body %q: %w", body, err)
		case status != w.Status:
			herr = fmt.Errorf("status %d, want %d; body %s", status, w.Status, body)
		case hb.LocalEndpoints == nil || *hb.LocalEndpoints != wantLocal:
			herr = fmt.Errorf("localEndpoints in %s, want %d (active backends on %s)", body, wantLocal, n.Name)
		case hb.ServiceProxyHealthy == nil || hb.Service.Name == "":
			herr = fmt.Errorf("body %s lacks serviceProxyHealthy or service.name", body)
		}
	}
	s.Check(fmt.Sprintf("healthCheckNodePort: GET %s:healthCheckNodePort/healthz answers %d with localEndpoints", n.Name, w.Status),
		fmt.Sprintf("HTTP GET %s from %s: status %d, body %s", url, w.Client, status, strings.TrimSpace(string(body))), herr)
	return nil
}

// ---- source-ranges ----

type sourceRangesWith struct {
	Client  scenarios.MemberRef  `json:"client" required:"true" doc:"the client outside the cluster"`
	Allowed scenarios.ServiceRef `json:"allowed" required:"true" doc:"a TCP NodePort service (echo or whoami) whose loadBalancerSourceRanges hold the client"`
	Denied  scenarios.ServiceRef `json:"denied" required:"true" doc:"a TCP NodePort service whose loadBalancerSourceRanges do not"`
	Node    scenarios.NodeRef    `json:"node" required:"true" doc:"the node dialled"`
}

func runSourceRanges(ctx context.Context, s *scenarios.Stage, w sourceRangesWith, _ none) error {
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
	allowed := s.Services[string(w.Allowed)]
	denied := s.Services[string(w.Denied)]
	a := netip.AddrPortFrom(n.InternalIP, allowed.NodePort)
	name, aerr := whoami(t, client, a, time.Second)
	s.Check(fmt.Sprintf("loadBalancerSourceRanges: a client inside %v is served through %s's NodePort", allowed.LoadBalancerSourceRanges, n.Name),
		"the whoami answer through "+a.String()+": "+name, aerr)
	traces, err := s.OpenTraces(t, n.Name)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	d := netip.AddrPortFrom(n.InternalIP, denied.NodePort)
	name, cerr := whoami(t, client, d, 300*time.Millisecond)
	derr := expectDrop(traces, n.Name, cip, d, "DROP_SVC_SOURCE_RANGE")
	if cerr == nil {
		derr = errors.Join(fmt.Errorf("the client outside the ranges was answered by %s", name), derr)
	}
	s.Check(fmt.Sprintf("loadBalancerSourceRanges: a client outside %v is dropped, named DROP_SVC_SOURCE_RANGE", denied.LoadBalancerSourceRanges),
		fmt.Sprintf("%s's trace records of %s -> %s, and the client's connect (no answer)", n.Name, cip, d), derr)
	return nil
}

// ---- terminating-fallback ----

type terminatingWith struct {
	From        scenarios.MemberRef  `json:"from" required:"true" doc:"the pod that connects to the ClusterIP"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP service with whoami servers, two or more backends, all active"`
	Connections int                  `json:"connections" range:"1..1000" doc:"new connections per phase"`
}

func (w *terminatingWith) Validate(e strictyaml.FieldErrors) {
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.Server != "whoami" || svc.Protocol != "TCP" || len(svc.Backends) < 2) {
		e.Add("service", "service %s: want TCP, server whoami and two or more backends", w.Service)
	}
}

// withStates is svc with backend i in states[i] ("" keeps it).
func withStates(svc agent.Service, states map[netip.Addr]string) agent.Service {
	out := svc
	out.Backends = append([]agent.ServiceBackend(nil), svc.Backends...)
	for i, b := range out.Backends {
		if st, ok := states[b.IP]; ok {
			out.Backends[i].State = st
		}
	}
	return out
}

func runTerminating(ctx context.Context, s *scenarios.Stage, w terminatingWith, _ none) error {
	t := s.T
	orig := s.Services[string(w.Service)]
	defer func() { _ = s.ServiceUpsert(context.WithoutCancel(ctx), orig) }()
	dst := netip.AddrPortFrom(orig.ClusterIP, orig.Port)
	from := string(w.From)

	// An open connection first; its backend then turns terminating.
	var conn net.Conn
	var rd *bufio.Reader
	if err := t.Do(from, func() error {
		c, err := net.DialTimeout("tcp4", dst.String(), time.Second)
		if err != nil {
			return err
		}
		conn, rd = c, bufio.NewReader(c)
		return nil
	}); err != nil {
		return fmt.Errorf("connect %s: %w", dst, err)
	}
	defer conn.Close()
	ask := func() (string, error) {
		_ = conn.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := conn.Write([]byte("who\n")); err != nil {
			return "", err
		}
		l, err := rd.ReadString('\n')
		return strings.TrimSpace(l), err
	}
	held, err := ask()
	if err != nil {
		return err
	}
	var heldIP netip.Addr
	for _, b := range orig.Backends {
		if p, ok := podByIP(t, b.IP); ok && p.Name == held {
			heldIP = b.IP
		}
	}
	terminating := withStates(orig, map[netip.Addr]string{heldIP: "terminating"})
	if err := s.ServiceUpsert(ctx, terminating); err != nil {
		return err
	}
	counts := map[string]int{}
	for range w.Connections {
		name, err := whoami(t, from, dst, time.Second)
		if err != nil {
			return err
		}
		counts[name]++
	}
	var nerr error
	if counts[held] > 0 {
		nerr = fmt.Errorf("%d of %d new connections went to %s, terminating: %v", counts[held], w.Connections, held, counts)
	}
	s.Check("terminating endpoints: new connections avoid a terminating backend while a ready one is left",
		fmt.Sprintf("whoami answers of %d new connections after %s turned terminating: %v", w.Connections, held, counts), nerr)
	// Under Maglev the table itself must leave the terminating backend out: the
	// datapath falls back to random selection for a slot whose backend is not active,
	// which hides a table that still gives it slots (spread differs from the spec).
	if cfg := effectiveConfig(s); cfg.LBAlgorithm == config.LBMaglev {
		m := cmp0(cfg.MaglevTableSize, maglev.DefaultTableSize)
		for _, n := range t.Nodes() {
			table, ids, err := maglevTableOf(s, n.Name, terminating)
			var want []uint32
			if err == nil {
				want, err = expectedMaglevTable(terminating, ids, m, cfg.MaglevHashSeed)
			}
			if err == nil {
				err = compareTables(table, want)
			}
			s.Check(fmt.Sprintf("terminating endpoints: %s's Maglev table for %s is computed from the ready backends only (%s terminating)", n.Name, orig.Name, held),
				fmt.Sprintf("%s's pinned lb_maglev entry of %s against internal/maglevref.Table(ready backends' IDs, seed, M %d)", n.Name, dst, m), err)
		}
	}
	again, kerr := ask()
	if kerr == nil && again != held {
		kerr = fmt.Errorf("the open connection is now answered by %s, was %s", again, held)
	}
	s.Check("terminating endpoints: an open connection keeps its backend after it turns terminating",
		fmt.Sprintf("whoami answer on the connection opened before: %q (was %q)", again, held), kerr)

	// Only terminating backends left: they serve new connections (KEP-1669).
	all := map[netip.Addr]string{}
	for _, b := range orig.Backends {
		all[b.IP] = "terminating"
	}
	if err := s.ServiceUpsert(ctx, withStates(orig, all)); err != nil {
		return err
	}
	counts = map[string]int{}
	var ferr error
	for range w.Connections {
		name, err := whoami(t, from, dst, time.Second)
		if err != nil {
			ferr = fmt.Errorf("a new connection failed with only terminating backends: %w", err)
			break
		}
		counts[name]++
	}
	s.Check("terminating endpoints: with only terminating backends left, new connections use them (fallback)",
		fmt.Sprintf("whoami answers of %d new connections: %v", w.Connections, counts), ferr)
	return nil
}

// ---- itp-local ----

type itpLocalWith struct {
	From        scenarios.PodRef     `json:"from" required:"true" doc:"the pod that connects"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP service with internalTrafficPolicy Local, whoami servers, backends on the pod's node and others"`
	None        scenarios.ServiceRef `json:"none" required:"true" doc:"a TCP service with internalTrafficPolicy Local and no backend on the pod's node"`
	Connections int                  `json:"connections" range:"1..1000" doc:"connections to the first service"`
}

func runITPLocal(ctx context.Context, s *scenarios.Stage, w itpLocalWith, _ none) error {
	t := s.T
	from := string(w.From)
	pod, err := t.Pod(from)
	if err != nil {
		return err
	}
	svc := s.Services[string(w.Service)]
	dst := netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	counts := map[string]int{}
	var lerr error
	for range w.Connections {
		name, err := whoami(t, from, dst, time.Second)
		if err != nil {
			lerr = err
			break
		}
		counts[name]++
		if p, err := t.Pod(name); err != nil || p.Node != pod.Node {
			lerr = fmt.Errorf("answered by %s, not on %s", name, pod.Node)
		}
	}
	s.Check(fmt.Sprintf("internalTrafficPolicy Local: %s's connections land on backends of %s only", from, pod.Node),
		fmt.Sprintf("whoami answers of %d connections to %s: %v", w.Connections, dst, counts), lerr)
	none := s.Services[string(w.None)]
	nd := netip.AddrPortFrom(none.ClusterIP, none.Port)
	traces, err := s.OpenTraces(t, pod.Node)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}
	name, cerr := whoami(t, from, nd, 300*time.Millisecond)
	derr := expectDrop(traces, pod.Node, pod.IP, nd, "DROP_SVC_NO_LOCAL_BACKEND")
	if cerr == nil {
		derr = errors.Join(fmt.Errorf("answered by %s", name), derr)
	}
	s.Check(fmt.Sprintf("internalTrafficPolicy Local: no backend on %s, dropped, named DROP_SVC_NO_LOCAL_BACKEND", pod.Node),
		fmt.Sprintf("%s's trace records of %s -> %s", pod.Node, pod.IP, nd), derr)
	return nil
}

func sameKeys(a, b map[string]int) bool {
	for k := range a {
		if _, ok := b[k]; !ok {
			return false
		}
	}
	return len(a) == len(b)
}

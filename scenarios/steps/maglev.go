// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"podpath/datapath/agent"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
	"podpath/datapath/trace"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[maglevBalanceWith, maglevBalanceExpect]{
		Name:    "maglev-balance",
		Summary: "the Maglev lookup table a node holds for a service: entries per backend differ by at most maxSpread",
		Agents:  true,
		Expect:  maglevBalanceExpect{MaxSpread: 1},
		Timeout: 30 * time.Second,
		Run:     runMaglevBalance,
	})
	scenarios.RegisterStep(scenarios.StepDef[maglevCrossNodeWith, maglevCrossNodeExpect]{
		Name:    "maglev-cross-node",
		Summary: "many UDP flows from a client to a service's external IP, entering through one node and then another: each flow lands on the same backend both times",
		Agents:  true,
		With:    maglevCrossNodeWith{Flows: 10000},
		Expect:  maglevCrossNodeExpect{MaxUnansweredPercent: 1},
		Timeout: 3 * time.Minute, // 2 x up to 40,000 flows
		Run:     runMaglevCrossNode,
	})
	scenarios.RegisterStep(scenarios.StepDef[maglevRemovalWith, maglevRemovalExpect]{
		Name: "maglev-backend-removal",
		Summary: "remove one backend from services: established TCP connections to the others survive on the same " +
			"backend, and fresh lookups move the removed backend's flows and at most maxMovedPercent of the others",
		Agents:  true,
		With:    maglevRemovalWith{Flows: 10000, Connections: 4},
		Expect:  maglevRemovalExpect{MaxMovedPercent: 1, MaxUnansweredPercent: 1},
		Timeout: 3 * time.Minute, // 2 x up to 40,000 flows, connections, service updates
		Run:     runMaglevRemoval,
	})
}

const (
	// firstFlowPort is the source port of the first of the flows a client sends.
	firstFlowPort = 20000
	flowTimeout   = 300 * time.Millisecond
)

type maglevBalanceWith struct {
	Node    scenarios.NodeRef    `json:"node" required:"true" doc:"whose table"`
	Service scenarios.ServiceRef `json:"service" required:"true" doc:"the service (its first external IP, else its ClusterIP)"`
}

type maglevBalanceExpect struct {
	MaxSpread int `json:"maxSpread" range:"0.." doc:"most minus fewest entries per backend (1: every backend holds floor or ceil of M/N)"`
}

// lbOpen opens node's pinned load-balancer maps, sized by the stage's config.
func lbOpen(s *scenarios.Stage, node string) (*maps.LB, error) {
	size := effectiveConfig(s).MaglevTableSize
	if size == 0 {
		size = maglev.DefaultTableSize
	}
	return maps.OpenPinnedLB(filepath.Join(s.T.Dir(), "bpffs", node, "maps"), uint32(size))
}

// vip is where the maglev steps send a service's traffic: its first external IP (else
// its ClusterIP) and port.
func vip(svc agent.Service) netip.AddrPort {
	if len(svc.ExternalIPs) > 0 {
		return netip.AddrPortFrom(svc.ExternalIPs[0], svc.Port)
	}
	return netip.AddrPortFrom(svc.ClusterIP, svc.Port)
}

func runMaglevBalance(_ context.Context, s *scenarios.Stage, w maglevBalanceWith, e maglevBalanceExpect) error {
	svc := s.Services[string(w.Service)]
	lb, err := lbOpen(s, string(w.Node))
	if err != nil {
		return err
	}
	defer lb.Close()
	svcs, err := lb.ServiceList()
	if err != nil {
		return err
	}
	proto := map[string]maps.Proto{"TCP": maps.ProtoTCP, "UDP": maps.ProtoUDP}[svc.Protocol]
	balance := fmt.Errorf("no %s service %s in %s's maps", svc.Protocol, vip(svc), w.Node)
	lookedAt := fmt.Sprintf("%s's Maglev table of %s", w.Node, w.Service)
	for _, m := range svcs {
		if m.Addr != vip(svc).Addr() || m.Proto != proto {
			continue
		}
		table, err := lb.MaglevLookup(m.ID)
		if err != nil {
			balance = err
			break
		}
		lo, hi, per := maglev.Balance(table)
		lookedAt = fmt.Sprintf("%s's Maglev table (M=%d): entries per backend %v, max/min %d/%d = %.4f", w.Node, len(table), per, hi, lo, float64(hi)/float64(max(lo, 1)))
		balance = nil
		if hi-lo > e.MaxSpread {
			balance = fmt.Errorf("max %d - min %d > %d with equal weights", hi, lo, e.MaxSpread)
		}
	}
	name := "Maglev table balance: every backend holds floor or ceil of M/N entries"
	if e.MaxSpread != 1 {
		name = fmt.Sprintf("Maglev table balance: entries per backend differ by at most %d", e.MaxSpread)
	}
	s.Check(name, lookedAt, balance)
	return nil
}

type maglevCrossNodeWith struct {
	Client  scenarios.MemberRef  `json:"client" required:"true" doc:"the client outside the cluster that sends the flows"`
	Service scenarios.ServiceRef `json:"service" required:"true" doc:"a UDP service with an external IP and whoami servers"`
	Via     []scenarios.NodeRef  `json:"via" required:"true" doc:"two nodes: the flows enter through the first, then through the second"`
	Flows   int                  `json:"flows" range:"1..40000" doc:"flows, one UDP datagram each from its own source port"`
}

func (w *maglevCrossNodeWith) Validate(e strictyaml.FieldErrors) {
	if len(w.Via) != 2 || w.Via[0] == w.Via[1] {
		e.Add("via", "want two different nodes, got %v", w.Via)
	}
	checkWhoami(e, "service", w.Service, "UDP")
}

// checkWhoami wants service to be of proto (any when "") with whoami servers and an
// external IP.
func checkWhoami(e strictyaml.FieldErrors, field string, name scenarios.ServiceRef, proto string) {
	svc := scenarios.DecodingStage(e).Service(name)
	if svc == nil {
		return
	}
	if proto != "" && svc.Protocol != proto || svc.Server != "whoami" || len(svc.ExternalIPs) == 0 {
		e.Add(field, "service %s is %s with server %q and external IPs %v: want %s with server whoami and an external IP", name, svc.Protocol, svc.Server, svc.ExternalIPs, cmp.Or(proto, "TCP or UDP"))
	}
}

type maglevCrossNodeExpect struct {
	MaxDiffering         int     `json:"maxDiffering" range:"0.." doc:"flows that may land on another backend through the second node"`
	MaxUnansweredPercent float64 `json:"maxUnansweredPercent" range:"0..100" doc:"flows that may go unanswered through either node, in percent"`
	// XDP: the stage's frontends are served at XDP (bpf-lb-acceleration); the trace
	// records of each entry node must say so, or the stage would pass just as well
	// with every flow translated by tc.
	XDP bool `json:"xdp" doc:"the flows are translated at trace point xdp on each entry node, none at from-netdev"`
}

// flowMemo names the flows a stage sent to svc through node, for a later step.
func flowMemo(svc scenarios.ServiceRef, node scenarios.NodeRef) string {
	return "maglev flows " + string(svc) + " via " + string(node)
}

func runMaglevCrossNode(ctx context.Context, s *scenarios.Stage, w maglevCrossNodeWith, e maglevCrossNodeExpect) error {
	svc := s.Services[string(w.Service)]
	dst := vip(svc)
	var via [2]map[int]string
	for i, n := range w.Via {
		node, err := s.T.Node(string(n))
		if err != nil {
			return err
		}
		if i == 0 {
			s.Progress("sending %d UDP flows to %s through %s", w.Flows, dst.Addr(), n)
		} else {
			s.Progress("sending the same %d flows through %s", w.Flows, n)
		}
		// Flows unanswered in either pass count against one budget.
		var lostBefore map[int]bool
		if i == 1 {
			lostBefore = unansweredOf(via[0], w.Flows)
		}
		var traces *trace.Collector
		if e.XDP {
			if traces, err = s.OpenTraces(s.T, node.Name); err != nil {
				return err
			}
			if err := traces.Collect(); err != nil { // earlier steps' records are not this check's
				traces.Close()
				return err
			}
			traces.Reset()
		}
		via[i], err = flowsThrough(ctx, s.T, string(w.Client), dst, node.InternalIP, w.Flows, allowedOf(e.MaxUnansweredPercent, w.Flows), lostBefore)
		if traces != nil {
			checkServedAtXDP(s, traces, node, dst, via[i], localPods(node))
			traces.Close()
		}
		if tm := (*tooManyUnanswered)(nil); errors.As(err, &tm) {
			s.Check(fmt.Sprintf("cross-node consistency: %d of %d flows land on the same backend through %s and %s", 0, w.Flows, w.Via[0], w.Via[1]),
				fmt.Sprintf("the backend name each flow's answer carries, entering through %s (answers: %s)", n, cmp.Or(spread(via[i]), "none")), err)
			return nil
		}
		if err != nil {
			return err
		}
		s.Memo[flowMemo(w.Service, n)] = via[i]
	}
	same, differ, lost := compareFlows(via[0], via[1], w.Flows)
	var cerr error
	if differ > e.MaxDiffering || float64(lost) > e.MaxUnansweredPercent/100*float64(w.Flows) {
		cerr = fmt.Errorf("%d of %d flows landed on another backend through %s (at most %d may), %d unanswered (at most %g%% may be)",
			differ, w.Flows, w.Via[1], e.MaxDiffering, lost, e.MaxUnansweredPercent)
	}
	s.Check(fmt.Sprintf("cross-node consistency: %d of %d flows land on the same backend through %s and %s", same, w.Flows, w.Via[0], w.Via[1]),
		"the backend name each flow's answer carries, per entry node ("+spread(via[0])+")", cerr)
	checkMaglevSpec(s, string(w.Service), string(w.Client), w.Via, via[:])
	return nil
}

type maglevRemovalWith struct {
	Client      scenarios.MemberRef    `json:"client" required:"true" doc:"the client outside the cluster"`
	Services    []scenarios.ServiceRef `json:"services" required:"true" doc:"the services the backend is removed from: a UDP one (flows) and a TCP one (connections), with whoami servers"`
	Remove      scenarios.PodRef       `json:"remove" required:"true" doc:"the backend pod removed"`
	Via         scenarios.NodeRef      `json:"via" required:"true" doc:"the node the client's traffic enters through"`
	Flows       int                    `json:"flows" range:"1..40000" doc:"UDP flows compared before and after"`
	Connections int                    `json:"connections" range:"1..64" doc:"TCP connections to other backends held across the removal"`
}

func (w *maglevRemovalWith) Validate(e strictyaml.FieldErrors) {
	protos := map[string]bool{}
	for i, name := range w.Services {
		checkWhoami(e, fmt.Sprintf("services[%d]", i), name, "")
		svc := scenarios.DecodingStage(e).Service(name)
		if svc == nil {
			continue
		}
		protos[svc.Protocol] = true
		if !slices.ContainsFunc(svc.Backends, func(b scenarios.BackendSpec) bool { return b.Pod == w.Remove }) {
			e.Add("remove", "%q is not a backend of service %s", w.Remove, name)
		}
	}
	if !protos["UDP"] || !protos["TCP"] {
		e.Add("services", "want a UDP service and a TCP service")
	}
}

type maglevRemovalExpect struct {
	MaxMovedPercent      float64 `json:"maxMovedPercent" range:"0..100" doc:"flows of the remaining backends that may move to another backend, in percent"`
	MaxUnansweredPercent float64 `json:"maxUnansweredPercent" range:"0..100" doc:"flows that may go unanswered before or after the removal, in percent, beyond those the spec predicts (SNAT source ports exhausted towards one backend); past it the step stops and fails"`
}

// runMaglevRemoval holds TCP connections to backends other than the one removed,
// removes it from the services, checks the connections, then compares fresh lookups
// (conntrack flushed) of the same UDP flows before and after.
func runMaglevRemoval(ctx context.Context, s *scenarios.Stage, w maglevRemovalWith, e maglevRemovalExpect) error {
	var udp, tcp agent.Service
	var udpName scenarios.ServiceRef
	for _, name := range w.Services {
		if svc := s.Services[string(name)]; svc.Protocol == "UDP" {
			udp, udpName = svc, name
		} else {
			tcp = svc
		}
	}
	entry, err := s.T.Node(string(w.Via))
	if err != nil {
		return err
	}
	removed, err := s.T.Pod(string(w.Remove))
	if err != nil {
		return err
	}
	before, ok := s.Memo[flowMemo(udpName, w.Via)].(map[int]string)
	if !ok || len(before) == 0 {
		s.Progress("sending %d UDP flows to %s through %s", w.Flows, vip(udp).Addr(), w.Via)
		before, err = flowsThrough(ctx, s.T, string(w.Client), vip(udp), entry.InternalIP, w.Flows, allowedOf(e.MaxUnansweredPercent, w.Flows), nil)
		if tm := (*tooManyUnanswered)(nil); errors.As(err, &tm) {
			s.Check(fmt.Sprintf("removing %s moves its flows and at most %g%% of the others", removed.Name, e.MaxMovedPercent),
				fmt.Sprintf("backends of the same flows through %s before the removal", w.Via), err)
			return nil
		}
		if err != nil {
			return err
		}
	}
	lb, err := lbOpen(s, string(w.Via))
	if err != nil {
		return err
	}
	defer lb.Close()

	// Established TCP connections, to backends other than the one removed next.
	conns, err := holdTCP(ctx, s.T, string(w.Client), vip(tcp), entry.InternalIP, removed.Name, w.Connections)
	if err != nil {
		return err
	}
	defer conns.Close()

	s.Progress("removing backend %s from %s", removed.Name, joinRefs(w.Services))
	for _, name := range w.Services {
		svc := s.Services[string(name)]
		svc.Backends = slices.DeleteFunc(slices.Clone(svc.Backends), func(b agent.ServiceBackend) bool { return b.IP == removed.IP })
		actx, cancel := agentCall(ctx)
		err := s.ServiceUpsert(actx, svc)
		cancel()
		if err != nil {
			return err
		}
	}
	s.Check("established TCP connections to the remaining backends survive the removal, on the same backend",
		fmt.Sprintf("replies on %d connections opened through %s before the removal", w.Connections, w.Via), conns.stillSame())

	// Disruption: fresh lookups (conntrack flushed) against the table before.
	if err := lb.CTFlush(); err != nil {
		return err
	}
	// Flows that must go unanswered: those that find no SNAT source port towards a
	// remote backend (the spec's Maglev table says which backend each takes).
	excess, why, err := snatExhaustion(s, s.Services[string(udpName)], string(w.Client), string(w.Via), w.Flows)
	if err != nil {
		return err
	}
	// Unanswered flows cannot be compared; more than maxUnansweredPercent away from the
	// prediction fails (the flows go out 64 at a time, not exactly in the replayed order).
	allowed := excess + allowedOf(e.MaxUnansweredPercent, w.Flows)
	after, err := flowsThrough(ctx, s.T, string(w.Client), vip(udp), entry.InternalIP, w.Flows, allowed, nil)
	if tm := (*tooManyUnanswered)(nil); errors.As(err, &tm) {
		s.Check(fmt.Sprintf("removing %s moves its flows and at most %g%% of the others", removed.Name, e.MaxMovedPercent),
			fmt.Sprintf("backends of the same flows through %s after the removal, conntrack flushed", w.Via), err)
		return nil
	}
	if err != nil {
		return err
	}
	lost := w.Flows - len(after)
	var xerr error
	if slack := allowedOf(e.MaxUnansweredPercent, w.Flows); lost < excess-slack || lost > allowed {
		xerr = fmt.Errorf("%d flows unanswered, the spec predicts %d (%s) give or take %d (%g%%)", lost, excess, why, slack, e.MaxUnansweredPercent)
	}
	s.Check(fmt.Sprintf("after removing %s, the flows that find no SNAT source port towards their backend go unanswered, and no other: %d predicted", removed.Name, excess),
		fmt.Sprintf("answers of %d UDP flows through %s against the spec's Maglev table and SNAT range (%s)", w.Flows, w.Via, why), xerr)
	var ofRemoved, others, movedOthers int
	for port, b := range before {
		a, ok := after[port]
		if !ok || b == "" {
			continue
		}
		if b == removed.Name {
			ofRemoved++
			continue
		}
		others++
		if a != b {
			movedOthers++
		}
	}
	var derr error
	if others == 0 || float64(movedOthers) > e.MaxMovedPercent/100*float64(others) {
		derr = fmt.Errorf("%d of %d flows of the remaining backends moved (limit %g%%)", movedOthers, others, e.MaxMovedPercent)
	}
	s.Check(fmt.Sprintf("removing %s moves its %d flows and %d of the other %d (%.2f%%)", removed.Name, ofRemoved, movedOthers, others, 100*float64(movedOthers)/float64(max(others, 1))),
		fmt.Sprintf("backends of the same flows through %s before and after, conntrack flushed (unanswered, not compared: %d before, %d after)", w.Via, w.Flows-len(before), w.Flows-len(after)), derr)
	return nil
}

func joinRefs(refs []scenarios.ServiceRef) string {
	var out []string
	for _, r := range refs {
		out = append(out, string(r))
	}
	return strings.Join(out, " and ")
}

// routeVia routes dst from client via entry (the client's next hop for it).
func routeVia(ctx context.Context, t topology.Cluster, client string, dst, entry netip.Addr) error {
	if out, err := t.Exec(ctx, client, "ip", "route", "replace", dst.String()+"/32", "via", entry.String()); err != nil {
		return fmt.Errorf("route %s via %s in %s: %w: %s", dst, entry, client, err, out)
	}
	return nil
}

// flowWorkers is how many flows flowsThrough has in flight at once.
const flowWorkers = 64

// tooManyUnanswered is flowsThrough stopping early: more flows went unanswered than
// the step allows, so its verdict is clear without the rest.
type tooManyUnanswered struct {
	unanswered, before, done, flows, allowed int
	entry                                    netip.Addr
	dst                                      netip.AddrPort
	took                                     time.Duration
	examples                                 []int // source ports of unanswered flows
}

func (e *tooManyUnanswered) Error() string {
	earlier := ""
	if e.before > 0 {
		earlier = fmt.Sprintf(" (and %d unanswered in the earlier pass)", e.before)
	}
	return fmt.Sprintf("%d of the %d flows sent to %s via %s so far went unanswered within %v each%s, at most %d of %d may: "+
		"stopped after %v without sending the other %d; unanswered source ports include %v",
		e.unanswered, e.done, e.dst, e.entry, flowTimeout, earlier, e.allowed, e.flows, e.took.Round(time.Millisecond), e.flows-e.done, e.examples)
}

// flowsThrough routes dst's address from client via entry and sends one UDP datagram
// from each of flows source ports, flowWorkers at a time, each waiting flowTimeout for
// its answer; it returns which backend answered each (absent: none). Once more than
// maxUnanswered flows went unanswered it stops and returns a *tooManyUnanswered with
// what it got: a datapath that drops everything fails in a fraction of a second.
// Flows of lostBefore (unanswered in an earlier pass) count against maxUnanswered from
// the start, and again only once.
func flowsThrough(ctx context.Context, t topology.Cluster, client string, dst netip.AddrPort, entry netip.Addr, flows, maxUnanswered int, lostBefore map[int]bool) (map[int]string, error) {
	if err := routeVia(ctx, t, client, dst.Addr(), entry); err != nil {
		return nil, err
	}
	start := time.Now()
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	ports := make(chan int)
	go func() {
		defer close(ports)
		for i := range flows {
			select {
			case ports <- firstFlowPort + i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var (
		mu         sync.Mutex
		got        = make(map[int]string, flows)
		done       int
		unanswered []int
		lost       = len(lostBefore)
	)
	var wg sync.WaitGroup
	errs := make([]error, flowWorkers)
	for w := range flowWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[w] = t.Do(client, func() error {
				buf := make([]byte, 64)
				to := net.UDPAddrFromAddrPort(dst)
				for port := range ports {
					backend, err := oneFlow(port, to, buf)
					if err != nil {
						stop()
						return err
					}
					mu.Lock()
					done++
					if backend != "" {
						got[port] = backend
					} else {
						unanswered = append(unanswered, port)
						if !lostBefore[port] {
							lost++
						}
						if lost > maxUnanswered {
							stop()
						}
					}
					mu.Unlock()
				}
				return nil
			})
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return got, err
	}
	if lost > maxUnanswered {
		slices.Sort(unanswered)
		return got, &tooManyUnanswered{unanswered: len(unanswered), before: len(lostBefore), done: done, flows: flows, allowed: maxUnanswered,
			entry: entry, dst: dst, took: time.Since(start), examples: unanswered[:min(len(unanswered), 8)]}
	}
	if err := ctx.Err(); err != nil && done < flows {
		return got, fmt.Errorf("%d of %d flows sent: %w", done, flows, err)
	}
	return got, nil
}

// oneFlow sends one datagram from source port port to to and waits flowTimeout for
// the answer: the backend's name, or "" when none came.
func oneFlow(port int, to *net.UDPAddr, buf []byte) (string, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: port})
	if err != nil {
		return "", fmt.Errorf("flow from port %d: %w", port, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(flowTimeout))
	if _, err := c.WriteTo([]byte("who"), to); err != nil {
		return "", nil
	}
	n, _, err := c.ReadFrom(buf)
	if err != nil {
		return "", nil
	}
	return string(buf[:n]), nil
}

// allowedOf is percent of flows, rounded down: how many flows a limit in percent allows.
func allowedOf(percent float64, flows int) int { return int(percent / 100 * float64(flows)) }

// unansweredOf is the flows of a pass that got no answer.
func unansweredOf(got map[int]string, flows int) map[int]bool {
	out := map[int]bool{}
	for port := firstFlowPort; port < firstFlowPort+flows; port++ {
		if got[port] == "" {
			out[port] = true
		}
	}
	return out
}

func compareFlows(a, b map[int]string, flows int) (same, differ, lost int) {
	for port := firstFlowPort; port < firstFlowPort+flows; port++ {
		x, y := a[port], b[port]
		switch {
		case x == "" || y == "":
			lost++
		case x == y:
			same++
		default:
			differ++
		}
	}
	return same, differ, lost
}

func spread(flows map[int]string) string {
	count := map[string]int{}
	for _, b := range flows {
		count[b]++
	}
	var parts []string
	for b, n := range count {
		if b == "" {
			b = "unanswered"
		}
		parts = append(parts, fmt.Sprintf("%s %d", b, n))
	}
	return strings.Join(parts, ", ")
}

// heldConns are TCP connections to a service with the backend each first reached.
type heldConns struct {
	conns    []net.Conn
	backends []string
}

// holdTCP opens TCP connections from client to dst through entry until n reach
// backends other than avoid.
func holdTCP(ctx context.Context, t topology.Cluster, client string, dst netip.AddrPort, entry netip.Addr, avoid string, n int) (*heldConns, error) {
	if err := routeVia(ctx, t, client, dst.Addr(), entry); err != nil {
		return nil, err
	}
	h := &heldConns{}
	err := t.Do(client, func() error {
		for try := 0; len(h.conns) < n && try < 16*n; try++ {
			d := net.Dialer{Timeout: time.Second}
			c, err := d.DialContext(ctx, "tcp4", dst.String())
			if err != nil {
				return err
			}
			b, err := ask(c)
			if err != nil || b == avoid {
				c.Close()
				if err != nil {
					return err
				}
				continue
			}
			h.conns, h.backends = append(h.conns, c), append(h.backends, b)
		}
		if len(h.conns) < n {
			return fmt.Errorf("only %d of %d connections reached a backend other than %s", len(h.conns), n, avoid)
		}
		return nil
	})
	if err != nil {
		h.Close()
		return nil, err
	}
	return h, nil
}

func ask(c net.Conn) (string, error) {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("who\n")); err != nil {
		return "", err
	}
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(buf[:n])), nil
}

func (h *heldConns) stillSame() error {
	var errs []error
	for i, c := range h.conns {
		b, err := ask(c)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("connection %d (to %s): %w", i, h.backends[i], err))
		case b != h.backends[i]:
			errs = append(errs, fmt.Errorf("connection %d answered by %s, was %s", i, b, h.backends[i]))
		}
	}
	return errors.Join(errs...)
}

func (h *heldConns) Close() error {
	for _, c := range h.conns {
		c.Close()
	}
	return nil
}

// checkServedAtXDP checks node's trace records for the flows just sent to dst: those
// whose backend is on another node are translated at trace point xdp, none at
// from-netdev (a backend on the entry node is tc's by design: it delivers with
// redirect_peer). The ring buffer may drop records under a burst of thousands of flows,
// so at least half of the answered flows to remote backends must be seen at XDP; a
// single from-netdev translation towards a remote backend after XDP's first fails the
// check.
func checkServedAtXDP(s *scenarios.Stage, traces *trace.Collector, node topology.Node, dst netip.AddrPort, answers map[int]string, localNames map[string]bool) {
	err := traces.Collect()
	names := traces.Names()
	remote := 0
	for _, b := range answers {
		if b != "" && !localNames[b] {
			remote++
		}
	}
	at := func(point string) []trace.Record {
		return traces.Find(node.Name, func(r trace.Record) bool {
			return names.ObsPoint(r.ObsPoint) == point && r.LB.OrigDst == dst && !node.PodCIDR.Contains(r.Pkt.Dst)
		})
	}
	xdpRecs, tcRecs := at("OBS_XDP"), at("OBS_FROM_NETDEV")
	// Until the entry node knows the backend node's neighbour entry, bpf_fib_lookup at
	// XDP finds none and hands the packet to tc (redirect_neigh resolves it), by design:
	// from-netdev translations before XDP's first one are those; any later one is not.
	first := uint64(0)
	for _, r := range xdpRecs {
		if first == 0 || r.KtimeNs < first {
			first = r.KtimeNs
		}
	}
	var late []trace.Record
	for _, r := range tcRecs {
		if first == 0 || r.KtimeNs > first {
			late = append(late, r)
		}
	}
	switch {
	case err != nil:
	case len(late) > 0:
		err = fmt.Errorf("%d from-netdev records translate flows to %s towards backends on other nodes after XDP's first, e.g. %s", len(late), dst, names.Format(late[0]))
	case len(xdpRecs)*2 < remote:
		err = fmt.Errorf("%d xdp records translate flows to %s, %d flows were answered by backends on other nodes; records on %s:\n%s", len(xdpRecs), dst, remote, node.Name, traces.Dump(node.Name))
	}
	s.Check(fmt.Sprintf("flows to %s towards backends on other nodes are translated at XDP on %s (%d xdp records, %d such flows answered), none by from-netdev once XDP serves (%d before)", dst, node.Name, len(xdpRecs), remote, len(tcRecs)-len(late)),
		node.Name+" trace ring buffer: OBS_XDP and OBS_FROM_NETDEV records whose original destination is "+dst.String()+" and translated destination outside "+node.PodCIDR.String(), err)
}

// localPods names the pods of node: the names whoami answers with from its backends.
func localPods(node topology.Node) map[string]bool {
	names := map[string]bool{}
	for _, p := range node.Pods {
		names[p.Name] = true
	}
	return names
}

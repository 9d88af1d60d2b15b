// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket/layers"

	"podpath/internal/capture"
	"podpath/internal/nicmodel"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[fibRerouteWith, fibRerouteExpect]{
		Name: "fib-reroute",
		Summary: "a NodePort TCP flow streams a numbered message every 10ms through the entry node to a backend on " +
			"another node while the entry node's route to the backend moves to a next hop on another link (and, " +
			"optionally, that next hop's neighbour entry changes MAC and back): captures on both links show every " +
			"message sent after the change plus a deadline on the new link only (with the new MAC), and the " +
			"connection keeps echoing every message",
		Agents: true,
		Run:    runFIBReroute,
	})
}

type fibRerouteWith struct {
	Client      scenarios.MemberRef  `json:"client" required:"true" doc:"the client outside the cluster"`
	Node        scenarios.NodeRef    `json:"node" required:"true" doc:"the entry node whose NodePort the client dials"`
	BackendNode scenarios.NodeRef    `json:"backendNode" required:"true" doc:"the node of the service's backends"`
	Service     scenarios.ServiceRef `json:"service" required:"true" doc:"a TCP NodePort service with echo servers, backends on backendNode only"`
	Via         string               `json:"via" required:"true" doc:"the segment both nodes share besides the internal one: the route moves to backendNode's address there"`
}

type fibRerouteExpect struct {
	// DeadlineMS bounds how long after a change packets may still take the old way.
	DeadlineMS int `json:"deadlineMs" range:"1..5000" doc:"how long after the change (ms) the flow may still use the old link or MAC"`
	// Neighbour also changes the new next hop's MAC (a made-up one), then restores it.
	Neighbour bool `json:"neighbour" doc:"also replace the new next hop's neighbour entry with another MAC and back: packets follow each MAC"`
	// XDP: the flow is forwarded by bpf_xdp, which AF_PACKET on the node's own NICs
	// does not see (XDP redirects bypass the taps); false: tc, which it sees.
	XDP bool `json:"xdp" doc:"the flow is forwarded at XDP: a capture on the entry node's own NICs sees none of its messages (false: it sees them, tc)"`
}

func (w *fibRerouteWith) Validate(e strictyaml.FieldErrors) {
	if w.Node == w.BackendNode {
		e.Add("backendNode", "%q is the entry node: want another", w.BackendNode)
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.NodePort == 0 || svc.Protocol != "TCP") {
		e.Add("service", "service %s: want a TCP nodePort", w.Service)
	}
}

// fibFakeMAC is the made-up MAC of the neighbour variant (locally administered).
var fibFakeMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0xf1, 0xb0, 0x01}

var fibSeqRE = regexp.MustCompile(`fibseq (\d{6})\n`)

// fibStream is a held TCP connection that sends "fibseq NNNNNN\n" every 10ms and
// reads each back from the echo server.
type fibStream struct {
	conn net.Conn
	mu   sync.Mutex
	sent []time.Time // by sequence number
	errs []error
	stop chan struct{}
	done chan struct{}
}

func (f *fibStream) run() {
	defer close(f.done)
	r := bufio.NewReader(f.conn)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for seq := 0; ; seq++ {
		select {
		case <-f.stop:
			return
		case <-tick.C:
		}
		msg := fmt.Sprintf("fibseq %06d\n", seq)
		_ = f.conn.SetDeadline(time.Now().Add(5 * time.Second))
		f.mu.Lock()
		f.sent = append(f.sent, time.Now())
		f.mu.Unlock()
		_, err := f.conn.Write([]byte(msg))
		var got string
		if err == nil {
			got, err = r.ReadString('\n')
		}
		if err == nil && got != msg {
			err = fmt.Errorf("echo %q, want %q", got, msg)
		}
		if err != nil {
			f.mu.Lock()
			f.errs = append(f.errs, fmt.Errorf("message %d: %w", seq, err))
			f.mu.Unlock()
			return
		}
	}
}

// sentAt returns when message seq was sent (zero: not sent).
func (f *fibStream) sentAt(seq int) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	if seq < len(f.sent) {
		return f.sent[seq]
	}
	return time.Time{}
}

func (f *fibStream) count() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.sent), errors.Join(f.errs...)
}

// fibSeen is a message of the stream in a capture: on which link, with which MACs.
type fibSeen struct {
	seq    int
	link   string
	dstMAC string
	at     time.Time
}

func runFIBReroute(ctx context.Context, s *scenarios.Stage, w fibRerouteWith, e fibRerouteExpect) error {
	t := s.T
	n1, err := t.Node(string(w.Node))
	if err != nil {
		return err
	}
	n2, err := t.Node(string(w.BackendNode))
	if err != nil {
		return err
	}
	onSeg := func(n topology.Node, seg string) (topology.Interface, error) {
		for _, i := range n.Interfaces {
			if i.Segment == seg {
				return i, nil
			}
		}
		return topology.Interface{}, fmt.Errorf("fib-reroute: %s has no interface on segment %s", n.Name, seg)
	}
	oldIf := internalIface(n1)
	newIf, err := onSeg(n1, w.Via)
	if err != nil {
		return err
	}
	hop2, err := onSeg(n2, w.Via)
	if err != nil {
		return err
	}
	oldHop, err := onSeg(n2, oldIf.Segment)
	if err != nil {
		return err
	}
	if newIf.Name == oldIf.Name {
		return fmt.Errorf("fib-reroute: via %s is %s's internal segment: want the other link", w.Via, n1.Name)
	}
	svc := s.Services[string(w.Service)]
	dst := netip.AddrPortFrom(n1.InternalIP, svc.NodePort)
	backends := map[netip.AddrPort]bool{}
	for _, b := range svc.Backends {
		backends[netip.AddrPortFrom(b.IP, b.Port)] = true
	}
	deadline := time.Duration(e.DeadlineMS) * time.Millisecond

	// Both of the entry node's links must carry what XDP redirects (see PeerNAPI);
	// the captures sit at their far ends, in the segments, where what the node sends
	// shows whether it left by XDP, tc or the stack.
	type link struct {
		name string
		pt   capture.Point
	}
	var links []link
	for _, i := range []topology.Interface{oldIf, newIf} {
		seg, err := t.Member(i.Segment)
		if err != nil {
			return err
		}
		// An accelerated topology has the NIC model from link setup; the tc stage gets
		// it here so both stages share one wire (it goes down with the stage's topology).
		if id, err := nicmodel.XDPProgID(seg.NsPath, i.Peer); err != nil {
			return err
		} else if id == 0 {
			if err := nicmodel.PeerNAPI(seg.NsPath, i.Peer); err != nil {
				return err
			}
		}
		links = append(links, link{name: n1.Name + "/" + i.Name, pt: capture.Point{Member: i.Segment, Interface: i.Peer, NsPath: seg.NsPath}})
	}
	oldLink, newLink := links[0].name, links[1].name
	// The wire carries complete checksums (see nicmodel.TxChecksum), as in xdp-nodeport.
	cifs, err := t.Interfaces(string(w.Client))
	if err != nil || len(cifs) == 0 {
		return fmt.Errorf("fib-reroute: client %s: no interface (%v)", w.Client, err)
	}
	mc, _ := t.Member(string(w.Client))
	m1, _ := t.Member(n1.Name)
	m2, _ := t.Member(n2.Name)
	for _, d := range []struct{ ns, ifname string }{{mc.NsPath, cifs[0].Name}, {m1.NsPath, oldIf.Name}, {m1.NsPath, newIf.Name},
		{m2.NsPath, oldHop.Name}, {m2.NsPath, hop2.Name}} {
		if err := nicmodel.TxChecksum(d.ns, d.ifname, false); err != nil {
			return err
		}
		defer nicmodel.TxChecksum(d.ns, d.ifname, true) //nolint:errcheck // best effort: the stage's topology goes down next
	}

	// Neighbours resolved on both links, as on a running cluster.
	for _, hop := range []netip.Addr{hop2.Address.Addr(), oldHop.Address.Addr()} {
		if out, err := t.Exec(ctx, n1.Name, "ping", "-c", "1", "-W", "1", hop.String()); err != nil {
			return fmt.Errorf("fib-reroute: %s cannot reach %s: %w: %s", n1.Name, hop, err, out)
		}
	}
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	generations := func() string { // evidence only: the checks look at packets
		st, err := agents.Client(n1.Name).Status(ctx)
		if err != nil || st.Generations == nil {
			return fmt.Sprintf("unknown (%v)", err)
		}
		return fmt.Sprintf("fib %d, backends %d", st.Generations.FIB, st.Generations.Backends)
	}

	m1pts := []capture.Point{{Member: n1.Name, Interface: oldIf.Name, NsPath: m1.NsPath}, {Member: n1.Name, Interface: newIf.Name, NsPath: m1.NsPath}}
	sess, err := capture.Start(filepath.Join(s.Artifacts, "fib-reroute"), links[0].pt, links[1].pt, m1pts[0], m1pts[1])
	if err != nil {
		return err
	}
	defer sess.Stop()

	stream := &fibStream{stop: make(chan struct{}), done: make(chan struct{})}
	err = t.Do(string(w.Client), func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		stream.conn, err = d.DialContext(ctx, "tcp4", dst.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("fib-reroute: dial %s from %s: %w", dst, w.Client, err)
	}
	defer stream.conn.Close()
	go stream.run()
	stopped := false
	stopStream := func() {
		if !stopped {
			close(stream.stop)
			<-stream.done
			stopped = true
		}
	}
	defer stopStream()
	s.Progress("stream %s -> %s (every 10ms); generations on %s: %s", w.Client, dst, n1.Name, generations())
	time.Sleep(time.Second)

	// The change: a route per backend, more specific than the agent's PodCIDR route,
	// via the backend node's address on the other link.
	var routeErrs []error
	changing := time.Now()
	for b := range backends {
		args := []string{"ip", "route", "add", b.Addr().String() + "/32", "via", hop2.Address.Addr().String(), "dev", newIf.Name}
		if out, err := t.Exec(ctx, n1.Name, args...); err != nil {
			routeErrs = append(routeErrs, fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out))
		}
	}
	changed := time.Now()
	for b := range backends {
		out, err := t.Exec(ctx, n1.Name, "ip", "route", "get", b.Addr().String())
		if err == nil && !strings.Contains(string(out), "dev "+newIf.Name+" ") {
			err = fmt.Errorf("kernel route: %q", strings.TrimSpace(string(out)))
		}
		routeErrs = append(routeErrs, err)
	}
	s.Check(fmt.Sprintf("the route of %s to the backends moves to %s via %s", n1.Name, newIf.Name, hop2.Address.Addr()),
		n1.Name+": ip route add, then ip route get of each backend", errors.Join(routeErrs...))
	if err := errors.Join(routeErrs...); err != nil {
		return nil
	}
	time.Sleep(1500 * time.Millisecond)
	s.Progress("route changed; generations on %s: %s", n1.Name, generations())

	var macChanged, restoring, macRestored time.Time
	var neighErrs []error
	if e.Neighbour {
		neigh := func(mac net.HardwareAddr) error {
			args := []string{"ip", "neigh", "replace", hop2.Address.Addr().String(), "lladdr", mac.String(), "dev", newIf.Name, "nud", "reachable"}
			if out, err := t.Exec(ctx, n1.Name, args...); err != nil {
				return fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, out)
			}
			return nil
		}
		neighErrs = append(neighErrs, neigh(fibFakeMAC))
		macChanged = time.Now()
		time.Sleep(600 * time.Millisecond)
		restoring = time.Now()
		neighErrs = append(neighErrs, neigh(hop2.MAC))
		macRestored = time.Now()
		time.Sleep(1500 * time.Millisecond)
		s.Progress("neighbour changed and restored; generations on %s: %s", n1.Name, generations())
	}
	stopStream()
	sent, streamErr := stream.count()
	if err := sess.Stop(); err != nil {
		return err
	}

	// Every capture of a stream message the entry node sent towards a backend.
	var seen []fibSeen
	onNode := 0 // the same, seen by the taps of the entry node's own NICs
	for _, pt := range m1pts {
		for _, p := range sess.Packets(pt.Member, pt.Interface, nil) {
			if ip, l4 := ipv4Ports(p.Decode()); p.Outgoing && ip != nil && backends[l4.dst(ip)] &&
				fibSeqRE.Match(p.Decode().TransportLayer().LayerPayload()) {
				onNode++
			}
		}
	}
	for _, l := range links {
		for _, p := range sess.Packets(l.pt.Member, l.pt.Interface, nil) {
			pkt := p.Decode()
			ip, l4 := ipv4Ports(pkt)
			if ip == nil || ip.Protocol != layers.IPProtocolTCP || !backends[l4.dst(ip)] {
				continue
			}
			eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if eth == nil {
				continue
			}
			for _, m := range fibSeqRE.FindAllStringSubmatch(string(pkt.TransportLayer().LayerPayload()), -1) {
				seq, _ := strconv.Atoi(m[1])
				seen = append(seen, fibSeen{seq: seq, link: l.name, dstMAC: eth.DstMAC.String(), at: p.Timestamp})
			}
		}
	}
	// A packet counts for a change by when the link carried it: before it, or more
	// than the deadline after it (a retransmission carries an old message the new
	// way, rightly; a message sent before the change that leaves late by the old way
	// is stale forwarding all the same).
	seenAfter := func(x fibSeen, at time.Time) bool { return !at.IsZero() && x.at.After(at.Add(deadline)) }
	seenBefore := func(x fibSeen, at time.Time) bool { return !at.IsZero() && x.at.Before(at) }
	describe := func(x fibSeen) string {
		return fmt.Sprintf("message %d (sent %s after the route change) on %s to %s %s after it", x.seq,
			stream.sentAt(x.seq).Sub(changed).Round(time.Millisecond), x.link, x.dstMAC, x.at.Sub(changed).Round(time.Millisecond))
	}
	var hookErr error
	switch {
	case e.XDP && onNode > 0:
		hookErr = fmt.Errorf("%d of the flow's messages seen leaving by %s's own NICs: forwarded after the taps, not at XDP", onNode, n1.Name)
	case !e.XDP && onNode == 0:
		hookErr = fmt.Errorf("none of the %d messages on the links seen by %s's own NICs: not forwarded by tc", len(seen), n1.Name)
	}
	hook := "tc (the taps of " + n1.Name + "'s NICs see them)"
	if e.XDP {
		hook = "XDP (the taps of " + n1.Name + "'s NICs see none of them)"
	}
	s.Check(fmt.Sprintf("the flow's %d message packets on the links are forwarded at %s", len(seen), hook),
		n1.Name+"/"+oldIf.Name+" and "+n1.Name+"/"+newIf.Name+" captures (outgoing stream messages) against the links'", hookErr)
	var beforeOld, beforeNew, afterOld, afterNew int
	var wrong []string
	// When the flow switched, as the links saw it (evidence, relative to the change).
	var lastOld, firstNew time.Duration = -1, -1
	for _, x := range seen {
		d := x.at.Sub(changing)
		if x.link == oldLink && d > lastOld {
			lastOld = d
		}
		if x.link == newLink && d >= 0 && (firstNew < 0 || d < firstNew) {
			firstNew = d
		}
	}
	for _, x := range seen {
		switch {
		case seenBefore(x, changing):
			if x.link == oldLink {
				beforeOld++
			} else {
				beforeNew++
				wrong = append(wrong, "before: "+describe(x))
			}
		case seenAfter(x, changed):
			if x.link == newLink {
				afterNew++
			} else {
				afterOld++
				wrong = append(wrong, describe(x))
			}
		}
	}
	var before error
	switch {
	case beforeOld == 0:
		before = fmt.Errorf("no message seen on %s before the change (%d captured in all; %s)", oldLink, len(seen), sess.Seen(links[0].pt.Member, links[0].pt.Interface, 5))
	case beforeNew > 0:
		before = fmt.Errorf("%d messages seen on %s before the change: %s", beforeNew, newLink, strings.Join(head(wrong, 5), "; "))
	}
	s.Check(fmt.Sprintf("before the route change the flow's messages leave %s by %s (%d packets), none by %s", n1.Name, oldLink, beforeOld, newLink),
		"captures at the far ends of both links: TCP to a backend carrying a stream message", before)
	var after error
	switch {
	case afterOld > 0:
		after = fmt.Errorf("%d packets more than %v after the change still left by %s (stale forwarding): %s",
			afterOld, deadline, oldLink, strings.Join(head(wrong, 5), "; "))
	case afterNew == 0:
		after = fmt.Errorf("no message seen on %s more than %v after the change", newLink, deadline)
	}
	when := func(d time.Duration) string {
		if d < 0 {
			return "none after the change"
		}
		return d.Round(time.Millisecond).String() + " after the change"
	}
	s.Check(fmt.Sprintf("from %v after the route change on, the flow's messages leave by %s (%d packets), none by %s (last by %s: %s; first by %s: %s)",
		deadline, newLink, afterNew, oldLink, oldLink, when(lastOld), newLink, when(firstNew)),
		"captures at the far ends of both links: capture times of the stream's messages against the change", after)

	if e.Neighbour {
		var macErrs []error
		fake, real := 0, 0
		for _, x := range seen {
			switch {
			case seenAfter(x, macChanged) && seenBefore(x, restoring):
				if x.link != newLink || x.dstMAC != fibFakeMAC.String() {
					macErrs = append(macErrs, fmt.Errorf("while the neighbour is %s: %s", fibFakeMAC, describe(x)))
				} else {
					fake++
				}
			case seenAfter(x, macRestored):
				if x.link != newLink || x.dstMAC != hop2.MAC.String() {
					macErrs = append(macErrs, fmt.Errorf("after the neighbour is %s again: %s", hop2.MAC, describe(x)))
				} else {
					real++
				}
			}
		}
		if fake == 0 {
			macErrs = append(macErrs, fmt.Errorf("no message seen with %s while the neighbour said so", fibFakeMAC))
		}
		if real == 0 {
			macErrs = append(macErrs, fmt.Errorf("no message seen with %s after the neighbour was restored", hop2.MAC))
		}
		s.Check(fmt.Sprintf("the flow follows the next hop's neighbour entry within %v: to %s while it says so (%d), to %s again after (%d)", deadline, fibFakeMAC, fake, hop2.MAC, real),
			newLink+" capture: destination MAC of the stream's messages against the capture times",
			errors.Join(append(neighErrs, head(macErrs, 5)...)...))
	}
	if streamErr == nil && sent < 200 {
		streamErr = fmt.Errorf("only %d messages sent", sent)
	}
	s.Check(fmt.Sprintf("the connection %s -> %s survives: every one of %d messages echoed back in order", w.Client, dst, sent),
		string(w.Client)+"'s socket: each message read back before the next is sent", streamErr)
	return nil
}

func head[T any](s []T, n int) []T {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	"podpath/datapath/agent"
	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

// Masquerading (issue 11): pods' traffic to a server outside the cluster, seen on the
// pod's eth0, on its node's uplink and at the server; which mode did it (nftables
// counters, the agent's BPF counters); many flows through one node address; a range
// too small for its flows.

func init() {
	scenarios.RegisterStep(scenarios.StepDef[masqEgressWith, masqEgressExpect]{
		Name: "masquerade-egress",
		Summary: "a pod talks to a server outside the cluster over TCP, UDP and ICMP echo: the node's uplink shows the source the spec says " +
			"(the node's IP and a port of the range when masqueraded, the pod's own otherwise), the server's socket sees it, the pod gets replies to its own tuple, " +
			"and a closed UDP port's ICMP port unreachable reaches the pod's socket quoting its own tuple with valid checksums",
		Agents:  true,
		With:    masqEgressWith{Protocols: []probe.Protocol{probe.TCP, probe.UDP, probe.ICMP}, Port: 8080},
		Expect:  masqEgressExpect{Masqueraded: true},
		Run:     runMasqEgress,
		Timeout: time.Minute,
	})
	scenarios.RegisterStep(scenarios.StepDef[masqModeWith, masqModeExpect]{
		Name: "masquerade-mode",
		Summary: "which masquerading ran on a node: the nftables masquerade counter of the legacy path (table ip " + agent.MasqTable +
			") counts or stays 0, the agent's BPF masquerading counters count or are absent",
		Agents:  true,
		Run:     runMasqMode,
		Timeout: 30 * time.Second,
	})
	scenarios.RegisterStep(scenarios.StepDef[masqFlowsWith, masqRangeExpect]{
		Name: "masquerade-flows",
		Summary: "many UDP flows from pods of one node to one server port: every flow is answered, and the server sees as many distinct " +
			"translated tuples (node IP, port of the range) as there were flows: none collided",
		Agents:  true,
		With:    masqFlowsWith{Flows: 2000, Port: 8081},
		Run:     runMasqFlows,
		Timeout: 2 * time.Minute,
	})
	scenarios.RegisterStep(scenarios.StepDef[masqExhaustWith, masqExhaustExpect]{
		Name: "masquerade-exhaustion",
		Summary: "more new UDP flows than the masquerade range has ports: as many are answered as the range holds, the rest are dropped " +
			"at to-netdev with DROP_MASQ_NO_PORT (trace) and counted in podpath-agent status",
		Agents:  true,
		With:    masqExhaustWith{Flows: 10, Port: 8082},
		Run:     runMasqExhaustion,
		Timeout: time.Minute,
	})
	scenarios.RegisterStep(scenarios.StepDef[ipMasqAgentWith, none]{
		Name: "ip-masq-agent",
		Summary: "(an action) write the ip-masq-agent config (nonMasqueradeCIDRs, masqLinkLocal) where the stage's ip-masq-agent-config-path " +
			"points (a relative path: beside the cilium-config file) and restart the agents so they read it",
		Agents:  true,
		Run:     runIPMasqAgent,
		Timeout: time.Minute,
	})
}

type masqEgressWith struct {
	From      scenarios.PodRef    `json:"from" required:"true" doc:"the pod that talks"`
	To        scenarios.MemberRef `json:"to" required:"true" doc:"the server outside the cluster (a client of the topology)"`
	Protocols []probe.Protocol    `json:"protocols" doc:"tcp, udp, icmp"`
	Port      uint16              `json:"port" range:"1..65535" doc:"the server's TCP/UDP port"`
	Label     string              `json:"label" doc:"prefix of the check names"`
}

type masqEgressExpect struct {
	Masqueraded bool `json:"masqueraded" doc:"true: the node's IP (and a port of the range) on the uplink; false: the pod's own address"`
	PortMin     int  `json:"portMin" range:"0..65535" doc:"the masquerade range's first port (0: the range is not checked)"`
	PortMax     int  `json:"portMax" range:"0..65535" doc:"its last port"`
}

// masqExchange is what one exchange showed: the pod's own tuple, what the server's
// socket saw as the peer (TCP/UDP), and the error.
type masqExchange struct {
	local netip.AddrPort
	seen  string
	err   error
}

// peerServer serves port on member: TCP and UDP answers carry the peer address the
// server's socket sees (whoami for addresses).
func peerServer(t topology.Cluster, proto probe.Protocol, member string, port uint16, record func(string)) (interface{ Close() error }, error) {
	return probe.StartServer(t, proto, member, port,
		func(c net.Conn) {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 64)
			if _, err := c.Read(buf); err != nil {
				return
			}
			if record != nil {
				record(c.RemoteAddr().String())
			}
			_, _ = c.Write([]byte(c.RemoteAddr().String()))
		},
		func(b []byte, from net.Addr) []byte {
			if record != nil {
				record(from.String())
			}
			return []byte(from.String())
		})
}

// askPeer dials dst from member over proto, sends a line and returns the server's
// answer (the peer address it saw) and the local address of the socket.
func askPeer(ctx context.Context, t topology.Cluster, member string, proto probe.Protocol, dst netip.AddrPort) masqExchange {
	var x masqExchange
	x.err = t.Do(member, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, string(proto)+"4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		x.local, _ = netip.ParseAddrPort(c.LocalAddr().String())
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte("who am i\n")); err != nil {
			return err
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("%s %s -> %s: no answer: %w", proto, member, dst, err)
		}
		x.seen = string(buf[:n])
		return nil
	})
	return x
}

// udpRefused sends one datagram from member to dst and wants ECONNREFUSED on a UDP
// socket connected to dst: the ICMP port unreachable came back and quotes the socket's
// own tuple (a quote left translated matches no socket, and the read times out). The
// datagram leaves from a raw socket with its UDP checksum complete, as
// service-icmp-error sends (a UDP socket's datagram crosses veths with only the
// pseudo-header sum, which no translation of a quote can make whole again), so the
// quoted checksum is judged too.
func udpRefused(t topology.Cluster, member string, src netip.Addr, dst netip.AddrPort) error {
	return t.Do(member, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
			return fmt.Errorf("setsockopt: %w", err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
			return fmt.Errorf("connect %s: %w", dst, err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fmt.Errorf("getsockname: %w", err)
		}
		local := netip.AddrPortFrom(src, uint16(sa.(*unix.SockaddrInet4).Port))
		raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(raw)
		if err := unix.Sendto(raw, udpDatagram(local, dst, []byte("anyone?")), 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
			return fmt.Errorf("send to %s: %w", dst, err)
		}
		_, err = unix.Read(fd, make([]byte, 64))
		if errors.Is(err, unix.ECONNREFUSED) {
			return nil
		}
		return fmt.Errorf("udp %s -> %s (closed port): the read returned %v, want ECONNREFUSED (the ICMP port unreachable quoting %s)",
			local, dst, err, local)
	})
}

// icmpErrorToPodErr reads the ICMP errors from server on the pod's eth0: at least one,
// each to the pod's own address with valid outer IPv4 and ICMP checksums, quoting the
// pod's own datagram (source the pod, destination server:port) with a valid quoted
// IPv4 checksum and, when the datagram is quoted whole, a valid UDP checksum (RFC 5508
// 4.2: the translation covers the quote's checksums too).
func icmpErrorToPodErr(session *capture.Session, pod topology.Pod, server netip.Addr, port uint16) error {
	var n int
	for _, pk := range session.Packets(pod.Name, "eth0", capture.IPv4Flow(server.AsSlice(), nil, layers.IPProtocolICMPv4)) {
		outer, ok := parseIPv4Frame(pk.Data)
		if !ok || len(outer.l4) < 8+20 || outer.l4[0] != 3 {
			continue
		}
		n++
		q, ok := parseIPv4(outer.l4[8:])
		switch {
		case outer.dst != pod.IP:
			return fmt.Errorf("ICMP error to %s, want the pod's %s: %s", outer.dst, pod.IP, pk.Summary())
		case outer.headerChecksumErr() != nil:
			return outer.headerChecksumErr()
		case fold(onesSum(0, outer.l4)) != 0xffff:
			return fmt.Errorf("ICMP checksum of the error to %s is wrong: %s", outer.dst, pk.Summary())
		case !ok:
			return fmt.Errorf("the error quotes no IPv4 header: %s", pk.Summary())
		case q.headerChecksumErr() != nil:
			return fmt.Errorf("quoted header: %w", q.headerChecksumErr())
		}
		qs, qd := q.ports()
		if q.src != pod.IP || q.dst != server || qd != port {
			return fmt.Errorf("the error quotes %s:%d -> %s:%d, want the pod's own %s:(port) -> %s:%d", q.src, qs, q.dst, qd, pod.IP, server, port)
		}
		if err := q.l4ChecksumErr(); err != nil {
			return fmt.Errorf("quoted datagram: %w", err)
		}
	}
	if n == 0 {
		return fmt.Errorf("no ICMP destination unreachable from %s reached %s/eth0", server, pod.Name)
	}
	return nil
}

// withSeen adds to err what a capture point saw of the filter's packets.
func withSeen(err error, session *capture.Session, member, iface string, f capture.Filter) error {
	if err == nil {
		return nil
	}
	var b strings.Builder
	for _, p := range session.Packets(member, iface, f) {
		fmt.Fprintf(&b, "\n  %s", p.Summary())
	}
	if b.Len() == 0 {
		b.WriteString(" none")
	}
	return fmt.Errorf("%w; seen on %s/%s:%s", err, member, iface, b.String())
}

func runMasqEgress(ctx context.Context, s *scenarios.Stage, w masqEgressWith, e masqEgressExpect) error {
	t := s.T
	pod, err := t.Pod(string(w.From))
	if err != nil {
		return err
	}
	node, err := t.Node(pod.Node)
	if err != nil {
		return err
	}
	server := string(w.To)
	sm, err := t.Member(server)
	if err != nil {
		return err
	}
	sifs, err := t.Interfaces(server)
	if err != nil || len(sifs) == 0 {
		return fmt.Errorf("server %s: no interface (%v)", server, err)
	}
	serverIP := sifs[0].Address.Addr()
	pm, _ := t.Member(pod.Name)
	nm, _ := t.Member(node.Name)
	uplink := internalIface(node).Name
	dir := strings.NewReplacer(" ", "-", ":", "", "/", "-").Replace(strings.ToLower(s.Label(w.Label)))
	session, err := capture.Start(filepath.Join(s.Artifacts, "masquerade-"+dir+"-"+pod.Name+"-"+server),
		capture.Point{Member: pod.Name, Interface: "eth0", NsPath: pm.NsPath},
		capture.Point{Member: node.Name, Interface: uplink, NsPath: nm.NsPath},
		capture.Point{Member: server, Interface: sifs[0].Name, NsPath: sm.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	want := pod.IP
	if e.Masqueraded {
		want = node.InternalIP
	}
	prefix := s.Label(w.Label)
	if prefix != "" {
		prefix += ": "
	}
	what := "keeps the pod's address " + pod.IP.String()
	if e.Masqueraded {
		what = fmt.Sprintf("is %s's IP %s", node.Name, node.InternalIP)
		if e.PortMin > 0 {
			what += fmt.Sprintf(" and a port in [%d, %d]", e.PortMin, e.PortMax)
		}
	}
	inRange := func(p uint16) bool {
		return !e.Masqueraded || e.PortMin == 0 || (int(p) >= e.PortMin && int(p) <= e.PortMax)
	}
	for _, proto := range w.Protocols {
		name := fmt.Sprintf("%s%s %s -> %s", prefix, proto, pod.Name, server)
		x, err := worldExchange(ctx, t, pod.Name, server, netip.AddrPortFrom(serverIP, w.Port), proto)
		if err != nil {
			return err
		}
		if proto == probe.UDP {
			// The port is closed now: the server's port unreachable comes back to
			// the node's address and must be translated back, quote included.
			refused := udpRefused(t, pod.Name, pod.IP, netip.AddrPortFrom(serverIP, w.Port))
			time.Sleep(100 * time.Millisecond)
			s.Check(fmt.Sprintf("%sudp %s -> %s: a closed port's ICMP port unreachable reaches the pod's socket", prefix, pod.Name, server),
				fmt.Sprintf("the error on %s's connected UDP socket (the kernel matches the error's quoted tuple to the socket); "+
					"ICMP from %s on %s/eth0 (pcap %s)", pod.Name, server, pod.Name, session.PcapPath(pod.Name, "eth0")),
				withSeen(errors.Join(refused, icmpErrorToPodErr(session, pod, serverIP, w.Port)),
					session, pod.Name, "eth0", capture.IPv4Flow(serverIP.AsSlice(), nil, layers.IPProtocolICMPv4)))
		}
		time.Sleep(100 * time.Millisecond) // the last replies into the captures
		flow := capture.IPv4Flow(nil, nil, layerProto(proto))
		s.Check(name+": the replies reach the pod", fmt.Sprintf("the exchange from %s's socket (pcaps %s)", pod.Name, session.PcapPath(pod.Name, "eth0")), x.err)

		// The node's uplink: what leaves towards the server.
		var uerr error
		out := session.Packets(node.Name, uplink, capture.And(flow, capture.IPv4Flow(nil, serverIP.AsSlice(), layerProto(proto))))
		if len(out) == 0 {
			uerr = fmt.Errorf("no %s packet to %s on %s/%s; seen there:\n%s", proto, serverIP, node.Name, uplink, session.Seen(node.Name, uplink, 10))
		}
		for _, p := range out {
			src, sport := l4Source(p)
			if src != want || (proto != probe.ICMP && !inRange(sport)) || (proto == probe.ICMP && !inRange(sport)) {
				uerr = fmt.Errorf("leaving %s/%s from %s port/id %d, want the source %s%s: %s", node.Name, uplink, src, sport, want,
					rangeText(e), p.Summary())
				break
			}
		}
		s.Check(fmt.Sprintf("%s: on %s's uplink the source %s", name, node.Name, what),
			fmt.Sprintf("%s/%s capture: IPv4 source and %s source port (echo id) of packets to %s (pcap %s)", node.Name, uplink, proto, serverIP,
				session.PcapPath(node.Name, uplink)), uerr)

		// The server: its socket's view (TCP/UDP), its capture (ICMP).
		serr := worldServerSaw(session, server, sifs[0].Name, serverIP, proto, x, want, func(ap netip.AddrPort) error {
			switch {
			case ap.Addr() != want || !inRange(ap.Port()):
				return fmt.Errorf("the server's socket saw %s, want %s%s", ap, want, rangeText(e))
			case !e.Masqueraded && ap != x.local:
				return fmt.Errorf("the server's socket saw %s, want the pod's own %s", ap, x.local)
			}
			return nil
		})
		s.Check(fmt.Sprintf("%s: the server sees %s", name, want), fmt.Sprintf("%s: the peer address of its socket, or its capture (pcap %s)",
			server, session.PcapPath(server, sifs[0].Name)), serr)

		// The pod: replies come back to its own tuple.
		s.Check(name+": the pod sees its own tuple in the replies", fmt.Sprintf("%s/eth0 capture: requests out, replies in", pod.Name),
			ownTuple(session, pod, serverIP, proto, x.local))
	}
	return session.Stop()
}

// worldServerSaw checks what a server outside the cluster saw of one exchange x: for
// TCP and UDP the peer address its socket reported, judged by judge (the address, and
// the port where it matters); for ICMP that every echo request its capture on serverIf
// holds comes from want (sockets of ping show no peer).
func worldServerSaw(session *capture.Session, server, serverIf string, serverIP netip.Addr, proto probe.Protocol, x masqExchange,
	want netip.Addr, judge func(netip.AddrPort) error) error {
	switch proto {
	case probe.TCP, probe.UDP:
		ap, err := netip.ParseAddrPort(strings.TrimSpace(x.seen))
		switch {
		case x.err != nil:
			return fmt.Errorf("no answer from the server: %v", x.err)
		case err != nil:
			return fmt.Errorf("server answered %q, not an address", x.seen)
		}
		return judge(ap)
	case probe.ICMP:
		in := session.Packets(server, serverIf, capture.ICMPEcho(nil, serverIP.AsSlice()))
		if len(in) == 0 {
			return fmt.Errorf("no echo request reached %s", server)
		}
		for _, p := range in {
			if src, _ := l4Source(p); src != want {
				return fmt.Errorf("%s received an echo request from %s, want %s: %s", server, src, want, p.Summary())
			}
		}
	}
	return nil
}

// worldExchange is one exchange of pod with a server outside the cluster: for TCP and
// UDP a peer server on dst's port for the time of one askPeer, for ICMP two pings
// (their sockets show no peer: the captures judge them).
func worldExchange(ctx context.Context, t topology.Cluster, pod, server string, dst netip.AddrPort, proto probe.Protocol) (masqExchange, error) {
	var x masqExchange
	switch proto {
	case probe.TCP, probe.UDP:
		srv, err := peerServer(t, proto, server, dst.Port(), nil)
		if err != nil {
			return x, err
		}
		x = askPeer(ctx, t, pod, proto, dst)
		srv.Close()
	case probe.ICMP:
		out, err := probe.Exec(ctx, t, 3*time.Second, pod, "ping", "-c", "2", "-i", "0.2", "-W", "2", dst.Addr().String())
		if err != nil {
			x.err = fmt.Errorf("ping: %w: %s", err, out)
		}
	}
	return x, nil
}

// udpWorld is the start of a step that sends a pod's UDP to a server outside the
// cluster and then reads a node's trace records for its drops.
type udpWorld struct {
	pod      topology.Pod
	server   string
	serverIP netip.Addr
	srv      interface{ Close() error }
	traces   *trace.Collector
}

// startUDPWorld starts a UDP peer server on port of to and opens node's trace records
// (the pod's node when node is ""), reset so only the step's own packets are in them.
func startUDPWorld(s *scenarios.Stage, from scenarios.PodRef, to scenarios.MemberRef, port uint16, node string) (*udpWorld, error) {
	t := s.T
	pod, err := t.Pod(string(from))
	if err != nil {
		return nil, err
	}
	u := &udpWorld{pod: pod, server: string(to)}
	sifs, err := t.Interfaces(u.server)
	if err != nil || len(sifs) == 0 {
		return nil, fmt.Errorf("server %s: no interface (%v)", u.server, err)
	}
	u.serverIP = sifs[0].Address.Addr()
	if u.srv, err = peerServer(t, probe.UDP, u.server, port, nil); err != nil {
		return nil, err
	}
	if node == "" {
		node = pod.Node
	}
	if u.traces, err = s.OpenTraces(t, node); err == nil {
		if err = u.traces.Reset(); err != nil {
			u.traces.Close()
		}
	}
	if err != nil {
		u.srv.Close()
		return nil, err
	}
	return u, nil
}

// Close stops the server and closes the trace records.
func (u *udpWorld) Close() {
	u.traces.Close()
	u.srv.Close()
}

func rangeText(e masqEgressExpect) string {
	if e.Masqueraded && e.PortMin > 0 {
		return fmt.Sprintf(" with a port in [%d, %d]", e.PortMin, e.PortMax)
	}
	return ""
}

func layerProto(p probe.Protocol) layers.IPProtocol {
	switch p {
	case probe.TCP:
		return layers.IPProtocolTCP
	case probe.UDP:
		return layers.IPProtocolUDP
	}
	return layers.IPProtocolICMPv4
}

// l4Source is a packet's IPv4 source and TCP/UDP source port, or ICMP echo
// identifier; of the inner packet when it is encapsulated (the pod's own packet in a
// tunnel).
func l4Source(p capture.Packet) (netip.Addr, uint16) {
	var src netip.Addr
	var port uint16
	for _, l := range p.Decode().Layers() {
		switch l := l.(type) {
		case *layers.IPv4:
			src, _ = netip.AddrFromSlice(l.SrcIP.To4())
			port = 0
		case *layers.TCP:
			port = uint16(l.SrcPort)
		case *layers.UDP:
			port = uint16(l.SrcPort)
		case *layers.ICMPv4:
			port = l.Id
		}
	}
	return src, port
}

// ownTuple checks on the pod's eth0 that every reply from the server is addressed to
// the pod's own address and to a port (echo identifier) the pod sent from.
func ownTuple(session *capture.Session, pod topology.Pod, server netip.Addr, proto probe.Protocol, local netip.AddrPort) error {
	pkts := session.Packets(pod.Name, "eth0", capture.IPv4Flow(nil, nil, layerProto(proto)))
	sent := map[uint16]bool{}
	// The port the pod's socket sent from (TCP/UDP) is known without the capture: an
	// AF_PACKET capture under load once missed pod2's only request while its reply was
	// captured, which failed this check on a correct datapath.
	if local.IsValid() && local.Addr() == pod.IP {
		sent[local.Port()] = true
	}
	var replies int
	for _, p := range pkts {
		d := p.Decode()
		ip := d.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		src, _ := netip.AddrFromSlice(ip.SrcIP.To4())
		dst, _ := netip.AddrFromSlice(ip.DstIP.To4())
		var sport, dport uint16
		switch l := d.TransportLayer().(type) {
		case *layers.TCP:
			sport, dport = uint16(l.SrcPort), uint16(l.DstPort)
		case *layers.UDP:
			sport, dport = uint16(l.SrcPort), uint16(l.DstPort)
		default:
			if ic, ok := d.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
				if t := ic.TypeCode.Type(); t != layers.ICMPv4TypeEchoRequest && t != layers.ICMPv4TypeEchoReply {
					continue // an error (the closed-port check's), not an echo of this exchange
				}
				sport, dport = ic.Id, ic.Id
			}
		}
		switch {
		case src == pod.IP && dst == server:
			sent[sport] = true
		case src == server:
			replies++
			if dst != pod.IP || !sent[dport] {
				return fmt.Errorf("a reply to %s port/id %d, want %s and a port the pod sent from (%v): %s", dst, dport, pod.IP, masqKeys(sent), p.Summary())
			}
		}
	}
	if replies == 0 {
		return fmt.Errorf("no reply from %s on %s/eth0", server, pod.Name)
	}
	return nil
}

func masqKeys(m map[uint16]bool) []uint16 {
	var out []uint16
	for k := range m {
		out = append(out, k)
	}
	return out
}

type masqModeWith struct {
	Node scenarios.NodeRef `json:"node" required:"true" doc:"the node"`
}

type masqModeExpect struct {
	Mode string `json:"mode" required:"true" oneOf:"BPF,IPTables" doc:"the masquerading that ran: BPF (nftables counter 0, BPF counters count) or IPTables (the nftables counter counts)"`
}

var nftCounterRE = regexp.MustCompile(`counter packets (\d+) bytes \d+ masquerade`)

// masqNftPackets reads the legacy masquerade rule's counter in node; a missing table
// is 0 packets (and says so).
func masqNftPackets(ctx context.Context, t topology.Cluster, node string) (int, string, error) {
	out, err := probe.Exec(ctx, t, 5*time.Second, node, "nft", "list", "table", "ip", agent.MasqTable)
	if err != nil {
		if strings.Contains(string(out), "No such file") {
			return 0, "no table ip " + agent.MasqTable, nil
		}
		return 0, string(out), fmt.Errorf("nft list table ip %s in %s: %w: %s", agent.MasqTable, node, err, out)
	}
	m := nftCounterRE.FindStringSubmatch(string(out))
	if m == nil {
		return 0, string(out), fmt.Errorf("no masquerade counter in table ip %s:\n%s", agent.MasqTable, out)
	}
	n, _ := strconv.Atoi(m[1])
	return n, strings.TrimSpace(string(out)), nil
}

func runMasqMode(ctx context.Context, s *scenarios.Stage, w masqModeWith, e masqModeExpect) error {
	node := string(w.Node)
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	n, table, nerr := masqNftPackets(ctx, s.T, node)
	st, serr := agents.Client(node).Status(ctx)
	if serr != nil {
		return serr
	}
	var bpfFlows uint64
	if st.Masquerade != nil {
		bpfFlows = st.Masquerade.NewFlows
	}
	switch e.Mode {
	case "BPF":
		if nerr == nil && n != 0 {
			nerr = fmt.Errorf("the nftables masquerade rule counted %d packets: the legacy path ran\n%s", n, table)
		}
		s.Check(fmt.Sprintf("%s: nftables masqueraded nothing (counter 0)", node), fmt.Sprintf("`nft list table ip %s` in %s", agent.MasqTable, node), nerr)
		var berr error
		if st.Masquerade == nil || bpfFlows == 0 {
			berr = fmt.Errorf("the agent reports no BPF masquerading flow (status masquerade %+v)", st.Masquerade)
		}
		s.Check(fmt.Sprintf("%s: BPF masquerading counted the flows", node), node+"'s agent status (masquerade counters)", berr)
	case "IPTables":
		if nerr == nil && n == 0 {
			nerr = fmt.Errorf("the nftables masquerade rule counted 0 packets:\n%s", table)
		}
		s.Check(fmt.Sprintf("%s: the nftables masquerade rule counted the flows", node), fmt.Sprintf("`nft list table ip %s` in %s", agent.MasqTable, node), nerr)
		var berr error
		if st.Masquerade != nil {
			berr = fmt.Errorf("the agent reports BPF masquerading counters %+v: BPF masquerading is on", *st.Masquerade)
		}
		s.Check(fmt.Sprintf("%s: no BPF masquerading", node), node+"'s agent status (masquerade counters absent)", berr)
	}
	return nil
}

type masqFlowsWith struct {
	From  []scenarios.PodRef  `json:"from" required:"true" doc:"pods of one node"`
	To    scenarios.MemberRef `json:"to" required:"true" doc:"the server outside the cluster"`
	Flows int                 `json:"flows" range:"1..20000" doc:"UDP flows per pod, each from its own socket"`
	Port  uint16              `json:"port" range:"1..65535" doc:"the server's UDP port"`
}

type masqRangeExpect struct {
	PortMin int `json:"portMin" required:"true" range:"1..65535" doc:"the masquerade range's first port"`
	PortMax int `json:"portMax" required:"true" range:"1..65535" doc:"its last port"`
}

// udpFlows opens n UDP sockets in member, sends one datagram from each to dst and
// reads each answer (the peer address the server saw): answers[i] is "" when none came.
func udpFlows(ctx context.Context, t topology.Cluster, member string, dst netip.AddrPort, n int, wait time.Duration) ([]string, error) {
	answers := make([]string, n)
	var conns []*net.UDPConn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	err := t.Do(member, func() error {
		for i := 0; i < n; i++ {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return fmt.Errorf("udp socket %d in %s: %w", i, member, err)
			}
			conns = append(conns, c)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for i, c := range conns {
		if _, err := c.Write([]byte("flow " + strconv.Itoa(i))); err != nil {
			return nil, fmt.Errorf("send flow %d from %s: %w", i, member, err)
		}
		if i%50 == 49 {
			time.Sleep(15 * time.Millisecond) // the server's socket buffer drains
		}
	}
	deadline := time.Now().Add(wait)
	buf := make([]byte, 64)
	for i, c := range conns {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		_ = c.SetReadDeadline(deadline)
		if k, err := c.Read(buf); err == nil {
			answers[i] = string(buf[:k])
		}
	}
	return answers, nil
}

func runMasqFlows(ctx context.Context, s *scenarios.Stage, w masqFlowsWith, e masqRangeExpect) error {
	t := s.T
	server := string(w.To)
	sifs, err := t.Interfaces(server)
	if err != nil || len(sifs) == 0 {
		return fmt.Errorf("server %s: no interface (%v)", server, err)
	}
	dst := netip.AddrPortFrom(sifs[0].Address.Addr(), w.Port)
	var mu sync.Mutex
	seen := map[string]int{}
	srv, err := peerServer(t, probe.UDP, server, w.Port, func(a string) { mu.Lock(); seen[a]++; mu.Unlock() })
	if err != nil {
		return err
	}
	defer srv.Close()
	var nodeIP netip.Addr
	var pods []string
	total, answered := 0, 0
	distinct := map[string]bool{}
	var bad []string
	for _, p := range w.From {
		pod, err := t.Pod(string(p))
		if err != nil {
			return err
		}
		n, _ := t.Node(pod.Node)
		nodeIP = n.InternalIP
		pods = append(pods, pod.Name)
		s.Progress("%d UDP flows %s -> %s", w.Flows, pod.Name, dst)
		ans, err := udpFlows(ctx, t, pod.Name, dst, w.Flows, 5*time.Second)
		if err != nil {
			return err
		}
		total += w.Flows
		for _, a := range ans {
			if a == "" {
				continue
			}
			answered++
			distinct[a] = true
			ap, perr := netip.ParseAddrPort(a)
			if perr != nil || ap.Addr() != n.InternalIP || int(ap.Port()) < e.PortMin || int(ap.Port()) > e.PortMax {
				bad = append(bad, a)
			}
		}
	}
	what := fmt.Sprintf("%d UDP flows from %s to %s", total, strings.Join(pods, ", "), dst)
	var aerr error
	if answered != total {
		aerr = fmt.Errorf("%d of %d flows got no answer", total-answered, total)
	}
	s.Check(what+": every flow is answered", "the answers read on each flow's own socket", aerr)
	var derr error
	mu.Lock()
	onServer := len(seen)
	mu.Unlock()
	switch {
	case len(distinct) != total:
		derr = fmt.Errorf("%d distinct translated tuples for %d flows: %d collided or went unanswered", len(distinct), total, total-len(distinct))
	case onServer != total:
		derr = fmt.Errorf("the server saw %d distinct peers for %d flows", onServer, total)
	}
	s.Check(what+": as many distinct translated tuples as flows (no collision)",
		"the peer addresses the server's socket saw, and the answers each flow got", derr)
	var rerr error
	if answered == 0 {
		rerr = errors.New("no flow was answered: no translated tuple to look at")
	}
	if len(bad) > 0 {
		rerr = fmt.Errorf("%d translated tuples not %s with a port in [%d, %d], e.g. %s", len(bad), nodeIP, e.PortMin, e.PortMax, bad[0])
	}
	s.Check(fmt.Sprintf("%s: every translated tuple is %s with a port in [%d, %d]", what, nodeIP, e.PortMin, e.PortMax),
		"the peer addresses the server's socket saw", rerr)
	return nil
}

type masqExhaustWith struct {
	From  scenarios.PodRef    `json:"from" required:"true" doc:"the pod"`
	To    scenarios.MemberRef `json:"to" required:"true" doc:"the server outside the cluster"`
	Flows int                 `json:"flows" range:"1..1000" doc:"new UDP flows, each from its own socket"`
	Port  uint16              `json:"port" range:"1..65535" doc:"the server's UDP port"`
}

type masqExhaustExpect struct {
	Answered int `json:"answered" required:"true" range:"0..65535" doc:"flows that get a port: the size of the configured range"`
}

func runMasqExhaustion(ctx context.Context, s *scenarios.Stage, w masqExhaustWith, e masqExhaustExpect) error {
	t := s.T
	u, err := startUDPWorld(s, w.From, w.To, w.Port, "")
	if err != nil {
		return err
	}
	defer u.Close()
	pod, traces := u.pod, u.traces
	dst := netip.AddrPortFrom(u.serverIP, w.Port)
	ans, err := udpFlows(ctx, t, pod.Name, dst, w.Flows, 2*time.Second)
	if err != nil {
		return err
	}
	answered := 0
	for _, a := range ans {
		if a != "" {
			answered++
		}
	}
	what := fmt.Sprintf("%d new UDP flows %s -> %s", w.Flows, pod.Name, dst)
	var aerr error
	if answered != e.Answered {
		aerr = fmt.Errorf("%d answered, want %d (the ports of the range)", answered, e.Answered)
	}
	s.Check(fmt.Sprintf("%s: %d answered (the range's ports)", what, e.Answered), "the answers read on each flow's own socket", aerr)
	if err := traces.Collect(); err != nil {
		return err
	}
	n := traces.Names()
	drops := traces.Find(pod.Node, func(r trace.Record) bool {
		return n.Verdict(r.Verdict) == "VERDICT_DROP" && n.DropReason(r.DropReason) == "DROP_MASQ_NO_PORT" && n.ObsPoint(r.ObsPoint) == "OBS_TO_NETDEV"
	})
	var derr error
	if want := w.Flows - e.Answered; len(drops) < want {
		derr = fmt.Errorf("%d DROP_MASQ_NO_PORT drops at OBS_TO_NETDEV, want at least %d; %s's records:\n%s", len(drops), want, pod.Node, traces.Dump(pod.Node))
	}
	s.Check(what+": the rest dropped at to-netdev with DROP_MASQ_NO_PORT", pod.Node+"'s trace records", derr)
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	st, err := agents.Client(pod.Node).Status(ctx)
	var cerr error
	switch {
	case err != nil:
		cerr = err
	case st.Masquerade == nil || st.Masquerade.NoPort < uint64(w.Flows-e.Answered):
		cerr = fmt.Errorf("status masquerade counters %+v: want at least %d without a free port", st.Masquerade, w.Flows-e.Answered)
	}
	s.Check(what+": podpath-agent status counts them (no free port)", pod.Node+"'s agent status (masquerade.noPort)", cerr)
	return nil
}

type ipMasqAgentWith struct {
	NonMasqueradeCIDRs []string `json:"nonMasqueradeCIDRs" required:"true" doc:"destinations never masqueraded"`
	MasqLinkLocal      bool     `json:"masqLinkLocal" doc:"masquerade 169.254.0.0/16 too"`
}

func runIPMasqAgent(ctx context.Context, s *scenarios.Stage, w ipMasqAgentWith, _ none) error {
	if s.Config == nil || !s.Config.EnableIPMasqAgent {
		return errors.New("ip-masq-agent: the stage's config does not set enable-ip-masq-agent: true")
	}
	for _, c := range w.NonMasqueradeCIDRs {
		if _, err := netip.ParsePrefix(c); err != nil {
			return fmt.Errorf("ip-masq-agent: nonMasqueradeCIDRs: %w", err)
		}
	}
	path := s.Config.IPMasqAgentConfigPath
	if !filepath.IsAbs(path) {
		path = filepath.Join(s.T.Dir(), path)
	} else if !strings.HasPrefix(path, s.T.Dir()) {
		return fmt.Errorf("ip-masq-agent: %s is outside the run's folder %s: give ip-masq-agent-config-path relative", path, s.T.Dir())
	}
	b, err := yaml.Marshal(map[string]any{"nonMasqueradeCIDRs": w.NonMasqueradeCIDRs, "masqLinkLocal": w.MasqLinkLocal})
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("ip-masq-agent: %w", err)
	}
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	s.Progress("ip-masq-agent config %s: nonMasqueradeCIDRs %v; restarting the agents", path, w.NonMasqueradeCIDRs)
	for _, n := range s.T.Nodes() {
		if err := agents.Restart(ctx, n.Name, "", false); err != nil {
			return err
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"time"

	"golang.org/x/sys/unix"

	"podpath/datapath/config"
)

// Per-peer tunnel MTU. Every node sizes the tunnel from its own NIC (route MTU = device
// MTU - overhead), but the underlay path to one peer may be narrower: a router between
// a jumbo-frame leg and a 1400-byte leg. An encapsulated DF packet that does not fit
// that path is answered by the router with ICMP frag-needed addressed to the node, not
// to the pod: the pod never learns, and its traffic vanishes (a PMTU black hole).
//
// So in tunnel mode the agent learns the underlay path MTU to each peer node with the
// kernel's own path-MTU discovery: a UDP socket with IP_MTU_DISCOVER=IP_PMTUDISC_DO,
// connected to the peer's node IP (port pmtuProbePort, where nobody answers), sends
// one DF datagram of the device MTU; a router that cannot forward it answers ICMP
// frag-needed, the kernel records the path MTU for that destination and the socket
// says so (SO_ERROR EMSGSIZE, IP_MTU the new value); the next, smaller, datagram
// reaches the peer, whose kernel answers ICMP port unreachable (SO_ERROR
// ECONNREFUSED): the size is confirmed. The agent then installs the peer's PodCIDR
// route with MTU = path MTU - overhead (the stack answers pods frag-needed with it
// and TCP picks its MSS from it) and puts that MTU into the peer's nodes map entry,
// so from-container hands a DF packet too big for that peer to the stack instead of
// encapsulating it.
//
// Probes go at node add and again every pmtuReprobe, and whenever the kernel's path
// MTU for a peer (IP_MTU of a connected socket, no traffic) differs from what the
// agent installed: when a frag-needed for another of the node's packets to the peer
// changed it, or when the kernel's learnt value expired (net.ipv4.route.mtu_expires).
// Geneve packets are written in BPF and have no socket to report a frag-needed to:
// a path that narrows later is found by the periodic probe.

const (
	// pmtuProbePort is the UDP port probes are sent to: traceroute's first port, on
	// which nothing listens, so the peer answers ICMP port unreachable.
	pmtuProbePort = 33434
	// pmtuWait bounds how long one probe waits for an answer (frag-needed or port
	// unreachable).
	pmtuWait = 250 * time.Millisecond
	// pmtuTries bounds the datagrams of one probe: each frag-needed lowers the size.
	pmtuTries = 6
	// pmtuDeadline bounds one probe altogether.
	pmtuDeadline = 2 * time.Second
	// pmtuCheck is how often the agent compares the kernel's path MTU per peer with
	// what it installed; pmtuReprobe how often it probes a peer anyway.
	pmtuCheck   = 2 * time.Second
	pmtuReprobe = 30 * time.Second
	// ipv4UDPHeaders is what a probe's IPv4 packet adds to its payload.
	ipv4UDPHeaders = 20 + 8
	// minPathMTU is the smallest path MTU accepted (IPv4's 576 less slack: the
	// kernel's net.ipv4.route.min_pmtu default is 552).
	minPathMTU = 552
)

// PeerMTU is what the agent knows about the underlay path to another node, as
// `podpath-agent status` shows it.
type PeerMTU struct {
	Peer   string     `json:"peer"`
	NodeIP netip.Addr `json:"nodeIP"`
	// PathMTU is the underlay path MTU to the peer (at most this node's device MTU).
	PathMTU int `json:"pathMTU"`
	// RouteMTU is PathMTU less the tunnel overhead: the PodCIDR route's MTU.
	RouteMTU int `json:"routeMTU"`
	// MapMTU is the nodes map entry's MTU: RouteMTU when it is below the node's
	// global tunnel MTU, else 0 (the global one applies).
	MapMTU  uint32    `json:"mapMTU"`
	Learned time.Time `json:"learned"`
	// How says how PathMTU was learnt (or why it fell back to the device MTU).
	How   string `json:"how"`
	Error string `json:"error,omitempty"`
}

// pmtuConn is a probe's socket, connected to one peer.
type pmtuConn interface {
	// Send sends one DF datagram whose IPv4 packet is size bytes long; EMSGSIZE
	// when size exceeds the kernel's path MTU for the peer.
	Send(size int) error
	// MTU is the kernel's path MTU for the peer (IP_MTU).
	MTU() (int, error)
	// Pending takes the socket's pending error (SO_ERROR): EMSGSIZE after a
	// frag-needed, ECONNREFUSED after the peer's port unreachable, nil for none.
	Pending() error
}

// probeResult is what one probe learnt.
type probeResult struct {
	PathMTU int
	How     string
	Sent    int // datagrams sent
}

// probePathMTU finds the path MTU to the peer behind c, starting at start (the
// device MTU): a datagram of the current size is sent, then the socket is polled
// until poll passes: a frag-needed (or the kernel's path MTU falling below the size)
// lowers the size and another datagram goes; the peer's port unreachable confirms
// the size; silence past wait leaves the size unconfirmed but kept (a router that
// drops without ICMP cannot be told from a lost datagram). At most tries datagrams,
// and never past ctx.
func probePathMTU(ctx context.Context, c pmtuConn, start int, wait time.Duration, tries int) (probeResult, error) {
	size := start
	res := probeResult{}
	how := ""
	if k, err := c.MTU(); err == nil && k > 0 && k < size {
		size, how = k, fmt.Sprintf("the kernel's path MTU %d", k)
	}
	for res.Sent < tries {
		if size < minPathMTU {
			return res, fmt.Errorf("probe path mtu: %d is below the minimum %d", size, minPathMTU)
		}
		if err := ctx.Err(); err != nil {
			return res, fmt.Errorf("probe path mtu: %d bytes: %w", size, err)
		}
		_ = c.Pending() // an answer to an earlier datagram is no answer to this one
		err := c.Send(size)
		res.Sent++
		switch {
		case errors.Is(err, unix.EMSGSIZE):
			k, merr := c.MTU()
			if merr != nil || k >= size {
				return res, fmt.Errorf("probe path mtu: send %d bytes: %w (kernel path mtu %d)", size, err, k)
			}
			size, how = k, fmt.Sprintf("the kernel's path MTU %d (local EMSGSIZE for %d bytes)", k, size)
			continue
		case errors.Is(err, unix.ECONNREFUSED):
			continue // an earlier answer surfaced on send: the datagram did not go
		case err != nil:
			return res, fmt.Errorf("probe path mtu: send %d bytes: %w", size, err)
		}
		answer, k := awaitAnswer(ctx, c, size, wait)
		switch answer {
		case answerFragNeeded:
			how = fmt.Sprintf("ICMP frag-needed (mtu %d) for a %d-byte DF probe", k, size)
			size = k
			continue
		case answerReached:
			if how == "" {
				how = "the device MTU"
			}
			res.PathMTU, res.How = size, fmt.Sprintf("%s; a %d-byte DF probe reached the peer (port unreachable)", how, size)
			return res, nil
		default:
			if how == "" {
				how = "the device MTU"
			}
			res.PathMTU, res.How = size, fmt.Sprintf("%s; no answer to a %d-byte DF probe within %v (unconfirmed)", how, size, wait)
			return res, nil
		}
	}
	return res, fmt.Errorf("probe path mtu: not stable after %d datagrams (last size %d)", res.Sent, size)
}

type probeAnswer int

const (
	answerNone probeAnswer = iota
	answerFragNeeded
	answerReached
)

// awaitAnswer polls c until the datagram of size bytes is answered or wait passes;
// for a frag-needed it returns the kernel's new path MTU.
func awaitAnswer(ctx context.Context, c pmtuConn, size int, wait time.Duration) (probeAnswer, int) {
	deadline := time.Now().Add(wait)
	for {
		err := c.Pending()
		k, merr := c.MTU()
		switch {
		case merr == nil && k > 0 && k < size:
			return answerFragNeeded, k
		case errors.Is(err, unix.ECONNREFUSED):
			return answerReached, size
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return answerNone, size
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// udpProbe is a pmtuConn on a real socket in the agent's (the node's) namespace.
type udpProbe struct{ fd int }

// dialProbe opens a UDP socket with IP_PMTUDISC_DO connected to peer:pmtuProbePort.
func dialProbe(peer netip.Addr) (*udpProbe, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("probe socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("probe socket: IP_MTU_DISCOVER: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: pmtuProbePort, Addr: peer.As4()}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("probe socket: connect %s:%d: %w", peer, pmtuProbePort, err)
	}
	return &udpProbe{fd: fd}, nil
}

func (u *udpProbe) Send(size int) error {
	if size < ipv4UDPHeaders {
		return unix.EINVAL
	}
	_, err := unix.Write(u.fd, make([]byte, size-ipv4UDPHeaders))
	return err
}

func (u *udpProbe) MTU() (int, error) { return unix.GetsockoptInt(u.fd, unix.IPPROTO_IP, unix.IP_MTU) }

func (u *udpProbe) Pending() error {
	v, err := unix.GetsockoptInt(u.fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return unix.Errno(v)
	}
	return nil
}

func (u *udpProbe) Close() error { return unix.Close(u.fd) }

// kernelPathMTU is the kernel's path MTU to peer now (no traffic: a connected
// socket's IP_MTU).
func kernelPathMTU(peer netip.Addr) (int, error) {
	u, err := dialProbe(peer)
	if err != nil {
		return 0, err
	}
	defer u.Close()
	return u.MTU()
}

// learnPeerMTU probes the path to n and plans its MTUs: the path MTU (capped at
// the device MTU; the device MTU when the probe fails, with the error), the route
// MTU and the nodes map MTU.
func learnPeerMTU(n Node, m MTUs, now func() time.Time) PeerMTU {
	p := PeerMTU{Peer: n.Name, NodeIP: n.IP}
	ctx, cancel := context.WithTimeout(context.Background(), pmtuDeadline)
	defer cancel()
	var res probeResult
	u, err := dialProbe(n.IP)
	if err == nil {
		res, err = probePathMTU(ctx, u, m.Device, pmtuWait, pmtuTries)
		u.Close()
	}
	if err != nil {
		p.Error = err.Error()
		res = probeResult{PathMTU: m.Device, How: "the device MTU (the probe failed)"}
	}
	planPeerMTU(&p, res, m)
	p.Learned = now()
	return p
}

// planPeerMTU fills p's MTUs from a probe's result and the node's MTU plan.
func planPeerMTU(p *PeerMTU, res probeResult, m MTUs) {
	p.PathMTU, p.How = min(res.PathMTU, m.Device), res.How
	p.RouteMTU = p.PathMTU - m.Overhead
	p.MapMTU = 0
	if p.RouteMTU < m.tunnelMTU() {
		p.MapMTU = uint32(p.RouteMTU)
	}
}

// peerRouteMTU is the route MTU towards n: its learnt one, else the global one.
func (a *Agent) peerRouteMTU(n Node) int {
	if p, ok := a.peers[n.Name]; ok && p.NodeIP == n.IP {
		return p.RouteMTU
	}
	return a.dp.mtu.tunnelMTU()
}

// peerMapMTU is the nodes map MTU for n (0: the global tunnel MTU).
func (a *Agent) peerMapMTU(n Node) uint32 {
	if p, ok := a.peers[n.Name]; ok && p.NodeIP == n.IP {
		return p.MapMTU
	}
	return 0
}

// probesPeers says whether this agent learns per-peer MTUs: tunnel mode only.
func (a *Agent) probesPeers() bool {
	return a.dp != nil && a.cfg.RoutingMode == config.RoutingTunnel
}

// ensurePeerMTU learns n's path MTU if it is not known for n's current IP. The
// caller holds a.mu.
func (a *Agent) ensurePeerMTU(n Node) {
	if !a.probesPeers() || n.Name == a.opts.Node {
		return
	}
	if p, ok := a.peers[n.Name]; ok && p.NodeIP == n.IP {
		return
	}
	p := learnPeerMTU(n, a.dp.mtu, time.Now)
	a.peers[n.Name] = p
	a.opts.Log.Info("peer mtu", "peer", n.Name, "ip", n.IP, "pathMTU", p.PathMTU, "routeMTU", p.RouteMTU, "how", p.How, "err", p.Error)
}

// watchPeerMTUs keeps the per-peer MTUs current until ctx ends: every pmtuCheck it
// compares the kernel's path MTU per peer with the installed one and probes again
// when they differ, or when the last probe is older than pmtuReprobe; a changed
// result reprograms the peer (nodes map and route).
func (a *Agent) watchPeerMTUs(ctx context.Context) {
	if !a.probesPeers() {
		return
	}
	t := time.NewTicker(pmtuCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, n := range a.store.nodes() {
			if n.Name == a.opts.Node {
				continue
			}
			a.mu.Lock()
			old, known := a.peers[n.Name]
			m := a.dp.mtu
			a.mu.Unlock()
			if known && old.NodeIP == n.IP && time.Since(old.Learned) < pmtuReprobe {
				if k, err := kernelPathMTU(n.IP); err != nil || min(k, m.Device) == old.PathMTU {
					continue
				}
			}
			p := learnPeerMTU(n, m, time.Now)
			a.mu.Lock()
			cur, still := storedNode(a.store.nodes(), n.Name)
			if still && cur.IP == n.IP {
				a.peers[n.Name] = p
				if !known || p.RouteMTU != old.RouteMTU || p.MapMTU != old.MapMTU {
					a.opts.Log.Info("peer mtu changed", "peer", n.Name, "pathMTU", p.PathMTU, "was", old.PathMTU, "how", p.How)
					if err := a.reconcileNode(cur); err != nil {
						a.opts.Log.Warn("peer mtu", "peer", n.Name, "err", err)
					}
				}
			}
			a.mu.Unlock()
		}
	}
}

// peerList is the per-peer table for status, by peer name.
func (a *Agent) peerList() []PeerMTU {
	out := make([]PeerMTU, 0, len(a.peers))
	for _, p := range a.peers {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out
}

// storedNode finds the node called name in nodes.
func storedNode(nodes []Node, name string) (Node, bool) {
	for _, n := range nodes {
		if n.Name == name {
			return n, true
		}
	}
	return Node{}, false
}

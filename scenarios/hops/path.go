// SPDX-License-Identifier: Apache-2.0

package hops

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/internal/capture"
	"podpath/topology"
)

// DefaultTTL is what Linux puts in the packets a pod sends (net.ipv4.ip_default_ttl).
const DefaultTTL = 64

// Hop is one interface a packet crosses, with what a capture there must show.
type Hop struct {
	Member, Interface string
	// Outgoing is the direction the capture on that interface reports.
	Outgoing bool
	// TTL the IPv4 header carries there: one less after every routing member.
	TTL uint8
	// MAC is the interface's own address: the frame's source when it leaves, its
	// destination when it arrives. Nil on bridge ports, which forward frames unchanged.
	MAC net.HardwareAddr
}

func (h Hop) String() string {
	dir := "in"
	if h.Outgoing {
		dir = "out"
	}
	return fmt.Sprintf("%s/%s (%s, ttl %d)", h.Member, h.Interface, dir, h.TTL)
}

// Point is where to capture to see this hop.
func (h Hop) Point(t topology.Cluster) (capture.Point, error) {
	m, err := t.Member(h.Member)
	if err != nil {
		return capture.Point{}, err
	}
	return capture.Point{Member: h.Member, Interface: h.Interface, NsPath: m.NsPath}, nil
}

// PodPath returns every hop of an IPv4 packet from pod src to pod dst over unencapsulated
// routing (plain kernel routes or BPF native routing use the same wires), following the
// routes the harness plans. Where routes are ECMP the first next hop is taken.
func PodPath(t topology.Cluster, src, dst string) ([]Hop, error) {
	from, err := t.Pod(src)
	if err != nil {
		return nil, err
	}
	to, err := t.Pod(dst)
	if err != nil {
		return nil, err
	}
	// The wires are the same whoever installs the PodCIDR routes (harness or agent).
	spec := t.Spec().WithoutBGP() // BGP converges to the planned PodCIDR routes
	spec.PodRoutes = topology.PodRoutesAll
	plan, err := topology.PlanRoutes(spec)
	if err != nil {
		return nil, err
	}
	owners := addressOwners(t)

	ttl := uint8(DefaultTTL)
	hops := []Hop{{from.Name, "eth0", true, ttl, from.MAC}, {from.Node, from.HostVeth, false, ttl, from.HostMAC}}
	at := from.Node
	for range len(t.Members()) {
		ttl--
		if at == to.Node {
			return append(hops, Hop{at, to.HostVeth, true, ttl, to.HostMAC}, Hop{to.Name, "eth0", false, ttl, to.MAC}), nil
		}
		nh, err := nextHop(plan[at], to.IP)
		if err != nil {
			return nil, fmt.Errorf("path %s -> %s at %s: %w", src, dst, at, err)
		}
		out, err := Iface(t, at, nh.Dev)
		if err != nil {
			return nil, err
		}
		next, ok := owners[nh.Via]
		if !ok {
			return nil, fmt.Errorf("path %s -> %s at %s: next hop %s belongs to no member", src, dst, at, nh.Via)
		}
		in, err := Iface(t, next.member, next.iface)
		if err != nil {
			return nil, err
		}
		hops = append(hops,
			Hop{at, out.Name, true, ttl, out.MAC},
			Hop{out.Segment, out.Peer, false, ttl, nil},
			Hop{in.Segment, in.Peer, true, ttl, nil},
			Hop{next.member, in.Name, false, ttl, in.MAC})
		at = next.member
	}
	return nil, fmt.Errorf("path %s -> %s: routing loop", src, dst)
}

type owner struct{ member, iface string }

func addressOwners(t topology.Cluster) map[netip.Addr]owner {
	owners := map[netip.Addr]owner{}
	for _, m := range t.Members() {
		ifs, _ := t.Interfaces(m.Name)
		for _, i := range ifs {
			if i.Address.IsValid() {
				owners[i.Address.Addr()] = owner{m.Name, i.Name}
			}
		}
	}
	return owners
}

func nextHop(routes []topology.Route, dst netip.Addr) (topology.NextHop, error) {
	best := -1
	var hop topology.NextHop
	for _, r := range routes {
		if r.Dst.Contains(dst) && r.Dst.Bits() > best && len(r.NextHops) > 0 {
			best, hop = r.Dst.Bits(), r.NextHops[0]
		}
	}
	if best < 0 {
		return hop, fmt.Errorf("no route to %s", dst)
	}
	return hop, nil
}

func Iface(t topology.Cluster, member, name string) (topology.Interface, error) {
	ifs, err := t.Interfaces(member)
	if err != nil {
		return topology.Interface{}, err
	}
	for _, i := range ifs {
		if i.Name == name {
			return i, nil
		}
	}
	return topology.Interface{}, fmt.Errorf("member %s has no interface %s", member, name)
}

// PeerRedirected turns a path into the one BPF host routing takes: bpf_redirect_peer
// hands the packet from the destination node straight to the pod's eth0, so the
// destination host veth never transmits it. It returns the path and the skipped hop,
// where a capture must see nothing.
func PeerRedirected(hops []Hop) (path []Hop, bypassed Hop) {
	n := len(hops)
	if n < 2 {
		return hops, Hop{}
	}
	return append(append([]Hop(nil), hops[:n-2]...), hops[n-1]), hops[n-2]
}

// PathPoints returns the capture points of a path.
func PathPoints(t topology.Cluster, hops []Hop) ([]capture.Point, error) {
	var pts []capture.Point
	for _, h := range hops {
		p, err := h.Point(t)
		if err != nil {
			return nil, err
		}
		pts = append(pts, p)
	}
	return pts, nil
}

// SamePacket matches the packet that f first matched at the first hop, wherever it is
// seen again: same IPv4 source, destination, protocol and identification.
func SamePacket(first capture.Packet) capture.Filter {
	ip, _ := first.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		return func(gopacket.Packet) bool { return false }
	}
	return func(p gopacket.Packet) bool {
		q, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		return q != nil && q.Id == ip.Id && q.Protocol == ip.Protocol && q.SrcIP.Equal(ip.SrcIP) && q.DstIP.Equal(ip.DstIP)
	}
}

// ErrHopMissing says a packet was not seen where its path says it must be.
var ErrHopMissing = errors.New("packet not seen at hop")

// hopClockSlack is how far a hop's capture timestamp may lie before the previous
// hop's: the two can come from different CPUs, whose clocks were seen 15 µs apart on
// a loaded 2-vCPU VM, and 103 µs apart with six test runs sharing the two CPUs
// (a veth's two ends, r1/eth1 out and b/r1.eth1 in), and 1.09 ms apart once in a CI
// rehearsal (node2/lxc-pod2a out after pod2a/eth0 in: the capture socket of one hop
// was served late by its softirq). Hops of one packet are tens of µs apart and the
// path is matched hop by hop by identity (SamePacket, direction, TTL, MACs), so the
// order is a secondary check: 5 ms still tells a packet seen out of order (a
// retransmission, another packet's copy) from timestamping noise.
const hopClockSlack = 5 * time.Millisecond

// VerifyPath finds the first packet matching f at the first hop, then the same packet
// (SamePacket) at every later hop, and checks direction, TTL and time order. It returns
// the packet as seen at each hop; on failure the error holds the evidence: what was
// expected, what was seen at that point, and the pcap file to open.
func VerifyPath(s *capture.Session, hops []Hop, f capture.Filter) ([]capture.Packet, error) {
	if len(hops) == 0 {
		return nil, errors.New("verify path: no hops")
	}
	firsts := s.Packets(hops[0].Member, hops[0].Interface, f)
	if len(firsts) == 0 {
		return nil, fmt.Errorf("%w %s: no packet matched at all; seen there:\n%s\npcap: %s",
			ErrHopMissing, hops[0], Evidence(s, hops[0]), s.PcapPath(hops[0].Member, hops[0].Interface))
	}
	same := SamePacket(firsts[0])
	var seen []capture.Packet
	for i, h := range hops {
		var match *capture.Packet
		for _, p := range s.Packets(h.Member, h.Interface, same) {
			if p.Outgoing == h.Outgoing {
				match = &p
				break
			}
		}
		if match == nil {
			return seen, fmt.Errorf("%w %d %s: want %s; seen there:\n%s\npcap: %s",
				ErrHopMissing, i, h, firsts[0].Summary(), Evidence(s, h), s.PcapPath(h.Member, h.Interface))
		}
		ip, _ := match.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip.TTL != h.TTL {
			return seen, fmt.Errorf("hop %d %s: want TTL %d, got %d: %s", i, h, h.TTL, ip.TTL, match.Summary())
		}
		if err := checkMAC(h, match); err != nil {
			return seen, fmt.Errorf("hop %d %s: %w: %s", i, h, err, match.Summary())
		}
		if len(seen) > 0 && match.Timestamp.Before(seen[len(seen)-1].Timestamp.Add(-hopClockSlack)) {
			return seen, fmt.Errorf("hop %d %s seen at %s, before the previous hop at %s",
				i, h, match.Timestamp.Format("15:04:05.000000"), seen[len(seen)-1].Timestamp.Format("15:04:05.000000"))
		}
		seen = append(seen, *match)
	}
	return seen, nil
}

func checkMAC(h Hop, p *capture.Packet) error {
	eth, _ := p.Decode().Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if h.MAC == nil || eth == nil {
		return nil
	}
	if h.Outgoing && !bytes.Equal(eth.SrcMAC, h.MAC) {
		return fmt.Errorf("leaves with source MAC %s, want the interface's %s", eth.SrcMAC, h.MAC)
	}
	if !h.Outgoing && !bytes.Equal(eth.DstMAC, h.MAC) {
		return fmt.Errorf("arrives with destination MAC %s, want the interface's %s", eth.DstMAC, h.MAC)
	}
	return nil
}

func Evidence(s *capture.Session, h Hop) string {
	pkts := s.Packets(h.Member, h.Interface, nil)
	if len(pkts) == 0 {
		return "  (nothing captured)"
	}
	var b strings.Builder
	for i, p := range pkts {
		if i == 8 {
			fmt.Fprintf(&b, "  ... %d more\n", len(pkts)-i)
			break
		}
		fmt.Fprintf(&b, "  %s\n", p.Summary())
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// FormatPath renders the hops a packet took with time offsets from the first hop.
func FormatPath(hops []Hop, seen []capture.Packet) string {
	var b strings.Builder
	for i, p := range seen {
		fmt.Fprintf(&b, "  %2d  +%7.1fµs  %-28s %s\n", i+1,
			float64(p.Timestamp.Sub(seen[0].Timestamp).Nanoseconds())/1000, hops[i].String(), hopSummary(p))
	}
	return b.String()
}

func hopSummary(p capture.Packet) string {
	d := p.Decode()
	eth, _ := d.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip, _ := d.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if eth == nil || ip == nil {
		return p.Summary()
	}
	return fmt.Sprintf("%s > %s  %s > %s %s", eth.SrcMAC, eth.DstMAC, ip.SrcIP, ip.DstIP, ip.Protocol)
}

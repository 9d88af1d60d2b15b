// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/gopacket/layers"

	"podpath/datapath/config"
	"podpath/internal/capture"
	"podpath/scenarios"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
	"podpath/topology"
)

// Calico's modes (issue 14): which pod pairs go encapsulated, and how, on the wire.

func init() {
	scenarios.RegisterStep(scenarios.StepDef[podPairWith, encapModeExpect]{
		Name: "encap-mode",
		Summary: "tunnel-mode on the wire: an echo request between two pods leaves the source node encapsulated " +
			"(IPIP: outer IPv4 protocol 4 node -> node, DF, TTL 64, valid checksum, the pod's IPv4 packet inside " +
			"TTL-1; VXLAN/Geneve: UDP to the tunnel port) or natively (the pod's packet itself, TTL-1), as the " +
			"topology and the config's tunnel-protocol/tunnel-mode say; every frame of a 2 MiB TCP transfer fits " +
			"the underlay MTU (GSO); tshark agrees",
		Agents:  true,
		Timeout: 2 * time.Minute, // an echo, a 2 MiB transfer, tshark
		Run:     runEncapMode,
	})
}

type encapModeExpect struct {
	Encapsulation string `json:"encapsulation" oneOf:"ipip,vxlan,geneve,none" doc:"how the pair's packets cross the underlay (default: from the topology and the config: none for peers on one subnet with tunnel-mode cross-subnet)"`
}

// expectedEncap is what the spec says about the pair: the config's tunnel protocol when
// the topology's oracle (tunnel-mode included) tunnels the path, else none.
func expectedEncap(s *scenarios.Stage, from, to string) (string, string, error) {
	o, how, err := stageOracle(s)
	if err != nil {
		return "", "", err
	}
	ps, err := o.PodToPod(from, to)
	if err != nil {
		return "", "", err
	}
	if ps.Encapsulated() {
		return o.Options().Tunnel, how, nil
	}
	return "none", how, nil
}

func runEncapMode(ctx context.Context, s *scenarios.Stage, w podPairWith, e encapModeExpect) error {
	label := s.Label(w.Label)
	src, dst := string(w.From), string(w.To)
	want, how, err := expectedEncap(s, src, dst)
	if err != nil {
		return err
	}
	var mismatch error
	if e.Encapsulation != "" && e.Encapsulation != want {
		mismatch = fmt.Errorf("expect.encapsulation %s disagrees with the topology (%s), which gives %s", e.Encapsulation, how, want)
	}
	t := s.T
	from, _ := t.Pod(src)
	to, _ := t.Pod(dst)
	n1, _ := t.Node(from.Node)
	n2, _ := t.Node(to.Node)
	u1 := internalIface(n1)
	m1, _ := t.Member(n1.Name)
	mp, _ := t.Member(src)
	dir := filepath.Join(s.Artifacts, strings.ReplaceAll(label, " ", "-")+"-encap-"+src+"-"+dst)
	session, err := capture.Start(dir,
		capture.Point{Member: src, Interface: "eth0", NsPath: mp.NsPath},
		capture.Point{Member: n1.Name, Interface: u1.Name, NsPath: m1.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	exErr := probe.Exchange(ctx, t, probe.ICMP, src, dst)
	// A bulk TCP transfer: its GSO super-packets must leave as segments that fit.
	bulkErr := probe.BulkTCP(ctx, t, src, dst, 2<<20)
	if err := session.Stop(); err != nil {
		return err
	}
	sent := session.Packets(src, "eth0", capture.ICMPEcho(ip(from.IP), ip(to.IP)))
	wire := session.Packets(n1.Name, u1.Name, capture.ICMPEcho(ip(from.IP), ip(to.IP)))
	pcap := session.PcapPath(n1.Name, u1.Name)
	where := fmt.Sprintf("%s/%s (pcap %s) against %s/eth0", n1.Name, u1.Name, pcap, src)
	var werr error
	switch {
	case len(sent) == 0:
		werr = errors.New("no echo request seen leaving " + src)
	case len(wire) == 0:
		werr = fmt.Errorf("no echo request %s -> %s on the underlay; seen there:\n%s", from.IP, to.IP,
			hops.Evidence(session, hops.Hop{Member: n1.Name, Interface: u1.Name}))
	default:
		werr = checkEncapMode(wire[0], sent[0], want, n1, n2, s.Config)
	}
	if werr != nil && exErr != nil {
		werr = fmt.Errorf("%w\n(the echo itself: %w)", werr, exErr)
	}
	s.Check(fmt.Sprintf("%s: %s -> %s (%s -> %s) crosses the underlay %s (%s)", label, src, dst, n1.Name, n2.Name, encapWords(want), how),
		where, errors.Join(mismatch, werr))
	var big error
	frames := 0
	for _, p := range session.Packets(n1.Name, u1.Name, nil) {
		frames++
		if p.WireFrameLen() > u1.MTU+14 {
			big = fmt.Errorf("frame of %d bytes on a link of MTU %d: %s", p.WireFrameLen(), u1.MTU, p.Summary())
			break
		}
	}
	s.Check(fmt.Sprintf("%s: every frame %s -> %s on %s's underlay fits MTU %d %s (%d frames incl. a 2 MiB TCP transfer, GSO segments counted as on the wire)",
		label, src, dst, n1.Name, u1.MTU, encapWords(want), frames),
		n1.Name+"/"+u1.Name+": each frame's length, GSO super-packets by their segment size", errors.Join(bulkErr, big))
	s.Check(fmt.Sprintf("%s: tshark reads %s -> %s on %s's underlay as %s", label, src, dst, n1.Name, encapWords(want)),
		"tshark -r "+pcap, tsharkEncap(ctx, pcap, want, n1.InternalIP.String(), n2.InternalIP.String(), from.IP.String(), to.IP.String()))
	return nil
}

func encapWords(mode string) string {
	switch mode {
	case "none":
		return "natively (no encapsulation)"
	case "ipip":
		return "in IPIP (outer IPv4 protocol 4)"
	}
	return "in " + mode
}

// checkEncapMode compares the echo request as it left node n1 with what the pod sent.
func checkEncapMode(p, sent capture.Packet, want string, n1, n2 topology.Node, c *config.Config) error {
	d := p.Decode()
	var ips []*layers.IPv4
	for _, l := range d.Layers() {
		if v, ok := l.(*layers.IPv4); ok {
			ips = append(ips, v)
		}
	}
	if len(ips) == 0 {
		return fmt.Errorf("no IPv4 header: %s", p.Summary())
	}
	outer := ips[0]
	switch want {
	case "none":
		if len(ips) != 1 || d.Layer(layers.LayerTypeUDP) != nil {
			return fmt.Errorf("encapsulated (%d IPv4 headers), want the pod's packet itself: %s", len(ips), p.Summary())
		}
		// Routed by the node: its own MACs in front, the pod's IPv4 packet with TTL-1.
		if len(p.Data) < 14 {
			return fmt.Errorf("frame of %d bytes", len(p.Data))
		}
		return sameExceptTTL(sent.Data, append(append([]byte(nil), sent.Data[:14]...), p.Data[14:]...))
	case "ipip":
		var errs []error
		if outer.Protocol != layers.IPProtocolIPv4 || len(ips) != 2 {
			return fmt.Errorf("outer IPv4 protocol %d with %d IPv4 headers, want protocol 4 carrying the pod's packet: %s", outer.Protocol, len(ips), p.Summary())
		}
		if outer.SrcIP.String() != n1.InternalIP.String() || outer.DstIP.String() != n2.InternalIP.String() {
			errs = append(errs, fmt.Errorf("outer %s -> %s, want the node IPs %s -> %s", outer.SrcIP, outer.DstIP, n1.InternalIP, n2.InternalIP))
		}
		if outer.IHL != 5 || outer.TTL != 64 || outer.Flags&layers.IPv4DontFragment == 0 {
			errs = append(errs, fmt.Errorf("outer IHL %d TTL %d flags %s, want IHL 5, TTL 64, DF", outer.IHL, outer.TTL, outer.Flags))
		}
		hdr := append([]byte(nil), outer.Contents...)
		if got, wantSum := uint16(hdr[10])<<8|uint16(hdr[11]), ipv4HeaderChecksum(hdr); got != wantSum {
			errs = append(errs, fmt.Errorf("outer IPv4 checksum %#04x, want %#04x", got, wantSum))
		}
		if int(outer.Length) != len(outer.Contents)+len(outer.Payload) {
			errs = append(errs, fmt.Errorf("outer total length %d, header + payload %d", outer.Length, len(outer.Contents)+len(outer.Payload)))
		}
		// RFC 6040 normal mode: the outer ECN field is the inner one (CE as ECT(0)),
		// DSCP 0 as Calico's ipip device sends; the outer ID is the inner packet's.
		in := ips[1]
		wantTOS := in.TOS & 0x03
		if wantTOS == 0x03 {
			wantTOS = 0x02
		}
		if outer.TOS != wantTOS || outer.Id != in.Id {
			errs = append(errs, fmt.Errorf("outer TOS %#02x ID %d, want TOS %#02x (the inner ECN field) and the inner ID %d", outer.TOS, outer.Id, wantTOS, in.Id))
		}
		// The inner packet as the pod sent it, behind the node's Ethernet header.
		inner := append(append([]byte(nil), sent.Data[:14]...), outer.Payload...)
		errs = append(errs, sameExceptTTL(sent.Data, inner))
		return errors.Join(errs...)
	default: // vxlan, geneve
		udp, _ := d.Layer(layers.LayerTypeUDP).(*layers.UDP)
		if udp == nil || len(ips) != 2 {
			return fmt.Errorf("not %s (UDP carrying the pod's packet): %s", want, p.Summary())
		}
		port := config.TunnelProtocol(want).DefaultPort()
		if c != nil && c.TunnelPort != 0 {
			port = c.TunnelPort
		}
		var errs []error
		if uint16(udp.DstPort) != port {
			errs = append(errs, fmt.Errorf("UDP destination port %d, want %d", udp.DstPort, port))
		}
		if outer.SrcIP.String() != n1.InternalIP.String() || outer.DstIP.String() != n2.InternalIP.String() {
			errs = append(errs, fmt.Errorf("outer %s -> %s, want the node IPs %s -> %s", outer.SrcIP, outer.DstIP, n1.InternalIP, n2.InternalIP))
		}
		return errors.Join(errs...)
	}
}

// ipv4HeaderChecksum computes the IPv4 header checksum of h (its checksum field ignored).
func ipv4HeaderChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// tsharkEncap asks tshark, an independent dissector, about the echo requests pod a ->
// pod b in the pcap: with IPIP it must decode outer node1 -> node2 with protocol 4 and
// the pod addresses inside (`ip.proto == 4`); natively, every such frame carries one IPv4
// header, the pods' (no node address, no protocol 4, no tunnel port).
func tsharkEncap(ctx context.Context, pcap, mode, node1, node2, a, b string) error {
	ctx, cancel := context.WithTimeout(ctx, tsharkWait)
	defer cancel()
	if _, err := exec.LookPath("tshark"); err != nil {
		return errors.New("tshark is not installed (Debian package tshark): the independent dissector check cannot run")
	}
	filter := fmt.Sprintf("icmp.type == 8 && ip.src == %s && ip.dst == %s", a, b)
	args := []string{"-r", pcap, "-n", "-Y", filter, "-T", "fields", "-E", "separator=|", "-e", "ip.proto", "-e", "ip.src", "-e", "ip.dst"}
	if mode == "vxlan" {
		args = append([]string{"-d", "udp.port==8472,vxlan"}, args...)
	}
	out, err := exec.CommandContext(ctx, "tshark", args...).Output()
	if err != nil {
		return fmt.Errorf("tshark: %w", err)
	}
	lines := strings.Fields(strings.TrimSpace(string(out)))
	if len(lines) == 0 {
		return fmt.Errorf("tshark found no frame matching %q in %s", filter, pcap)
	}
	for _, l := range lines {
		f := strings.Split(l, "|")
		if len(f) != 3 {
			return fmt.Errorf("tshark line %q: want proto|src|dst", l)
		}
		protos, srcs, dsts := f[0], f[1], f[2]
		var want [3]string
		switch mode {
		case "none":
			want = [3]string{"1", a, b}
		case "ipip":
			want = [3]string{"4,1", node1 + "," + a, node2 + "," + b}
		case "vxlan", "geneve":
			want = [3]string{"17,1", node1 + "," + a, node2 + "," + b}
		}
		if [3]string{protos, srcs, dsts} != want {
			return fmt.Errorf("tshark decodes ip.proto %s, ip.src %s, ip.dst %s; want %s, %s, %s (%s)", protos, srcs, dsts, want[0], want[1], want[2], encapWords(mode))
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"podpath/internal/capture"
	"podpath/scenarios"
	"podpath/topology"
)

// The outer and inner header fields of encapsulated packets, field by field, against
// the spec (RFC 791, RFC 768, RFC 7348, RFC 8926, RFC 6040, and the datapath's
// documented constants: outer TTL 64, DF set, UDP checksum 0, source ports spread over
// [32768, 60999) by the flow hash). Each field is read from the raw bytes of the frames
// the source node sent on its underlay; nothing comes from the agent.

const (
	spreadFlows     = 16    // UDP flows sent, each from its own source port
	spreadMinPorts  = 12    // distinct outer source ports the flows must get at least
	tunnelTTL       = 64    // outer TTL: the kernel's ip_default_ttl
	sportMin        = 32768 // outer UDP source ports: [sportMin, sportMax)
	sportMax        = 60999
	firstSpreadPort = 41000 // inner source port of the first flow
)

// overlayFields sends spreadFlows UDP flows (two datagrams each) from src to dst and
// checks every encapsulated frame on src's node's underlay field by field, and that
// the outer source ports spread over the flows while each flow keeps its port.
func overlayFields(ctx context.Context, r *scenarios.Stage, o overlay, label, src, dst string, identity uint32) error {
	t := r.T
	from, _ := t.Pod(src)
	to, _ := t.Pod(dst)
	n1, _ := t.Node(from.Node)
	n2, _ := t.Node(to.Node)
	u1 := internalIface(n1)
	m1, _ := t.Member(n1.Name)
	session, err := capture.Start(filepath.Join(r.Artifacts, strings.ReplaceAll(label, " ", "-"), "fields"),
		capture.Point{Member: n1.Name, Interface: u1.Name, NsPath: m1.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	sendErr := sendUDPFlows(ctx, t, src, netip.AddrPortFrom(to.IP, 7777), spreadFlows)
	time.Sleep(200 * time.Millisecond) // the last frames reach the capture
	if err := session.Stop(); err != nil {
		return err
	}
	// The next hop on an L2 underlay is the tunnel endpoint itself: its interface on
	// the segment of the source node's underlay interface.
	var peerMAC net.HardwareAddr
	for _, i := range n2.Interfaces {
		if i.Segment == u1.Segment && u1.Segment != "" {
			peerMAC = i.MAC
		}
	}
	where := fmt.Sprintf("%s/%s (pcap %s): raw bytes of outgoing frames whose inner packet is UDP %s -> %s:7777",
		n1.Name, u1.Name, session.PcapPath(n1.Name, u1.Name), from.IP, to.IP)
	var frames []encapFrame
	var errs []error
	ecnSeen := map[byte]bool{}
	for _, p := range session.Packets(n1.Name, u1.Name, nil) {
		if !p.Outgoing {
			continue
		}
		f, ok := parseEncap(p.Data, o)
		if !ok || f.innerSrc != from.IP || f.innerDst != to.IP || f.innerProto != 17 || f.innerDport != 7777 {
			continue
		}
		frames = append(frames, f)
		ecnSeen[f.inner[1]&3] = true
		if len(errs) < 4 {
			if err := f.check(o, n1.InternalIP, n2.InternalIP, identity); err != nil || !macsAre(f.raw, u1.MAC, peerMAC) {
				if !macsAre(f.raw, u1.MAC, peerMAC) {
					err = errors.Join(err, fmt.Errorf("outer Ethernet %s -> %s, want %s's %s -> %s (%s on the same segment)",
						net.HardwareAddr(f.raw[6:12]), net.HardwareAddr(f.raw[0:6]), n1.Name, u1.MAC, peerMAC, n2.Name))
				}
				errs = append(errs, fmt.Errorf("frame of flow %d: %w", f.innerSport, err))
			}
		}
	}
	if len(frames) > 0 && len(ecnSeen) < 4 {
		errs = append(errs, fmt.Errorf("inner ECN codepoints seen %v: want all four (the flows set not-ECT, ECT(1), ECT(0), CE) so that each encapsulation rule is read", ecnSeen))
	}
	if len(frames) == 0 {
		errs = append(errs, errors.Join(sendErr, fmt.Errorf("no encapsulated UDP frame of %s -> %s on %s/%s", src, dst, n1.Name, u1.Name)))
	}
	r.Check(fmt.Sprintf("%s: outer Ethernet (node MACs), IPv4 (version 4, IHL 5, DSCP 0, ECN per RFC 6040, total length, DF, TTL %d, protocol UDP, valid checksum), "+
		"UDP (port %d, length, checksum 0, source in [%d, %d)), %s header, inner IPv4 checksum valid (%d frames)",
		label, tunnelTTL, o.port, sportMin, sportMax, strings.ToUpper(o.name), len(frames)), where, errors.Join(errs...))

	perFlow := map[uint16]map[uint16]bool{}
	distinct := map[uint16]bool{}
	for _, f := range frames {
		if perFlow[f.innerSport] == nil {
			perFlow[f.innerSport] = map[uint16]bool{}
		}
		perFlow[f.innerSport][f.outerSport] = true
		distinct[f.outerSport] = true
	}
	var serr error
	switch {
	case len(perFlow) < spreadFlows:
		serr = errors.Join(sendErr, fmt.Errorf("saw %d of %d flows on the underlay", len(perFlow), spreadFlows))
	case len(distinct) < spreadMinPorts:
		serr = fmt.Errorf("%d flows got only %d distinct outer source ports (want at least %d): %v", len(perFlow), len(distinct), spreadMinPorts, keys(distinct))
	}
	for flow, ports := range perFlow {
		if len(ports) > 1 {
			serr = errors.Join(serr, fmt.Errorf("flow with inner source port %d left with outer source ports %v: a flow must keep one", flow, keys(ports)))
		}
	}
	r.Check(fmt.Sprintf("%s: the outer UDP source port follows the flow hash: %d flows get %d distinct ports, each flow keeps its own", label, len(perFlow), len(distinct)),
		where+", outer UDP source port per inner flow", serr)
	return nil
}

func keys(m map[uint16]bool) []uint16 {
	var out []uint16
	for k := range m {
		out = append(out, k)
	}
	return out
}

// sendUDPFlows sends two datagrams on each of n UDP flows from src to dst, flow i from
// source port firstSpreadPort+i with ECN codepoint i%4 (not-ECT, ECT(1), ECT(0), CE:
// each is encapsulated differently, RFC 6040). Nothing needs to answer.
func sendUDPFlows(ctx context.Context, t topology.Cluster, src string, dst netip.AddrPort, n int) error {
	return t.Do(src, func() error {
		for i := range n {
			if err := ctx.Err(); err != nil {
				return err
			}
			// Unconnected: an ICMP port unreachable from dst does not fail the next send.
			c, err := net.ListenUDP("udp4", &net.UDPAddr{Port: firstSpreadPort + i})
			if err != nil {
				return fmt.Errorf("udp flow %d: %w", i, err)
			}
			if err := setECN(c, byte(i%4)); err != nil {
				c.Close()
				return fmt.Errorf("udp flow %d: %w", i, err)
			}
			for range 2 {
				if _, err := c.WriteTo([]byte("podpath flow spread"), net.UDPAddrFromAddrPort(dst)); err != nil {
					c.Close()
					return fmt.Errorf("udp flow %d: %w", i, err)
				}
			}
			c.Close()
		}
		return nil
	})
}

// encapFrame is an encapsulated frame taken apart byte by byte.
type encapFrame struct {
	raw                    []byte
	ip                     []byte // outer IPv4 header (20 bytes)
	udp                    []byte // outer UDP header
	tun                    []byte // VXLAN or Geneve header and options
	inner                  []byte // inner IPv4 header and on
	outerSport             uint16
	innerSrc, innerDst     netip.Addr
	innerProto             uint8
	innerSport, innerDport uint16
}

// parseEncap takes apart an Ethernet/IPv4/UDP frame to the tunnel port carrying
// VXLAN or Geneve with an inner Ethernet/IPv4 frame.
func parseEncap(b []byte, o overlay) (encapFrame, bool) {
	be := binary.BigEndian
	if len(b) < 14+20+8+8 || be.Uint16(b[12:14]) != 0x0800 {
		return encapFrame{}, false
	}
	ihl := int(b[14]&0x0f) * 4
	if ihl < 20 || len(b) < 14+ihl+8+8 || b[14+9] != 17 {
		return encapFrame{}, false
	}
	f := encapFrame{raw: b, ip: b[14 : 14+ihl], udp: b[14+ihl : 14+ihl+8]}
	if be.Uint16(f.udp[2:4]) != o.port {
		return encapFrame{}, false
	}
	f.outerSport = be.Uint16(f.udp[0:2])
	tun := b[14+ihl+8:]
	hl := 8
	if o.name == "geneve" {
		hl = 8 + int(tun[0]&0x3f)*4
	}
	if len(tun) < hl+14+20 {
		return encapFrame{}, false
	}
	f.tun = tun[:hl]
	ieth := tun[hl:]
	if be.Uint16(ieth[12:14]) != 0x0800 {
		return encapFrame{}, false
	}
	f.inner = ieth[14:]
	iihl := int(f.inner[0]&0x0f) * 4
	if iihl < 20 || len(f.inner) < iihl+4 {
		return encapFrame{}, false
	}
	f.innerSrc = netip.AddrFrom4([4]byte(f.inner[12:16]))
	f.innerDst = netip.AddrFrom4([4]byte(f.inner[16:20]))
	f.innerProto = f.inner[9]
	f.innerSport = be.Uint16(f.inner[iihl : iihl+2])
	f.innerDport = be.Uint16(f.inner[iihl+2 : iihl+4])
	return f, true
}

// ipv4HeaderSum is the one's complement sum of an IPv4 header: 0xffff when its
// checksum is right (RFC 1071).
func ipv4HeaderSum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return uint16(sum)
}

// outerECN is RFC 6040 normal-mode encapsulation: the inner ECN field, CE as ECT(0).
func outerECN(innerTOS byte) byte {
	if ecn := innerTOS & 3; ecn != 3 {
		return ecn
	}
	return 2
}

// check compares every field the encapsulation writes with the spec.
func (f encapFrame) check(o overlay, src, dst netip.Addr, identity uint32) error {
	be := binary.BigEndian
	ip, udp, tun := f.ip, f.udp, f.tun
	var errs []error
	want := func(what string, got, want any) {
		if got != want {
			errs = append(errs, fmt.Errorf("%s %v, want %v", what, got, want))
		}
	}
	wantHex := func(what string, got, want uint) {
		if got != want {
			errs = append(errs, fmt.Errorf("%s %#x, want %#x", what, got, want))
		}
	}
	wantHex("outer IPv4 version/IHL byte", uint(ip[0]), 0x45)
	want("outer DSCP", ip[1]>>2, byte(0))
	want("outer ECN", ip[1]&3, outerECN(f.inner[1]))
	want("outer total length", int(be.Uint16(ip[2:4])), len(f.raw)-14)
	wantHex("outer flags/fragment offset", uint(be.Uint16(ip[6:8])), 0x4000) // DF, not a fragment
	want("outer TTL", int(ip[8]), tunnelTTL)
	want("outer protocol", int(ip[9]), 17)
	if s := ipv4HeaderSum(ip); s != 0xffff {
		errs = append(errs, fmt.Errorf("outer IPv4 header checksum %#04x is wrong (header sums to %#04x)", be.Uint16(ip[10:12]), s))
	}
	want("outer source", netip.AddrFrom4([4]byte(ip[12:16])), src)
	want("outer destination", netip.AddrFrom4([4]byte(ip[16:20])), dst)
	if o.name == "geneve" {
		// geneve_encap_redirect() copies the inner ID (the vxlan device picks its own).
		want("outer IPv4 ID (= the inner ID)", be.Uint16(ip[4:6]), be.Uint16(f.inner[4:6]))
	}
	if p := f.outerSport; p < sportMin || p >= sportMax {
		errs = append(errs, fmt.Errorf("outer UDP source port %d outside [%d, %d)", p, sportMin, sportMax))
	}
	want("outer UDP destination port", be.Uint16(udp[2:4]), o.port)
	want("outer UDP length", int(be.Uint16(udp[4:6])), len(f.raw)-14-len(ip))
	want("outer UDP checksum", be.Uint16(udp[6:8]), uint16(0))
	vni := uint32(tun[4])<<16 | uint32(tun[5])<<8 | uint32(tun[6])
	switch o.name {
	case "vxlan":
		wantHex("VXLAN flags", uint(tun[0]), 0x08) // I: the VNI is valid (RFC 7348)
		want("VXLAN reserved bytes", fmt.Sprintf("% x", []byte{tun[1], tun[2], tun[3], tun[7]}), "00 00 00 00")
	case "geneve":
		want("Geneve version", tun[0]>>6, byte(0))
		// Pod-to-pod Geneve carries no option: the DSR option rides only on NodePort
		// requests (checked by the dsr steps), the 12-byte test option only in fixtures.
		want("Geneve options length (bytes)", int(tun[0]&0x3f)*4, 0)
		wantHex("Geneve O/C flags", uint(tun[1]&0xc0), 0)
		wantHex("Geneve protocol", uint(be.Uint16(tun[2:4])), 0x6558)
		want("Geneve reserved byte", tun[7], byte(0))
	}
	want("VNI", vni, identity)
	if s := ipv4HeaderSum(f.inner[:int(f.inner[0]&0x0f)*4]); s != 0xffff {
		errs = append(errs, fmt.Errorf("inner IPv4 header checksum %#04x is wrong after the TTL decrement (header sums to %#04x)", be.Uint16(f.inner[10:12]), s))
	}
	return errors.Join(errs...)
}

// macsAre says whether frame goes from src to dst (dst nil: any destination, the
// next hop is a router the topology does not pin down here).
func macsAre(frame []byte, src, dst net.HardwareAddr) bool {
	return bytes.Equal(frame[6:12], src) && (dst == nil || bytes.Equal(frame[0:6], dst))
}

// setECN sets the ECN field (DSCP 0) of what c sends.
func setECN(c *net.UDPConn, ecn byte) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_TOS, int(ecn))
	}); err != nil {
		return err
	}
	if serr != nil {
		return fmt.Errorf("set IP_TOS %#x: %w", ecn, serr)
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"podpath/internal/capture"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

// The bytes DSR writes, against Cilium's formats and RFC 791/792/1191: the option on
// the wire between the nodes, the packet the backend pod receives once the option is
// removed, and the ICMP fragmentation-needed answer built in BPF.

// checkDSRFields runs the three checks; fragNeeded says the run sent the DF datagram
// that draws the ICMP answer.
func checkDSRFields(ctx context.Context, s *scenarios.Stage, w *dsrWire, fragNeeded, udpSNAT bool) error {
	var clientMAC net.HardwareAddr
	if ifs, err := s.T.Interfaces(w.client); err == nil && len(ifs) > 0 {
		clientMAC = ifs[0].MAC
	}
	s.Check(w.optionBytesName(), w.where(w.back, w.n2)+" capture (incoming SYNs with the option): raw header bytes", w.optionBytesErr())
	if fragNeeded {
		s.Check("MTU: the frag-needed answer is well formed: the request's MACs swapped, IPv4 from the service to the client (TTL 64, TOS 0xc0, valid checksum), ICMP checksum, the client's datagram quoted",
			w.where(w.client, w.ext)+" capture: ICMP type 3 code 4 from "+w.service.Addr().String()+", byte by byte", w.fragNeededBytesErr(clientMAC))
	}
	return w.checkOptionRemoved(ctx, s, udpSNAT)
}

func (w *dsrWire) optionBytesName() string {
	if w.geneve {
		return "DSR option bytes: Geneve options length 12, option class 0x014B type 0x01 (not critical) length 2 words, service address, port, zero padding; inner IPv4 and TCP checksums right"
	}
	return "DSR option bytes: IPv4 IHL 7, option 0x9a length 8 with the service port and address, total length and header checksum right, TCP checksum right after DNAT"
}

// optionBytesErr checks the SYNs that carried the option as they reached the
// backend's node.
func (w *dsrWire) optionBytesErr() error {
	if len(w.optSYN) == 0 {
		return fmt.Errorf("no SYN with the DSR option reached %s", w.back)
	}
	addr := w.service.Addr().As4()
	var port [2]byte
	binary.BigEndian.PutUint16(port[:], w.service.Port())
	var errs []error
	for _, p := range w.optSYN {
		if w.geneve {
			f, ok := parseEncap(p.Data, overlays["geneve"])
			if !ok {
				errs = append(errs, fmt.Errorf("not Geneve: %s", p.Summary()))
				continue
			}
			want := append(append([]byte{0x01, 0x4b, 0x01, 0x02}, addr[:]...), port[0], port[1], 0, 0)
			if got := f.tun[8:]; !bytes.Equal(got, want) {
				errs = append(errs, fmt.Errorf("Geneve options % x, want % x: %s", got, want, p.Summary()))
			}
			if inner, ok := parseIPv4(f.inner); ok {
				errs = append(errs, inner.headerChecksumErr(), inner.l4ChecksumErr())
			}
			continue
		}
		ip, ok := parseIPv4Frame(p.Data)
		if !ok {
			continue
		}
		want := append([]byte{0x9a, 0x08, port[0], port[1]}, addr[:]...)
		if len(ip.hdr) != 28 || !bytes.Equal(ip.hdr[20:], want) {
			errs = append(errs, fmt.Errorf("IPv4 header of %d bytes with options % x, want 28 with % x: %s", len(ip.hdr), ip.hdr[20:], want, p.Summary()))
		}
		if tot := int(binary.BigEndian.Uint16(ip.hdr[2:4])); !totalLengthFits(tot, len(p.Data)) && p.GSO.Size == 0 {
			errs = append(errs, fmt.Errorf("total length %d, the frame carries %d bytes of IPv4: %s", tot, len(p.Data)-14, p.Summary()))
		}
		errs = append(errs, ip.headerChecksumErr(), ip.l4ChecksumErr())
	}
	return firstErrs(errs)
}

// fragNeededBytesErr checks each ICMP fragmentation-needed answer from the service.
func (w *dsrWire) fragNeededBytesErr(clientMAC net.HardwareAddr) error {
	svc := w.service.Addr()
	client, _ := netip.AddrFromSlice(w.extIP.To4())
	var errs []error
	seen := 0
	for _, p := range w.s.Packets(w.client, w.ext, nil) {
		ip, ok := parseIPv4Frame(p.Data)
		if !ok || p.Outgoing || ip.proto != 1 || ip.src != svc || len(ip.l4) < 8 || ip.l4[0] != 3 || ip.l4[1] != 4 {
			continue
		}
		seen++
		if src, dst := net.HardwareAddr(p.Data[6:12]), net.HardwareAddr(p.Data[0:6]); !bytes.Equal(src, w.n1MAC) || (clientMAC != nil && !bytes.Equal(dst, clientMAC)) {
			errs = append(errs, fmt.Errorf("Ethernet %s -> %s, want %s's %s -> the client's %s (the request's MACs swapped)", src, dst, w.node, w.n1MAC, clientMAC))
		}
		h := ip.hdr
		switch {
		case len(h) != 20:
			errs = append(errs, fmt.Errorf("IHL %d, want 5", len(h)/4))
		case h[8] != 64:
			errs = append(errs, fmt.Errorf("TTL %d, want 64", h[8]))
		case h[1] != 0xc0:
			errs = append(errs, fmt.Errorf("TOS %#x, want 0xc0 (as Linux's ICMP)", h[1]))
		case ip.dst != client:
			errs = append(errs, fmt.Errorf("destination %s, want the client %s", ip.dst, client))
		case binary.BigEndian.Uint16(h[2:4]) != 20+8+28:
			errs = append(errs, fmt.Errorf("total length %d, want 56 (IPv4, ICMP, quoted header and 8 bytes)", binary.BigEndian.Uint16(h[2:4])))
		}
		errs = append(errs, ip.headerChecksumErr())
		if s := fold(onesSum(0, ip.l4)); s != 0xffff {
			errs = append(errs, fmt.Errorf("ICMP checksum %#04x is wrong (message sums to %#04x)", binary.BigEndian.Uint16(ip.l4[2:4]), s))
		}
		q, ok := parseIPv4(ip.l4[8:])
		if !ok || len(ip.l4) < 8+20+8 {
			errs = append(errs, fmt.Errorf("no quoted IPv4 header and 8 bytes: % x", ip.l4[8:]))
			continue
		}
		_, dport := q.ports()
		if q.src != client || q.dst != svc || q.proto != 17 || dport != w.service.Port() {
			errs = append(errs, fmt.Errorf("quoted %s -> %s:%d proto %d, want the client's datagram %s -> %s", q.src, q.dst, dport, q.proto, client, w.service))
		}
		errs = append(errs, q.headerChecksumErr())
	}
	if seen == 0 {
		return fmt.Errorf("no ICMP frag-needed from %s reached %s", svc, w.client)
	}
	return firstErrs(errs)
}

// checkOptionRemoved sends 4 TCP and 4 UDP exchanges and checks, on the backend
// pods' eth0, that the requests arrive as the client sent them less the translation:
// no IPv4 option (IHL 5), total length and checksums right.
func (w *dsrWire) checkOptionRemoved(ctx context.Context, s *scenarios.Stage, udpSNAT bool) error {
	t := s.T
	var points []capture.Point
	seenPod := map[string]bool{}
	for _, b := range w.backends {
		p, _ := podByIP(t, b)
		if seenPod[p.Name] {
			continue
		}
		seenPod[p.Name] = true
		m, _ := t.Member(p.Name)
		points = append(points, capture.Point{Member: p.Name, Interface: "eth0", NsPath: m.NsPath})
	}
	session, err := capture.Start(filepath.Join(s.Artifacts, "dsr-backends"), points...)
	if err != nil {
		return err
	}
	defer session.Stop()
	var errs, exErrs []error
	for _, proto := range []probe.Protocol{probe.TCP, probe.UDP} {
		for range 4 {
			exErrs = append(exErrs, probe.ExchangeAddr(ctx, t, w.client, proto, w.service))
		}
	}
	if err := session.Stop(); err != nil {
		return err
	}
	client, _ := netip.AddrFromSlice(w.extIP.To4())
	seen := 0
	for _, pt := range points {
		for _, p := range session.Packets(pt.Member, pt.Interface, nil) {
			ip, ok := parseIPv4Frame(p.Data)
			if !ok || p.Outgoing || ip.src != client || p.GSO.Size != 0 {
				continue
			}
			if _, dp := ip.ports(); !w.backendPort[dp] {
				continue
			}
			seen++
			if len(ip.hdr) != 20 {
				errs = append(errs, fmt.Errorf("%s received a request with IHL %d (options % x): %s", pt.Member, len(ip.hdr)/4, ip.hdr[20:], p.Summary()))
			}
			if tot := int(binary.BigEndian.Uint16(ip.hdr[2:4])); !totalLengthFits(tot, len(p.Data)) {
				errs = append(errs, fmt.Errorf("total length %d, %d bytes of IPv4 arrived: %s", tot, len(p.Data)-14, p.Summary()))
			}
			errs = append(errs, ip.headerChecksumErr(), ip.l4ChecksumErr())
		}
	}
	if seen == 0 {
		errs = append(errs, fmt.Errorf("no request from %s reached a backend pod", client))
	}
	errs = append(errs, exErrs...) // what the packets show first, then the exchanges
	what := "TCP and UDP"
	if udpSNAT {
		what = "TCP (DSR) and UDP (SNAT: from the entry node, not counted)"
	}
	s.Check(fmt.Sprintf("DSR: the backend pods receive the client's requests with the option removed (IHL 5), total length and checksums right (%d packets)", seen),
		"eth0 captures of the backend pods: "+what+" requests from "+client.String()+", raw IPv4 header", firstErrs(errs))
	return nil
}

// totalLengthFits says whether an IPv4 total length matches a frame of frameLen bytes:
// equal to what follows the Ethernet header, or shorter in a frame padded to the
// Ethernet minimum of 60 bytes.
func totalLengthFits(tot, frameLen int) bool {
	return tot == frameLen-14 || (frameLen == 60 && tot < frameLen-14)
}

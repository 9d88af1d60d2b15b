// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[serviceICMPWith, none]{
		Name: "service-icmp-error",
		Summary: "a UDP datagram through a service frontend to a backend port nobody listens on: the backend's ICMP port " +
			"unreachable reaches the client translated back (outer source the frontend, the quoted IPv4 and UDP the client's own tuple, " +
			"every checksum valid) and the client's socket gets ECONNREFUSED",
		Agents: true,
		With:   serviceICMPWith{Frontend: "clusterIP"},
		Run:    runServiceICMPError,
	})
}

type serviceICMPWith struct {
	From     scenarios.MemberRef  `json:"from" required:"true" doc:"the pod or client that sends"`
	Service  scenarios.ServiceRef `json:"service" required:"true" doc:"a UDP service of the stage with server: none (its backends' port is closed)"`
	Frontend string               `json:"frontend" oneOf:"clusterIP,nodePort" doc:"the address dialled: the ClusterIP, or node's InternalIP at the NodePort"`
	Node     scenarios.NodeRef    `json:"node" doc:"with frontend nodePort: the node dialled"`
}

func (w *serviceICMPWith) Validate(e strictyaml.FieldErrors) {
	if (w.Frontend == "nodePort") != (w.Node != "") {
		e.Add("node", "want a node with frontend nodePort, and none with %s", w.Frontend)
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.Protocol != "UDP" || svc.Server != "none" || w.Frontend == "nodePort" && svc.NodePort == 0) {
		e.Add("service", "service %s is %s with server %q: want a UDP service with server none (and a nodePort with frontend nodePort)", w.Service, svc.Protocol, svc.Server)
	}
}

// icmpXlateTries is how many datagrams the client sends at most (one error is enough;
// Linux rate-limits its ICMP errors per destination, a burst of 6 then 1 a second).
const icmpXlateTries = 3

// runServiceICMPError sends UDP datagrams from a connected socket through the service
// frontend to its closed backend port, captures the client's interface and the backend
// pods' eth0, and reads the ICMP port unreachable at both ends: at the backend it
// quotes the translated datagram, at the client it must quote exactly what the client
// sent (RFC 792: the error is matched to the socket by the quoted tuple).
func runServiceICMPError(ctx context.Context, s *scenarios.Stage, w serviceICMPWith, _ none) error {
	t := s.T
	svc := s.Services[string(w.Service)]
	dst, err := frontend(t, svc, w.Frontend, string(w.Node))
	if err != nil {
		return err
	}
	from := string(w.From)
	m, err := t.Member(from)
	if err != nil {
		return err
	}
	var clientIf string
	var clientIP netip.Addr
	if p, err := t.Pod(from); err == nil {
		clientIf, clientIP = "eth0", p.IP
	} else {
		ifs, err := t.Interfaces(from)
		if err != nil || len(ifs) == 0 {
			return fmt.Errorf("client %s: no interface (%v)", from, err)
		}
		clientIf, clientIP = ifs[0].Name, ifs[0].Address.Addr()
	}
	points := []capture.Point{{Member: from, Interface: clientIf, NsPath: m.NsPath}}
	var backPods []topology.Pod
	for _, b := range svc.Backends {
		if p, ok := podByIP(t, b.IP); ok {
			mp, err := t.Member(p.Name)
			if err != nil {
				return err
			}
			backPods = append(backPods, p)
			points = append(points, capture.Point{Member: p.Name, Interface: "eth0", NsPath: mp.NsPath})
		}
	}
	session, err := capture.Start(filepath.Join(s.Artifacts, "service-icmp-error-"+w.Frontend), points...)
	if err != nil {
		return err
	}
	defer session.Stop()

	var lport uint16
	var sent []byte // the UDP header and payload the client sent
	var sockErr error
	gotICMP := func(p gopacket.Packet) bool {
		icmp, ok := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		return ok && icmp.TypeCode.Type() == layers.ICMPv4TypeDestinationUnreachable
	}
	err = t.Do(from, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 500000}); err != nil {
			return fmt.Errorf("setsockopt: %w", err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
			return fmt.Errorf("connect %s: %w", dst, err)
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			return fmt.Errorf("getsockname: %w", err)
		}
		lport = uint16(sa.(*unix.SockaddrInet4).Port)
		// The datagram itself goes out of a raw socket with its UDP checksum complete
		// (CHECKSUM_NONE): a UDP socket's datagram crosses veths with only the
		// pseudo-header sum in the field (checksum offload), which the backend quotes
		// as it is and no translation of a quote can make whole again.
		raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_UDP)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(raw)
		sent = udpDatagram(netip.AddrPortFrom(clientIP, lport), dst, []byte("podpath service-icmp-error"))
		sockErr = errors.New("no error reported on the connected socket")
		for range icmpXlateTries {
			if err := unix.Sendto(raw, sent, 0, &unix.SockaddrInet4{Addr: dst.Addr().As4()}); err != nil {
				return fmt.Errorf("send to %s: %w", dst, err)
			}
			buf := make([]byte, 256)
			_, err := unix.Read(fd, buf)
			if errors.Is(err, unix.ECONNREFUSED) {
				sockErr = nil
				break
			}
			if err == nil {
				sockErr = fmt.Errorf("a reply came from %s: the backend port is not closed", dst)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	waitAny(ctx, session, points[:1], gotICMP, time.Second)
	time.Sleep(100 * time.Millisecond)
	if err := session.Stop(); err != nil {
		return err
	}

	src := netip.AddrPortFrom(clientIP, lport)
	// Check names hold no ephemeral port: reports are compared by check name.
	what := fmt.Sprintf("ICMP error xlate: UDP %s -> %s (%s) to a closed backend port", from, dst, w.Frontend)
	// At the backends: the error about the translated datagram, to be translated back.
	var backErr error = fmt.Errorf("no ICMP port unreachable left any backend pod of %s", svc.Name)
	for _, p := range backPods {
		for _, pk := range session.Packets(p.Name, "eth0", nil) {
			ip, ok := parseIPv4Frame(pk.Data)
			if !ok || !pk.Outgoing || ip.proto != 1 || len(ip.l4) < 8+20+4 || ip.l4[0] != 3 || ip.l4[1] != 3 {
				continue
			}
			q, ok := parseIPv4(ip.l4[8:])
			if _, qd := q.ports(); ok && (q.src != clientIP || q.dst != dst.Addr() || qd != dst.Port()) {
				backErr = nil // the backend saw a translated tuple: translation is needed
				break
			}
			backErr = fmt.Errorf("the error at %s quotes the client's tuple untranslated: %s", p.Name, pk.Summary())
		}
		if backErr == nil {
			break
		}
	}
	s.Check(what+": the backend answers with port unreachable about the translated datagram",
		"eth0 captures of the backend pods: outgoing ICMP type 3 code 3 and its quoted tuple", backErr)

	var outer, quoted []error
	seen := 0
	for _, pk := range session.Packets(from, clientIf, nil) {
		ip, ok := parseIPv4Frame(pk.Data)
		if !ok || pk.Outgoing || ip.proto != 1 || len(ip.l4) < 8 || ip.l4[0] != 3 {
			continue
		}
		seen++
		if ip.src != dst.Addr() || ip.dst != clientIP {
			outer = append(outer, fmt.Errorf("outer %s -> %s, want %s -> %s: %s", ip.src, ip.dst, dst.Addr(), clientIP, pk.Summary()))
		}
		if ip.l4[1] != 3 {
			outer = append(outer, fmt.Errorf("ICMP type 3 code %d, want code 3 (port unreachable): %s", ip.l4[1], pk.Summary()))
		}
		outer = append(outer, ip.headerChecksumErr())
		if !ip.whole {
			outer = append(outer, fmt.Errorf("captured %d of the ICMP message's bytes: cannot sum it", len(ip.l4)))
		} else if sum := fold(onesSum(0, ip.l4)); sum != 0xffff {
			outer = append(outer, fmt.Errorf("ICMP checksum %#04x is wrong (message sums to %#04x): %s", uint16(ip.l4[2])<<8|uint16(ip.l4[3]), sum, pk.Summary()))
		}
		q, ok := parseIPv4(ip.l4[8:])
		if !ok || len(q.l4) < 8 {
			quoted = append(quoted, fmt.Errorf("no quoted IPv4 and UDP header: %s", pk.Summary()))
			continue
		}
		qs, qd := q.ports()
		if q.src != clientIP || q.dst != dst.Addr() || q.proto != 17 || qs != lport || qd != dst.Port() {
			quoted = append(quoted, fmt.Errorf("quoted %s:%d -> %s:%d proto %d, want the client's own %s -> %s UDP: %s", q.src, qs, q.dst, qd, q.proto, src, dst, pk.Summary()))
		}
		if err := q.headerChecksumErr(); err != nil {
			quoted = append(quoted, fmt.Errorf("quoted %w", err))
		}
		quoted = append(quoted, quotedUDPChecksumErr(q, sent))
	}
	if seen == 0 {
		err := fmt.Errorf("no ICMP destination unreachable reached %s/%s after %d datagrams", from, clientIf, icmpXlateTries)
		outer, quoted = append(outer, err), append(quoted, err)
	}
	where := fmt.Sprintf("%s/%s capture (pcap %s): incoming ICMP type 3", from, clientIf, session.PcapPath(from, clientIf))
	s.Check(fmt.Sprintf("%s: the client gets ICMP type 3 code 3 from %s to %s, outer IPv4 and ICMP checksums valid", what, dst.Addr(), clientIP),
		where+": outer IPv4 addresses, type, code, RFC 1071 sums", firstErrs(outer))
	s.Check(fmt.Sprintf("%s: the quoted IPv4 and UDP headers are the client's own tuple %s:(its port) -> %s, quoted checksums valid", what, clientIP, dst),
		where+fmt.Sprintf(" (the client's port %d)", lport)+": the quoted IPv4 header (addresses, checksum) and UDP header (ports, checksum with the quoted pseudo-header)", firstErrs(quoted))
	s.Check(what+": the client's socket gets the error (ECONNREFUSED)",
		fmt.Sprintf("a connected UDP socket in %s: read after each send", from), sockErr)
	return nil
}

// udpDatagram builds a UDP header and payload from src to dst with its checksum
// complete (RFC 768, with the IPv4 pseudo-header).
func udpDatagram(src, dst netip.AddrPort, payload []byte) []byte {
	b := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:2], src.Port())
	binary.BigEndian.PutUint16(b[2:4], dst.Port())
	binary.BigEndian.PutUint16(b[4:6], uint16(len(b)))
	copy(b[8:], payload)
	s4, d4 := src.Addr().As4(), dst.Addr().As4()
	sum := onesSum(onesSum(0, s4[:]), d4[:]) + 17 + uint32(len(b))
	c := ^fold(onesSum(sum, b))
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:8], c)
	return b
}

// quotedUDPChecksumErr wants the quoted UDP header's checksum to be the one the client
// sent, and right for the quoted addresses (RFC 5508 4.2: a NAT translates the
// embedded header's checksums too).
func quotedUDPChecksumErr(q ipv4Packet, sent []byte) error {
	if len(q.l4) < 8 || len(sent) < 8 {
		return errors.New("no quoted UDP header")
	}
	got, want := binary.BigEndian.Uint16(q.l4[6:8]), binary.BigEndian.Uint16(sent[6:8])
	if got != want {
		return fmt.Errorf("quoted UDP checksum %#04x, the client sent %#04x", got, want)
	}
	if q.whole {
		pseudo := onesSum(0, q.hdr[12:20]) + 17 + uint32(len(q.l4))
		if s := fold(onesSum(pseudo, q.l4)); s != 0xffff {
			return fmt.Errorf("quoted UDP checksum %#04x is wrong for %s -> %s (sums to %#04x)", got, q.src, q.dst, s)
		}
	}
	return nil
}

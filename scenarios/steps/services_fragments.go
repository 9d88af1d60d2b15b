// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[serviceFragWith, serviceFragExpect]{
		Name: "service-fragments",
		Summary: "UDP datagrams larger than the MTU (fragmented by the sender's kernel) through a service frontend to an echo " +
			"backend: with enable-ipv4-fragment-tracking every fragment reaches the backend pod with the backend's address " +
			"and the answer's fragments reach the client from the frontend, the datagram comes back whole; " +
			"expect.delivered false (tracking off): only the first fragment is translated and nothing comes back",
		Agents: true,
		With:   serviceFragWith{Frontend: "clusterIP", Size: 4000, Datagrams: 3},
		Expect: serviceFragExpect{Delivered: true},
		Run:    runServiceFragments,
	})
}

type serviceFragWith struct {
	From      scenarios.MemberRef  `json:"from" required:"true" doc:"the pod or client that sends"`
	Service   scenarios.ServiceRef `json:"service" required:"true" doc:"a UDP service of the stage with server echo"`
	Frontend  string               `json:"frontend" oneOf:"clusterIP,nodePort" doc:"the address dialled: the ClusterIP, or node's InternalIP at the NodePort"`
	Node      scenarios.NodeRef    `json:"node" doc:"with frontend nodePort: the node dialled"`
	Size      int                  `json:"size" range:"1473..65507" doc:"UDP payload bytes of each datagram: more than one 1500-byte frame holds, so the sender's kernel fragments it"`
	Datagrams int                  `json:"datagrams" range:"1..20" doc:"datagrams sent, one after the other, each waiting for its echo (1 s)"`
}

type serviceFragExpect struct {
	Delivered bool `json:"delivered" doc:"true: every datagram comes back whole (fragment tracking on); false: none does (later fragments pass untranslated)"`
}

func (w *serviceFragWith) Validate(e strictyaml.FieldErrors) {
	if (w.Frontend == "nodePort") != (w.Node != "") {
		e.Add("node", "want a node with frontend nodePort, and none with %s", w.Frontend)
	}
	if svc := scenarios.DecodingStage(e).Service(w.Service); svc != nil && (svc.Protocol != "UDP" || svc.Server != "echo" || w.Frontend == "nodePort" && svc.NodePort == 0) {
		e.Add("service", "service %s is %s with server %q: want a UDP service with server echo (and a nodePort with frontend nodePort)", w.Service, svc.Protocol, svc.Server)
	}
}

// ipv4Frag is one captured IPv4 fragment: identification, offset in bytes, MF.
type ipv4Frag struct {
	id       uint16
	offset   int
	more     bool
	src, dst netip.Addr
}

// fragOf reads an IPv4 UDP fragment (MF set or offset not 0) out of a frame.
func fragOf(frame []byte) (ipv4Frag, bool) {
	ip, ok := parseIPv4Frame(frame)
	if !ok || ip.proto != unix.IPPROTO_UDP {
		return ipv4Frag{}, false
	}
	fo := binary.BigEndian.Uint16(ip.hdr[6:8])
	if fo&0x3fff == 0 {
		return ipv4Frag{}, false
	}
	return ipv4Frag{id: binary.BigEndian.Uint16(ip.hdr[4:6]), offset: int(fo&0x1fff) * 8, more: fo&0x2000 != 0,
		src: ip.src, dst: ip.dst}, true
}

func fragString(fs []ipv4Frag) string {
	var b strings.Builder
	for _, f := range fs {
		fmt.Fprintf(&b, " [id %#04x off %d MF %t %s > %s]", f.id, f.offset, f.more, f.src, f.dst)
	}
	return b.String()
}

// runServiceFragments sends Datagrams UDP datagrams of Size bytes from a connected
// socket (IP_PMTUDISC_DONT: the kernel fragments to the interface MTU) through the
// frontend, waits up to a second for each echo, and reads the fragments on the
// client's interface and on the backend pods' eth0: the datagrams the client sent are
// told apart by their IPv4 identification, which translation leaves alone.
func runServiceFragments(ctx context.Context, s *scenarios.Stage, w serviceFragWith, e serviceFragExpect) error {
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
	if _, err := t.Pod(from); err == nil {
		clientIf = "eth0"
	} else {
		ifs, err := t.Interfaces(from)
		if err != nil || len(ifs) == 0 {
			return fmt.Errorf("client %s: no interface (%v)", from, err)
		}
		clientIf = ifs[0].Name
	}
	points := []capture.Point{{Member: from, Interface: clientIf, NsPath: m.NsPath}}
	backends := map[string]netip.Addr{}
	for _, b := range svc.Backends {
		if p, ok := podByIP(t, b.IP); ok {
			mp, err := t.Member(p.Name)
			if err != nil {
				return err
			}
			backends[p.Name] = p.IP
			points = append(points, capture.Point{Member: p.Name, Interface: "eth0", NsPath: mp.NsPath})
		}
	}
	session, err := capture.Start(filepath.Join(s.Artifacts, "service-fragments-"+w.Frontend), points...)
	if err != nil {
		return err
	}
	defer session.Stop()

	var echoErrs []string
	back := 0
	err = t.Do(from, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DONT); err != nil {
			return fmt.Errorf("setsockopt IP_MTU_DISCOVER: %w", err)
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 1}); err != nil {
			return fmt.Errorf("setsockopt: %w", err)
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
			return fmt.Errorf("connect %s: %w", dst, err)
		}
		buf := make([]byte, w.Size+1)
		for i := range w.Datagrams {
			msg := bytes.Repeat([]byte{byte('a' + i)}, w.Size)
			copy(msg, fmt.Sprintf("podpath fragments %d ", i))
			if _, err := unix.Write(fd, msg); err != nil {
				return fmt.Errorf("send %d bytes to %s: %w", w.Size, dst, err)
			}
			n, err := unix.Read(fd, buf)
			switch {
			case err != nil:
				echoErrs = append(echoErrs, fmt.Sprintf("datagram %d: no echo within 1 s (%v)", i, err))
			case !bytes.Equal(buf[:n], msg):
				echoErrs = append(echoErrs, fmt.Sprintf("datagram %d: echo of %d bytes differs from the %d sent", i, n, w.Size))
			default:
				back++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	time.Sleep(200 * time.Millisecond) // the last frames reach the captures
	if err := session.Stop(); err != nil {
		return err
	}

	what := fmt.Sprintf("fragments: %d-byte UDP datagrams %s -> %s (%s)", w.Size, from, dst, w.Frontend)
	var echoErr error
	if e.Delivered && back != w.Datagrams {
		echoErr = fmt.Errorf("%d of %d came back whole: %s", back, w.Datagrams, strings.Join(echoErrs, "; "))
	}
	if !e.Delivered && back != 0 {
		echoErr = fmt.Errorf("%d of %d came back whole: later fragments were translated after all", back, w.Datagrams)
	}
	if e.Delivered {
		s.Check(what+": every echo comes back whole", "the client's connected UDP socket: each echo byte for byte", echoErr)
	} else {
		s.Check(what+": no echo comes back (later fragments pass untranslated)", "the client's connected UDP socket, 1 s per datagram", echoErr)
	}

	// What the client sent: its outgoing fragments to the frontend, by IPv4 ID.
	sent := map[uint16][]ipv4Frag{}
	var replies []ipv4Frag
	for _, pk := range session.Packets(from, clientIf, nil) {
		f, ok := fragOf(pk.Data)
		switch {
		case !ok:
		case pk.Outgoing && f.dst == dst.Addr():
			sent[f.id] = append(sent[f.id], f)
		case !pk.Outgoing:
			replies = append(replies, f)
		}
	}
	var fragErr error
	if len(sent) < w.Datagrams {
		fragErr = fmt.Errorf("%d fragmented datagrams to %s on %s/%s, want %d", len(sent), dst.Addr(), from, clientIf, w.Datagrams)
	}
	for id, fs := range sent {
		if len(fs) < 2 {
			fragErr = errors.Join(fragErr, fmt.Errorf("datagram %#04x left in %d fragment(s):%s", id, len(fs), fragString(fs)))
		}
	}
	s.Check(what+": the sender's kernel fragments each datagram", "outgoing IPv4 fragments (MF, offset) on "+from+"/"+clientIf, fragErr)

	// At the backends: every fragment of each datagram, with the backend's address.
	var beErr []error
	for id, fs := range sent {
		var at []ipv4Frag
		pod := ""
		for name, ip := range backends {
			for _, pk := range session.Packets(name, "eth0", nil) {
				if f, ok := fragOf(pk.Data); ok && !pk.Outgoing && f.id == id {
					at = append(at, f)
					pod = name
					if f.dst != ip {
						beErr = append(beErr, fmt.Errorf("at %s: a fragment of %#04x to %s, not the backend %s:%s", name, id, f.dst, ip, fragString([]ipv4Frag{f})))
					}
				}
			}
		}
		offsets := func(x []ipv4Frag) []int {
			var o []int
			for _, f := range x {
				o = append(o, f.offset)
			}
			slices.Sort(o)
			return slices.Compact(o)
		}
		want := offsets(fs)
		if !e.Delivered {
			want = []int{0}
		}
		if got := offsets(at); !slices.Equal(got, want) {
			beErr = append(beErr, fmt.Errorf("datagram %#04x: offsets %v reached backend %q, want %v (sent:%s; at the backend:%s)",
				id, got, pod, want, fragString(fs), fragString(at)))
		}
	}
	checkWhat := ": every fragment reaches the backend pod with the backend's address"
	if !e.Delivered {
		checkWhat = ": only the first fragment reaches the backend pod (with the backend's address)"
	}
	s.Check(what+checkWhat, "incoming IPv4 fragments by IPv4 ID on the backend pods' eth0", errors.Join(beErr...))

	if e.Delivered {
		var rErr error
		ids := map[uint16]int{}
		for _, f := range replies {
			ids[f.id]++
			if f.src != dst.Addr() {
				rErr = errors.Join(rErr, fmt.Errorf("an answer fragment from %s, not the frontend %s:%s", f.src, dst.Addr(), fragString([]ipv4Frag{f})))
			}
		}
		whole := 0
		for _, n := range ids {
			if n >= 2 {
				whole++
			}
		}
		if whole < w.Datagrams {
			rErr = errors.Join(rErr, fmt.Errorf("%d fragmented answers reached %s/%s, want %d:%s", whole, from, clientIf, w.Datagrams, fragString(replies)))
		}
		s.Check(what+": every fragment of the answers reaches the client from the frontend address",
			"incoming IPv4 fragments on "+from+"/"+clientIf, rErr)
	}
	return nil
}

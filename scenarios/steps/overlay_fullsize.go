// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"podpath/internal/capture"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

// fullSizeEncapsulated checks, in tunnel mode, that the largest packet the route MTU
// allows (a DF ping of exactly route bytes) leaves src's node encapsulated by the
// datapath: on the node's uplink one outgoing frame to the tunnel port whose outer IPv4
// total length is route + the tunnel overhead (the underlay MTU when route is the
// tunnel MTU) and whose inner destination is the pod, and no plain frame to the pod.
// A datapath that hands exactly-MTU packets to the stack ("does not fit") still gets
// them delivered on a flat underlay, unencapsulated: only the wire tells.
func fullSizeEncapsulated(ctx context.Context, s *scenarios.Stage, label, src, dst string, route int) {
	oracle, _, err := stageOracle(s)
	if err != nil || oracle.Options().Tunnel == "" {
		return // native routing, or no oracle: nothing encapsulates
	}
	if paths, err := oracle.PodToPod(src, dst); err != nil || !paths.Encapsulated() {
		return // tunnel-mode cross-subnet: this pair is reached natively
	}
	overhead := oracle.Options().TunnelOverhead
	ipip := oracle.Options().Tunnel == "ipip"
	port := effectiveConfig(s).TunnelPort
	if port == 0 {
		port = overlays[oracle.Options().Tunnel].port
	}
	from, _ := s.T.Pod(src)
	to, _ := s.T.Pod(dst)
	n, err := s.T.Node(from.Node)
	if err != nil {
		return
	}
	up := internalIface(n)
	m, _ := s.T.Member(n.Name)
	looked := fmt.Sprintf("%s/%s outgoing frames during ping -M do -s %d %s", n.Name, up.Name, route-28, to.IP)
	title := fmt.Sprintf("%s: %s -> %s: a DF packet of exactly the route MTU (%d) leaves %s encapsulated by the datapath, outer length %d",
		label, src, dst, route, n.Name, route+overhead)
	session, err := capture.Start(filepath.Join(s.Artifacts, strings.ReplaceAll(label, " ", "-"), "full-size-"+src),
		capture.Point{Member: n.Name, Interface: up.Name, NsPath: m.NsPath})
	if err != nil {
		s.Check(title, looked, err)
		return
	}
	defer session.Stop()
	out, perr := probe.PingSized(ctx, s.T, src, to.IP, route-28, true)
	time.Sleep(100 * time.Millisecond)
	if err := session.Stop(); err != nil {
		s.Check(title, looked, err)
		return
	}
	var encap, plain, other int
	var lens []int
	for _, p := range session.Packets(n.Name, up.Name, nil) {
		if !p.Outgoing {
			continue
		}
		b := p.Data
		if len(b) < 34 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
			continue
		}
		ip := b[14:]
		ihl := int(ip[0]&0x0f) * 4
		if netip.AddrFrom4([4]byte(ip[16:20])) == to.IP && ip[9] == 1 {
			plain++
			continue
		}
		switch {
		case ipip && ip[9] == 4: // IPIP: the inner IPv4 header follows the outer one
		case !ipip && ip[9] == 17 && len(ip) >= ihl+8 && binary.BigEndian.Uint16(ip[ihl+2:ihl+4]) == port:
		default:
			continue
		}
		// Inner destination: somewhere after the tunnel header; match its bytes.
		if !strings.Contains(string(ip[ihl+8:]), string(to.IP.AsSlice())) {
			continue
		}
		if tot := int(binary.BigEndian.Uint16(ip[2:4])); tot == route+overhead {
			encap++
		} else {
			other++
			lens = append(lens, tot)
		}
	}
	var errs []error
	if perr != nil {
		errs = append(errs, fmt.Errorf("ping: %w: %s", perr, out))
	}
	if encap == 0 {
		what := fmt.Sprintf("UDP port %d", port)
		if ipip {
			what = "IPIP (protocol 4)"
		}
		errs = append(errs, fmt.Errorf("no encapsulated frame of outer length %d in %s (other tunnel frames to %s: lengths %v)",
			route+overhead, what, to.IP, lens))
	}
	if plain > 0 {
		errs = append(errs, fmt.Errorf("%d ICMP frame(s) to %s left unencapsulated", plain, to.IP))
	}
	s.Check(title, looked+" (pcap in artifacts)", errors.Join(errs...))
}

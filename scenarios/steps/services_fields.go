// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"

	"podpath/datapath/agent"
	"podpath/internal/capture"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

// NodePort SNAT source ports, as the datapath documents them
// (datapath/bpfconfig DefaultSNATPortMin/Max): above the kernel's ephemeral range.
const (
	snatPortMin = 61000
	snatPortMax = 65535
)

// hairpinSource is the source a pod's service flow to itself gets (Cilium's
// ipv4-service-loopback-address).
var hairpinSource = netip.MustParseAddr("169.254.42.1")

// checkNATFields reads what the translation wrote into the packets of a NodePort SNAT
// run: towards the backend (on its node's NIC) the destination is a configured
// backend address and port (DNAT), the source port one of the SNAT range, and the
// IPv4 and TCP checksums are right; towards the client (its interface) the reverse
// translation's checksums are right.
func checkNATFields(s *scenarios.Stage, session *capture.Session, svc agent.Service, entry topology.Node, client, clientIf, backNode, nic string) {
	backends := map[netip.AddrPort]bool{}
	for _, b := range svc.Backends {
		backends[netip.AddrPortFrom(b.IP, b.Port)] = true
	}
	// The client's port of each connection, by the SYN's sequence number (no
	// translation changes it): the SNAT port is a function of it.
	clientPort := map[uint32]netip.AddrPort{}
	for _, p := range session.Packets(client, clientIf, nil) {
		ip, ok := parseIPv4Frame(p.Data)
		if ok && p.Outgoing && ip.proto == 6 && len(ip.l4) >= 14 && ip.l4[13]&0x12 == 0x02 {
			sp, _ := ip.ports()
			clientPort[binary.BigEndian.Uint32(ip.l4[4:8])] = netip.AddrPortFrom(ip.src, sp)
		}
	}
	seed := effectiveConfig(s).MaglevHashSeed
	var fwd, csum []error
	seen, syns := 0, 0
	for _, p := range session.Packets(backNode, nic, nil) {
		ip, ok := parseIPv4Frame(p.Data)
		if !ok || ip.proto != 6 || ip.src != entry.InternalIP || p.GSO.Size != 0 {
			continue
		}
		sp, dp := ip.ports()
		if !backends[netip.AddrPortFrom(ip.dst, dp)] {
			continue
		}
		seen++
		if sp < snatPortMin || sp > snatPortMax {
			fwd = append(fwd, fmt.Errorf("SNAT source port %d outside [%d, %d]: %s", sp, snatPortMin, snatPortMax, p.Summary()))
		}
		if len(ip.l4) >= 14 && ip.l4[13]&0x12 == 0x02 {
			if from, ok := clientPort[binary.BigEndian.Uint32(ip.l4[4:8])]; ok {
				syns++
				fwd = append(fwd, snatPortErr(seed, from, netip.AddrPortFrom(ip.dst, dp), sp))
			}
		}
		csum = append(csum, ip.headerChecksumErr(), ip.l4ChecksumErr())
	}
	if seen > 0 && syns == 0 {
		fwd = append(fwd, fmt.Errorf("no SYN at %s matched one the client sent (by sequence number)", backNode))
	}
	if seen == 0 {
		fwd = append(fwd, fmt.Errorf("no SNATed packet from %s to a backend address and port on %s/%s", entry.InternalIP, backNode, nic))
	}
	s.Check(fmt.Sprintf("NodePort SNAT: packets reach %s with a configured backend as destination and a source port in [%d, %d], "+
		"each connection's the first free port from %d + lb_hash(client, backend) %% %d (%d packets, %d connections)",
		backNode, snatPortMin, snatPortMax, snatPortMin, snatPortMax-snatPortMin+1, seen, syns),
		fmt.Sprintf("%s/%s capture: destination address and port, TCP source port of packets from %s; SYNs matched to %s/%s's by sequence number",
			backNode, nic, entry.InternalIP, client, clientIf), firstErrs(fwd))
	nodePort := netip.AddrPortFrom(entry.InternalIP, svc.NodePort)
	replies := 0
	for _, p := range session.Packets(client, clientIf, nil) {
		ip, ok := parseIPv4Frame(p.Data)
		if !ok || p.Outgoing || ip.proto != 6 || p.GSO.Size != 0 {
			continue
		}
		if sp, _ := ip.ports(); netip.AddrPortFrom(ip.src, sp) != nodePort {
			continue
		}
		replies++
		csum = append(csum, ip.headerChecksumErr(), ip.l4ChecksumErr())
	}
	if replies == 0 {
		csum = append(csum, fmt.Errorf("no reply from %s seen on %s/%s", nodePort, client, clientIf))
	}
	s.Check(fmt.Sprintf("NodePort SNAT: IPv4 and TCP checksums are right after translation, both ways (%d to the backend, %d replies)", seen, replies),
		fmt.Sprintf("%s/%s and %s/%s captures: RFC 1071 sums of the IPv4 header and of TCP with its pseudo-header", backNode, nic, client, clientIf), firstErrs(csum))
}

// snatPortTries is how many ports after the first choice snat_alloc() tries
// (bpf/lib/nat.h SNAT_PORT_TRIES).
const snatPortTries = 32

// snatPortErr checks a connection's SNAT port against bpf/lib/nat.h's documented
// choice: the search starts at min + lb_hash(client, backend) % range and takes the
// first free port, so the port is that one or, when it is taken, one of the next.
func snatPortErr(seed [12]byte, client, backend netip.AddrPort, got uint16) error {
	rng := uint32(snatPortMax - snatPortMin + 1)
	first := lbHashSpec(seed, client, backend, 6) % rng
	off := (uint32(got) - snatPortMin + rng - first) % rng
	if uint32(got) < snatPortMin || off >= snatPortTries {
		return fmt.Errorf("connection %s -> %s got SNAT port %d, want %d (or one of the %d after it when taken)", client, backend, got, snatPortMin+first, snatPortTries-1)
	}
	return nil
}

// firstErrs joins the non-nil errors, at most five of them.
func firstErrs(errs []error) error {
	errs = slices.DeleteFunc(errs, func(e error) bool { return e == nil })
	if len(errs) > 5 {
		errs = append(errs[:5], fmt.Errorf("... and %d more", len(errs)-5))
	}
	return errors.Join(errs...)
}

// checkHairpin connects a backend pod of svc to the service's ClusterIP until a
// connection lands on the pod itself: the pod must receive it from 169.254.42.1 (not
// from its own address, which its stack would drop as a martian), and the exchange
// must complete with the ClusterIP as the source of the replies.
func checkHairpin(ctx context.Context, s *scenarios.Stage, svc agent.Service) error {
	t := s.T
	var pod topology.Pod
	var port uint16
	for _, b := range svc.Backends {
		if p, ok := podByIP(t, b.IP); ok {
			pod, port = p, b.Port
			break
		}
	}
	if pod.Name == "" {
		return fmt.Errorf("service %s: no backend pod", svc.Name)
	}
	mp, _ := t.Member(pod.Name)
	session, err := capture.Start(filepath.Join(s.Artifacts, "hairpin"),
		capture.Point{Member: pod.Name, Interface: "eth0", NsPath: mp.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	dst := netip.AddrPortFrom(svc.ClusterIP, svc.Port)
	const tries = 24
	var exErr []error
	for range tries {
		exErr = append(exErr, probe.ExchangeAddr(ctx, t, pod.Name, probe.TCP, dst))
	}
	if err := session.Stop(); err != nil {
		return err
	}
	var in, out, fromSelf, replyErr []error
	hairpins, replies := 0, 0
	for _, p := range session.Packets(pod.Name, "eth0", nil) {
		ip, ok := parseIPv4Frame(p.Data)
		if !ok || ip.proto != 6 {
			continue
		}
		sp, dp := ip.ports()
		switch {
		case !p.Outgoing && dp == port && ip.dst == pod.IP:
			if ip.src == hairpinSource {
				if len(ip.l4) > 13 && ip.l4[13]&0x12 == 0x02 { // a SYN: one per connection
					hairpins++
				}
				in = append(in, ip.headerChecksumErr(), ip.l4ChecksumErr())
			} else if ip.src == pod.IP {
				fromSelf = append(fromSelf, fmt.Errorf("%s received its own address as source: %s", pod.Name, p.Summary()))
			}
		case p.Outgoing && sp == port && ip.dst == hairpinSource:
			out = append(out, nil)
		case !p.Outgoing && netip.AddrPortFrom(ip.src, sp) == dst && ip.dst == pod.IP:
			replies++
			replyErr = append(replyErr, ip.headerChecksumErr(), ip.l4ChecksumErr())
		}
	}
	errs := append(append(fromSelf, in...), replyErr...)
	if hairpins == 0 {
		errs = append(errs, fmt.Errorf("none of %d connections from %s to %s reached %s itself from %s (%d replies)", tries, pod.Name, dst, pod.Name, hairpinSource, replies))
	} else if len(out) == 0 {
		errs = append(errs, fmt.Errorf("%s never answered %s", pod.Name, hairpinSource))
	}
	errs = append(errs, exErr...)
	s.Check(fmt.Sprintf("ClusterIP hairpin: %s's connections to %s that land on itself arrive from %s, replies come from the ClusterIP (%d of %d hairpinned)",
		pod.Name, dst, hairpinSource, hairpins, tries),
		fmt.Sprintf("%s/eth0 capture (pcap %s): source of connections to port %d, checksums; the echo of every exchange", pod.Name, session.PcapPath(pod.Name, "eth0"), port),
		firstErrs(errs))
	return nil
}

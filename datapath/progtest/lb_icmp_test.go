// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/testrun"
)

// icmpErr is an ICMP error from src to dst (TTL 64 unless given) quoting the first n
// bytes of the IPv4 packet in quoted, an Ethernet frame; rest is the 4 bytes after the
// checksum (the next-hop MTU for fragmentation needed).
type icmpErr struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	ttl            uint8
	typ, code      uint8
	rest           uint32
}

func (e icmpErr) frame(quoted []byte, n int) []byte {
	ttl := e.ttl
	if ttl == 0 {
		ttl = 64
	}
	return testrun.MustBuild(
		&layers.Ethernet{SrcMAC: e.srcMAC, DstMAC: e.dstMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: 0x4321, Protocol: layers.IPProtocolICMPv4,
			SrcIP: e.src.AsSlice(), DstIP: e.dst.AsSlice()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(e.typ, e.code), Id: uint16(e.rest >> 16), Seq: uint16(e.rest)},
		gopacket.Payload(quoted[14:14+n]))
}

func (e icmpErr) routed(src, dst net.HardwareAddr) icmpErr {
	e.srcMAC, e.dstMAC = src, dst
	if e.ttl == 0 {
		e.ttl = 64
	}
	e.ttl--
	return e
}

func (e icmpErr) from(a netip.Addr) icmpErr { e.src = a; return e }
func (e icmpErr) to(a netip.Addr) icmpErr   { e.dst = a; return e }

// PMTUD through a service: ICMP errors about translated packets are translated back
// (outer addresses and the quoted packet, checksums included) before they reach the
// client, so the client's socket finds the flow it knows.
func TestLBICMPErrors(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	e := newNodePortEnv(t, "icmp", cfg)
	f := e.f
	router := gw2IP
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	udpA := netip.AddrPortFrom(podAIP, 5000)
	backendU3 := netip.AddrPortFrom(podBIP, 5353)

	// The flows the errors are about.
	for _, o := range []struct {
		pkt func() []byte
		run func(pkt []byte) (testrun.Result, lbRecord)
	}{
		{func() []byte { return podAFrame(clientA, vipRemote).tcp(synOnly) },
			func(pkt []byte) (testrun.Result, lbRecord) { return e.run(t, e.d.FromContainer, f.lxc0, pkt) }},
		{func() []byte { return podAFrame(udpA, vipUDP).udp() },
			func(pkt []byte) (testrun.Result, lbRecord) { return e.run(t, e.d.FromContainer, f.lxc0, pkt) }},
		{func() []byte { return xFrame.to(npRemote).tcp(synOnly) },
			func(pkt []byte) (testrun.Result, lbRecord) { return e.run(t, e.d.FromNetdev, f.eth0, pkt) }},
	} {
		if res, r := o.run(o.pkt()); res.Verdict != testrun.Redirect || r.Action == "TRACE_LB_NONE" {
			t.Fatalf("opening a flow: %s %s", res.Verdict, r.String(t))
		}
	}

	// As the packets left node 1 (TTL 63), and as their clients sent them.
	leftA := frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: clientA, dst: backendR, ttl: 63}
	sentA := leftA.to(vipRemote)
	leftU := frame{srcMAC: lxcBMAC, dstMAC: podBMAC, src: udpA, dst: backendU3, ttl: 63}
	sentU := leftU.to(vipUDP)
	leftX := frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: sp, dst: backendR, ttl: 63}
	sentX := leftX.from(clientX).to(npRemote)

	fragNeeded := icmpErr{srcMAC: remoteMAC, dstMAC: eth0MAC, src: router, dst: podAIP, typ: 3, code: 4, rest: 1400}
	toA := fragNeeded.routed(lxcAMAC, podAMAC)
	portUnreach := icmpErr{srcMAC: podBMAC, dstMAC: lxcBMAC, src: podBIP, dst: podAIP, typ: 3, code: 3}
	const tcpQuote, udpQuote = 20 + 20 + 8, 20 + 8 + 8 // headers and 8 bytes of data: checksums quoted
	icmpRec := func(backend uint32, src, dst netip.Addr) lbWant {
		return lbWant{action: "TRACE_LB_REVNAT", ct: "TRACE_CT_REPLY", backend: backend,
			origSrc: netip.AddrPortFrom(src, 0), origDst: netip.AddrPortFrom(dst, 0)}
	}
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "fragmentation needed from a router, ClusterIP flow to node 2: quoted destination back to the ClusterIP", dev: f.eth0,
			in:  fragNeeded.frame(leftA.tcp(ackOnly), tcpQuote),
			out: toA.frame(sentA.tcp(ackOnly), tcpQuote), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_NETDEV", podAIfidx), lb: icmpRec(2, router, podAIP)},
		{name: "time exceeded, quoting 8 bytes only (no checksum quoted)", dev: f.eth0,
			in:      icmpErr{srcMAC: remoteMAC, dstMAC: eth0MAC, src: router, dst: podAIP, typ: 11}.frame(leftA.tcp(ackOnly), 28),
			out:     icmpErr{srcMAC: lxcAMAC, dstMAC: podAMAC, src: router, dst: podAIP, typ: 11, ttl: 63}.frame(sentA.tcp(ackOnly), 28),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", podAIfidx), lb: icmpRec(2, router, podAIP)},
		{name: "fragmentation needed about a NodePort SNAT flow: quoted source and destination, outer destination, to the client", dev: f.eth0,
			in:      fragNeeded.to(hostIP).frame(leftX.tcp(ackOnly), tcpQuote),
			out:     fragNeeded.to(clientX.Addr()).routed(eth0MAC, gw2MAC).frame(sentX.tcp(ackOnly), tcpQuote),
			verdict: testrun.Redirect, rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)},
			lb: lbWant{action: "TRACE_LB_REV_SNAT", ct: "TRACE_CT_REPLY", backend: 2,
				origSrc: netip.AddrPortFrom(router, 0), origDst: netip.AddrPortFrom(hostIP, 0)}},
		{name: "an error about no tracked flow is untouched", dev: f.eth0,
			in:  fragNeeded.frame(leftA.to(netip.MustParseAddrPort("10.244.2.99:9")).tcp(ackOnly), tcpQuote),
			out: toA.frame(leftA.to(netip.MustParseAddrPort("10.244.2.99:9")).tcp(ackOnly), tcpQuote), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_NETDEV", podAIfidx)},
		{name: "an error quoting an IPv4 header with options is untouched", dev: f.eth0,
			in:      withOptionsIHL(fragNeeded.frame(leftA.tcp(ackOnly), tcpQuote)),
			out:     withOptionsIHL(toA.frame(leftA.tcp(ackOnly), tcpQuote)),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", podAIfidx)},
	})
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "port unreachable from the backend itself: outer source and quoted destination back to the ClusterIP", dev: f.lxc0,
			in:  portUnreach.frame(leftU.udp(), udpQuote),
			out: portUnreach.from(vipUDP.Addr()).routed(lxcAMAC, podAMAC).frame(sentU.udp(), udpQuote), verdict: testrun.Redirect,
			rec: redirectPeer("OBS_FROM_CONTAINER", podAIfidx), lb: icmpRec(3, podBIP, podAIP)},
	})
	if list := ctEntries(t, e.d.LB); len(list) != 6 {
		t.Errorf("ICMP errors must not create conntrack entries: %d entries", len(list))
	}
}

// withOptionsIHL sets IHL 6 in the quoted IPv4 header of an ICMP error frame and fixes
// the ICMP checksum.
func withOptionsIHL(pkt []byte) []byte {
	return corrupt(pkt, func(b []byte) []byte {
		b[14+20+8] = 0x46
		b[14+20+2], b[14+20+3] = 0, 0
		sum := icmpChecksum(b[14+20:])
		b[14+20+2], b[14+20+3] = byte(sum>>8), byte(sum)
		return b
	})
}

// icmpChecksum is the Internet checksum of b (its checksum field zeroed by the caller).
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

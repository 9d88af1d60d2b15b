// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/bpfobj"
	"podpath/datapath/testrun"
)

// fragmentsOf builds f's UDP datagram with a 40-byte payload and splits it as a
// sender's kernel would: the first fragment (MF, offset 0) holds the UDP header and 16
// payload bytes, the later one (offset 24 bytes) the other 24. DF is clear; the UDP
// checksum, over the whole datagram, rides in the first fragment only.
func fragmentsOf(f frame) (first, later []byte) {
	payload := []byte("podpath fragments: later ones have no L4")
	ip := f.ip(layers.IPProtocolUDP)
	ip.Flags = 0
	full := testrun.MustBuild(f.eth(), ip,
		&layers.UDP{SrcPort: layers.UDPPort(f.src.Port()), DstPort: layers.UDPPort(f.dst.Port())},
		gopacket.Payload(payload[:40]))
	const hdr, split = 14 + 20, 24
	mk := func(body []byte, flagsOffset uint16) []byte {
		b := append(append([]byte(nil), full[:hdr]...), body...)
		binary.BigEndian.PutUint16(b[14+2:], uint16(20+len(body)))
		binary.BigEndian.PutUint16(b[14+6:], flagsOffset)
		sum := ipChecksum(b[14:34])
		b[24], b[25] = byte(sum>>8), byte(sum)
		return b
	}
	return mk(full[hdr:hdr+split], 0x2000), mk(full[hdr+split:], split/8)
}

// withID is pkt (an IPv4 frame) with another IPv4 identification.
func withID(pkt []byte, id uint16) []byte {
	return corrupt(pkt, func(b []byte) []byte {
		binary.BigEndian.PutUint16(b[14+4:], id)
		sum := ipChecksum(b[14:34])
		b[24], b[25] = byte(sum>>8), byte(sum)
		return b
	})
}

// TestLBFragments: enable-ipv4-fragment-tracking. A UDP datagram to a ClusterIP in
// two fragments: the first is translated and its ports remembered (lb_frag), the
// later one, which has no UDP header, gets the same backend address (established
// flow); the backend's fragmented answer is translated back the same way. A later
// fragment whose first was never seen is dropped, named. With tracking off the later
// fragment passes untranslated (the ClusterIP stays its destination).
func TestLBFragments(t *testing.T) {
	e := newLBEnv(t, "frag", lbConfig(t, lbOpts{FragTracking: true}))
	e.services(t)
	f := e.f
	client := netip.AddrPortFrom(podAIP, 5100)
	backend := netip.AddrPortFrom(podBIP, 5353)
	first, later := fragmentsOf(podAFrame(client, vipUDP))
	firstB, laterB := fragmentsOf(podAFrame(client, backend).routed(lxcBMAC, podBMAC))
	rFirst, rLater := fragmentsOf(podBFrame(backend, client))
	rFirstA, rLaterA := fragmentsOf(frame{srcMAC: lxcAMAC, dstMAC: podAMAC, src: vipUDP, dst: client, ttl: 63})
	peerB := redirectPeer("OBS_FROM_CONTAINER", lxcBIfindex)
	peerA := redirectPeer("OBS_FROM_CONTAINER", podAIfidx)
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "first fragment: DNAT to the backend, UDP checksum over the datagram updated", dev: f.lxc0,
			in: first, out: firstB, verdict: testrun.Redirect, rec: peerB, lb: dnat("TRACE_CT_NEW", 3, client, vipUDP)},
		{name: "later fragment: the first one's ports, so the same backend address", dev: f.lxc0,
			in: later, out: laterB, verdict: testrun.Redirect, rec: peerB, lb: dnat("TRACE_CT_ESTABLISHED", 3, client, vipUDP)},
		{name: "the backend's first answer fragment: reverse NAT", dev: f.lxc0,
			in: rFirst, out: rFirstA, verdict: testrun.Redirect, rec: peerA, lb: revnat(3, backend, client)},
		{name: "its later fragment: reverse NAT too, source the ClusterIP", dev: f.lxc0,
			in: rLater, out: rLaterA, verdict: testrun.Redirect, rec: peerA, lb: revnat(3, backend, client)},
		{name: "a later fragment whose first was never seen: dropped, named", dev: f.lxc0,
			in: withID(later, 0x4321), verdict: testrun.Shot,
			rec: want{obs: "OBS_FROM_CONTAINER", verdict: "VERDICT_DROP", drop: "DROP_FRAG_NOT_FOUND"}},
	})

	off := newLBEnv(t, "fragoff", lbConfig(t, lbOpts{}))
	off.services(t)
	off.runCases(t, off.d.FromContainer, []lbCase{
		{name: "tracking off: the first fragment is translated", dev: off.f.lxc0,
			in: first, out: firstB, verdict: testrun.Redirect, rec: peerB, lb: dnat("TRACE_CT_NEW", 3, client, vipUDP)},
		{name: "tracking off: the later fragment keeps the ClusterIP", dev: off.f.lxc0,
			in: later, verdict: testrun.Pass, rec: fromContainer("VERDICT_PASS", "PASS_OUTSIDE_NATIVE_CIDR")},
	})
}

// BenchmarkLBFragments: what fragment tracking costs from_container per packet, same
// run, same UDP flow to vipUDP (pod B, redirect_peer), established: an unfragmented
// datagram (the baseline), a first fragment (its ports recorded in lb_frag) and a
// later fragment (its ports looked up, addresses rewritten only).
func BenchmarkLBFragments(b *testing.B) {
	cfg := lbConfig(b, lbOpts{FragTracking: true})
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	e := newLBEnv(b, "bench-frag", cfg)
	e.services(b)
	client := netip.AddrPortFrom(podAIP, 5100)
	first, later := fragmentsOf(podAFrame(client, vipUDP))
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"unfragmented/established", podAFrame(client, vipUDP).udp()},
		{"first-fragment/established", first},
		{"later-fragment/established", later},
	} {
		b.Run(bc.name, func(b *testing.B) { benchRedirect(b, e.f.path, e.d.FromContainer, bc.pkt, nil) })
	}
}

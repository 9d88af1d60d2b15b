// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// withDSROption is pkt (Ethernet + IPv4) with the 8-byte DSR IPv4 option for svc
// inserted right after the 20-byte base header: IHL + 2, total length + 8, header
// checksum recomputed. Written here independently of the BPF code it checks.
func withDSROption(pkt []byte, svc netip.AddrPort) []byte {
	opt := []byte{0x9a, 8, byte(svc.Port() >> 8), byte(svc.Port())}
	opt = append(opt, svc.Addr().AsSlice()...)
	out := append(append(append([]byte{}, pkt[:34]...), opt...), pkt[34:]...)
	ip := out[14:]
	ip[0] += 2
	binary.BigEndian.PutUint16(ip[2:], binary.BigEndian.Uint16(ip[2:])+8)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip[:28]))
	return out
}

// fragNeededFor is the ICMP fragmentation-needed answer to pkt as it arrived on
// node 1's eth0: MACs swapped, from pkt's destination to its source, next-hop MTU
// mtu, quoting pkt's IPv4 header and 8 bytes.
func fragNeededFor(pkt []byte, mtu uint16) []byte {
	in := gopacket.NewPacket(pkt, layers.LayerTypeEthernet, gopacket.Default)
	eth := in.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	ip := in.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	return testrun.MustBuild(
		&layers.Ethernet{SrcMAC: eth.DstMAC, DstMAC: eth.SrcMAC, EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TOS: 0xc0, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: ip.DstIP, DstIP: ip.SrcIP},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(3, 4), Seq: mtu},
		gopacket.Payload(pkt[14:42]))
}

// bigUDP is f as a UDP datagram of exactly size bytes of IPv4, DF set.
func (f frame) bigUDP(size int) []byte {
	return testrun.MustBuild(f.eth(), f.ip(layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(f.src.Port()), DstPort: layers.UDPPort(f.dst.Port())},
		gopacket.Payload(make([]byte, size-28)))
}

func dnatDSR(ct string, backend uint32, src, dst netip.AddrPort) lbWant {
	return lbWant{action: "TRACE_LB_DNAT_DSR", ct: ct, backend: backend, origSrc: src, origDst: dst}
}

// The node that balances a DSR flow (native routing, option dispatch): the client's
// source stays, the SYN carries the option, later packets do not; every UDP datagram
// carries it; a DF packet the option makes too big is answered with frag-needed.
func TestLBDSRFixtures(t *testing.T) {
	cfg := lbConfig(t, lbOpts{Mode: config.LBModeDSR})
	e := newNodePortEnv(t, "dsr", cfg)
	l, f := e.d.LB, e.f
	fwd := want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)}
	toNode2 := func(src, dst netip.AddrPort) frame {
		return frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: src, dst: dst, ttl: 63}
	}
	dsrFlags := maps.CTNodePort | maps.CTDSR
	noReplyEntry := func(t *testing.T, backend, client netip.AddrPort) {
		if e, ok := ctFind(t, l, "ct_tcp", backend, client, maps.CTReply); ok {
			t.Errorf("DSR flow with a reply entry on the balancing node: %s", e)
		}
	}
	big := xFrame.to(npUDP).bigUDP(1500)

	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "nodeport syn, backend on node 2: DNAT, client kept, the DSR option added", dev: f.eth0,
			in:  xFrame.to(npRemote).tcp(synOnly),
			out: withDSROption(toNode2(clientX, backendR).tcp(synOnly), npRemote), verdict: testrun.Redirect,
			rec: fwd, lb: dnatDSR("TRACE_CT_NEW", 2, clientX, npRemote),
			after: func(t *testing.T) {
				ctExpect(t, l, "ct_tcp", clientX, npRemote, maps.CTService, maps.CTSynSeen|dsrFlags, 60, 2)
				noReplyEntry(t, backendR, clientX)
			}},
		{name: "the client's ack: the same backend, no option", dev: f.eth0,
			in: xFrame.to(npRemote).tcp(ackOnly), out: toNode2(clientX, backendR).tcp(ackOnly), verdict: testrun.Redirect,
			rec: fwd, lb: dnatDSR("TRACE_CT_ESTABLISHED", 2, clientX, npRemote),
			after: func(t *testing.T) {
				ctExpect(t, l, "ct_tcp", clientX, npRemote, maps.CTService, maps.CTSynSeen|maps.CTEstablished|dsrFlags, 21600, 2)
				noReplyEntry(t, backendR, clientX)
			}},
		{name: "external IP syn: the option names the external IP", dev: f.eth0,
			in:  xFrame.from(clientY).to(extIP).tcp(synOnly),
			out: withDSROption(toNode2(clientY, backendR).tcp(synOnly), extIP), verdict: testrun.Redirect,
			rec: fwd, lb: dnatDSR("TRACE_CT_NEW", 2, clientY, extIP)},
		{name: "udp: every datagram carries the option", dev: f.eth0,
			in:  xFrame.to(npUDP).udp(),
			out: withDSROption(toNode2(clientX, backendU).udp(), npUDP), verdict: testrun.Redirect,
			rec: fwd, lb: dnatDSR("TRACE_CT_NEW", 6, clientX, npUDP)},
		{name: "udp again: established, still the option", dev: f.eth0,
			in:  xFrame.to(npUDP).udp(),
			out: withDSROption(toNode2(clientX, backendU).udp(), npUDP), verdict: testrun.Redirect,
			rec: fwd, lb: dnatDSR("TRACE_CT_ESTABLISHED", 6, clientX, npUDP)},
		{name: "a 1492-byte DF datagram still fits with the option", dev: f.eth0,
			in:  xFrame.to(npUDP).bigUDP(1492),
			out: withDSROption(toNode2(clientX, backendU).bigUDP(1492), npUDP), verdict: testrun.Redirect,
			rec: fwd, lb: dnatDSR("TRACE_CT_ESTABLISHED", 6, clientX, npUDP)},
		{name: "a 1500-byte DF datagram does not: ICMP frag-needed 1492 back out of eth0", dev: f.eth0,
			in: big, out: fragNeededFor(big, 1492), verdict: testrun.Redirect,
			rec: fwd, lb: lbWant{action: "TRACE_LB_FRAG_NEEDED", ct: "TRACE_CT_ESTABLISHED", backend: 6, origSrc: clientX, origDst: npUDP}},
		{name: "nodeport, backend on this node: plain DNAT, no DSR", dev: f.eth0,
			in: xFrame.to(npLocal).tcp(synOnly), out: xFrame.to(backendB).routed(lxcBMAC, podBMAC).tcp(synOnly),
			verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex), lb: dnat("TRACE_CT_NEW", 1, clientX, npLocal),
			after: func(t *testing.T) {
				ctExpect(t, l, "ct_tcp", backendB, clientX, maps.CTReply, maps.CTSynSeen|maps.CTNodePort, 60, 1)
			}},
	})
}

// Hybrid: TCP flows get DSR, UDP flows SNAT, on the same node.
func TestLBHybridFixtures(t *testing.T) {
	cfg := lbConfig(t, lbOpts{Mode: config.LBModeHybrid})
	e := newNodePortEnv(t, "hybrid", cfg)
	f := e.f
	fwd := want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)}
	toNode2 := func(src, dst netip.AddrPort) frame {
		return frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: src, dst: dst, ttl: 63}
	}
	snatted := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendU, 17))
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "tcp: DSR, the option on the syn", dev: f.eth0,
			in:  xFrame.to(npRemote).tcp(synOnly),
			out: withDSROption(toNode2(clientX, backendR).tcp(synOnly), npRemote), verdict: testrun.Redirect,
			rec: fwd, lb: dnatDSR("TRACE_CT_NEW", 2, clientX, npRemote)},
		{name: "udp: SNAT, no option", dev: f.eth0,
			in: xFrame.to(npUDP).udp(), out: toNode2(snatted, backendU).udp(), verdict: testrun.Redirect,
			rec: fwd, lb: dnatSNAT("TRACE_CT_NEW", 6, clientX, npUDP)},
	})
}

// The backend's node: a request carrying the option is recorded and delivered (the
// option stays: Linux ignores unknown options); the backend's replies leave with the
// service as source, forwarded straight to the client; ICMP errors the backend sends
// about the flow get the service too. In SNAT mode the option is not trusted.
func TestLBDSRBackendNode(t *testing.T) {
	svc := netip.MustParseAddrPort("192.168.50.9:30080")  // another node's NodePort
	svcU := netip.MustParseAddrPort("192.168.50.9:30053") // and its UDP one
	fromLB := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: clientX, dst: backendB, ttl: 63}
	toB := frame{srcMAC: lxcBMAC, dstMAC: podBMAC, src: clientX, dst: backendB, ttl: 62}
	learned := lbWant{action: "TRACE_LB_DSR_LEARNED", ct: "TRACE_CT_NEW", origSrc: clientX, origDst: svc}

	t.Run("dsr", func(t *testing.T) {
		cfg := lbConfig(t, lbOpts{Mode: config.LBModeDSR})
		e := newNodePortEnv(t, "dsr-be", cfg)
		l, f := e.d.LB, e.f
		e.runCases(t, e.d.FromNetdev, []lbCase{
			{name: "syn with the option: recorded, the option removed, redirect_peer into pod B", dev: f.eth0,
				in: withDSROption(fromLB.tcp(synOnly), svc), out: toB.tcp(synOnly),
				verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex), lb: learned,
				after: func(t *testing.T) {
					r := ctExpect(t, l, "ct_tcp", backendB, clientX, maps.CTReply, maps.CTSynSeen|maps.CTNodePort|maps.CTDSR, 60, 0)
					if r.NAT != svc {
						t.Errorf("reply entry names service %s, want %s", r.NAT, svc)
					}
				}},
			{name: "the client's ack without the option: delivered untouched", dev: f.eth0,
				in: fromLB.tcp(ackOnly), out: toB.tcp(ackOnly),
				verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex)},
			{name: "udp with the option: recorded, delivered without it", dev: f.eth0,
				in: withDSROption(fromLB.udp(), svcU), out: toB.udp(),
				verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex),
				lb: lbWant{action: "TRACE_LB_DSR_LEARNED", ct: "TRACE_CT_NEW", origSrc: clientX, origDst: svcU}},
		})
		e.runCases(t, e.d.FromContainer, []lbCase{
			{name: "pod B's syn-ack: source = the service, FIB-forwarded to the client", dev: f.lxc0,
				in:      podBFrame(backendB, clientX).tcp(synAck),
				out:     frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: svc, dst: clientX, ttl: 63}.tcp(synAck),
				verdict: testrun.Redirect, rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0),
				lb: lbWant{action: "TRACE_LB_REV_DSR", ct: "TRACE_CT_REPLY", origSrc: backendB, origDst: clientX}},
			{name: "port unreachable from pod B about the udp flow: outer source and quoted destination = the service", dev: f.lxc0,
				in: icmpErr{srcMAC: podBMAC, dstMAC: lxcBMAC, src: podBIP, dst: clientX.Addr(), typ: 3, code: 3}.
					frame(toB.udp(), 20+8+8),
				out: icmpErr{srcMAC: eth0MAC, dstMAC: gw2MAC, src: svcU.Addr(), dst: clientX.Addr(), typ: 3, code: 3, ttl: 63}.
					frame(toB.to(svcU).udp(), 20+8+8),
				verdict: testrun.Redirect, rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0),
				lb: lbWant{action: "TRACE_LB_REVNAT", ct: "TRACE_CT_REPLY",
					origSrc: netip.AddrPortFrom(podBIP, 0), origDst: netip.AddrPortFrom(clientX.Addr(), 0)}},
		})
	})
	t.Run("snat mode ignores the option", func(t *testing.T) {
		cfg := lbConfig(t, lbOpts{})
		e := newNodePortEnv(t, "dsr-snat", cfg)
		e.runCases(t, e.d.FromNetdev, []lbCase{
			{name: "syn with the option: delivered, nothing recorded", dev: e.f.eth0,
				in: withDSROption(fromLB.tcp(synOnly), svc), out: withDSROption(toB.tcp(synOnly), svc),
				verdict: testrun.Redirect, rec: redirectPeer("OBS_FROM_NETDEV", lxcBIfindex),
				after: func(t *testing.T) {
					if r, ok := ctFind(t, e.d.LB, "ct_tcp", backendB, clientX, maps.CTReply); ok {
						t.Errorf("SNAT mode recorded a DSR flow: %s", r)
					}
				}},
		})
	})
}

// dsrGeneveOpt is Cilium's Geneve DSR option for svc.
func dsrGeneveOpt(svc netip.AddrPort) []byte {
	data := append(svc.Addr().AsSlice(), byte(svc.Port()>>8), byte(svc.Port()), 0, 0)
	return geneveOpt(0x014B, 0x01, data)
}

// DSR in tunnel mode (Geneve dispatch): the balancing node encapsulates the request
// with the DSR option on the syn only; the backend's node reads it while
// decapsulating; a DF packet larger than the tunnel MTU (less the option when it
// rides along) gets frag-needed.
func TestLBDSRGeneve(t *testing.T) {
	f := setupNamedFibNS(t, lbName("dsr-gnv"))
	addRoute(t, testrun.NetlinkAt(t, f.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: f.eth0})
	cfg := tunnelConfig(t, config.TunnelGeneve, 0)
	cfg = withLB(t, cfg, lbOpts{Mode: config.LBModeDSR, MaglevTableSize: testM})
	e := newLBEnvIn(t, f, cfg, func(m *maps.Maps) { programOverlayMaps(t, m) })
	e.services(t)
	e.nodePorts(t)
	// The client is outside the cluster: the VNI says world (2), not the node (SNAT).
	const worldID = 2
	encapRec := want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0),
		tunnel: "TRACE_ENCAP_GENEVE", identity: worldID, endpoint: node2IP}

	for _, c := range []struct {
		name  string
		flags tcpFlags
		ct    string
		opt   bool
	}{
		{"syn: encapsulated with the DSR option", synOnly, "TRACE_CT_NEW", true},
		{"ack: encapsulated without it", ackOnly, "TRACE_CT_ESTABLISHED", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, r := e.run(t, e.d.FromNetdev, f.eth0, xFrame.to(npRemote).tcp(c.flags))
			if res.Verdict != testrun.Redirect || len(res.Out) < 50 {
				t.Fatalf("verdict %s, %d bytes (%s)", res.Verdict, len(res.Out), r.String(t))
			}
			checkRecord(t, r, encapRec, uint32(f.eth0))
			checkLB(t, r, dnatDSR(c.ct, 2, clientX, npRemote))
			o := encapOuter(eth0MAC, gw2MAC, node2IP, binary.BigEndian.Uint16(res.Out[34:36]))
			o.vni = worldID
			if c.opt {
				o.opts = dsrGeneveOpt(npRemote)
			}
			inner := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: clientX, dst: backendR, ttl: 63}.tcp(c.flags)
			if want := o.wrap(inner); string(want) != string(res.Out) {
				t.Errorf("encapsulated packet differs:\n%s", testrun.Diff(want, res.Out))
			}
		})
	}

	tooBig := xFrame.to(npRemote).from(netip.AddrPortFrom(clientX.Addr(), 50007))
	svc := netip.MustParseAddrPort("192.168.50.9:30080")
	e.runCases(t, e.d.FromNetdev, []lbCase{
		{name: "syn of 1439 bytes: with the 12-byte option over the tunnel MTU 1450: frag-needed 1438", dev: f.eth0,
			in:  tcpOfSize(tooBig, synOnly, 1439),
			out: fragNeededFor(tcpOfSize(tooBig, synOnly, 1439), uint16(fixtureMTU-12)), verdict: testrun.Redirect,
			rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)},
			lb:  lbWant{action: "TRACE_LB_FRAG_NEEDED", ct: "TRACE_CT_NEW", backend: 2, origSrc: tooBig.src, origDst: npRemote}},
		{name: "a 1451-byte data packet: frag-needed 1450", dev: f.eth0,
			in:  tcpOfSize(tooBig, ackOnly, 1451),
			out: fragNeededFor(tcpOfSize(tooBig, ackOnly, 1451), uint16(fixtureMTU)), verdict: testrun.Redirect,
			rec: want{obs: "OBS_FROM_NETDEV", verdict: "VERDICT_REDIRECT", target: uint32(f.eth0)},
			lb:  lbWant{action: "TRACE_LB_FRAG_NEEDED", ct: "TRACE_CT_ESTABLISHED", backend: 2, origSrc: tooBig.src, origDst: npRemote}},
		{name: "the backend's node: Geneve with the DSR option, decapsulated, recorded, into pod B", dev: f.eth0,
			in: func() []byte {
				o := fromNode2()
				o.opts = dsrGeneveOpt(svc)
				return o.wrap(frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: clientX, dst: backendB, ttl: 63}.tcp(synOnly))
			}(),
			out:     frame{srcMAC: lxcBMAC, dstMAC: podBMAC, src: clientX, dst: backendB, ttl: 62}.tcp(synOnly),
			verdict: testrun.Redirect, rec: decapRecord("VERDICT_REDIRECT_PEER", "", "", lxcBIfindex, node2IP, remoteIdentity),
			lb: lbWant{action: "TRACE_LB_DSR_LEARNED", ct: "TRACE_CT_NEW", origSrc: clientX, origDst: svc},
			after: func(t *testing.T) {
				r := ctExpect(t, e.d.LB, "ct_tcp", backendB, clientX, maps.CTReply, maps.CTSynSeen|maps.CTNodePort|maps.CTDSR, 60, 0)
				if r.NAT != svc {
					t.Errorf("reply entry names service %s, want %s", r.NAT, svc)
				}
			}},
	})
	e.runCases(t, e.d.FromContainer, []lbCase{
		{name: "pod B's syn-ack: source = the service, natively to the client (not into the tunnel)", dev: f.lxc0,
			in:      podBFrame(backendB, clientX).tcp(synAck),
			out:     frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: svc, dst: clientX, ttl: 63}.tcp(synAck),
			verdict: testrun.Redirect, rec: redirectedFromContainer("VERDICT_REDIRECT", f.eth0),
			lb: lbWant{action: "TRACE_LB_REV_DSR", ct: "TRACE_CT_REPLY", origSrc: backendB, origDst: clientX}},
	})
}

// tcpOfSize is f as a TCP segment with flags of exactly size bytes of IPv4, DF set.
func tcpOfSize(f frame, fl tcpFlags, size int) []byte {
	return testrun.MustBuild(f.eth(), f.ip(layers.IPProtocolTCP),
		&layers.TCP{SrcPort: layers.TCPPort(f.src.Port()), DstPort: layers.TCPPort(f.dst.Port()),
			SYN: fl.syn, ACK: fl.ack, Window: 64240, Seq: 1, Ack: 7},
		gopacket.Payload(make([]byte, size-40)))
}

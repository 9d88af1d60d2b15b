// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// XDP acceleration (bpf/bpf_xdp.c) against from_netdev: every packet goes through
// from_netdev on one node and through the XDP program on a second, identical node.
// What XDP finishes (XDP_TX, a drop) must be byte for byte what tc forwards (MACs,
// TTL, options, checksums) with the same load-balancer decision, traced at OBS_XDP;
// what XDP hands over (XDP_PASS) must be untouched and untraced, and from_netdev on
// the XDP node, which then sees it, must send the same bytes as on the tc node, with
// whatever state XDP left in the shared maps. Each step names the verdict XDP must
// give, so a program that passes everything fails too.

type xdpStep struct {
	name string
	in   []byte
	xdp  testrun.Verdict // XDPTx, XDPPass or XDPDrop
}

// xdpPair is a tc node and an XDP node with the same configuration and services.
type xdpPair struct {
	tc, xdp *lbEnv
	// sportMasked: Geneve's outer UDP source port comes from the kernel's flow hash at
	// tc, from bpf_xdp's own hash at XDP (ctx.h); bytes 34-35 are not compared.
	sportMasked bool
}

func newXDPPair(t *testing.T, suffix string, cfg bpfconfig.Config) *xdpPair {
	t.Helper()
	return &xdpPair{tc: newNodePortEnv(t, suffix+"-tc", cfg), xdp: newNodePortEnv(t, suffix+"-x", cfg)}
}

func (p *xdpPair) runXDP(t *testing.T, in []byte) (testrun.Result, []lbRecord) {
	t.Helper()
	e := p.xdp
	res := runInNS(t, e.f.path, e.d.XDP, in, &testrun.XdpContext{DataEnd: uint32(len(in)), IngressIfindex: uint32(e.f.eth0)})
	return res, e.drain(t)
}

func (p *xdpPair) sameBytes(want, got []byte) bool {
	if p.sportMasked && len(want) > 36 && len(got) > 36 {
		want, got = bytes.Clone(want), bytes.Clone(got)
		want[34], want[35], got[34], got[35] = 0, 0, 0, 0
	}
	return bytes.Equal(want, got)
}

func (p *xdpPair) steps(t *testing.T, steps []xdpStep) {
	t.Helper()
	n := names(t)
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			resT, recT := p.tc.run(t, p.tc.d.FromNetdev, p.tc.f.eth0, s.in)
			resX, recsX := p.runXDP(t, s.in)
			if resX.Verdict != s.xdp {
				t.Fatalf("XDP verdict %s, want %s (tc: %s, %s)", testrun.XDPVerdictString(resX.Verdict),
					testrun.XDPVerdictString(s.xdp), resT.Verdict, recT.String(t))
			}
			switch s.xdp {
			case testrun.XDPTx:
				if len(recsX) != 1 {
					t.Fatalf("XDP left %d trace records, want 1", len(recsX))
				}
				r := recsX[0]
				if n.ObsPoint(r.ObsPoint) != "OBS_XDP" || n.Verdict(r.Verdict) != "VERDICT_REDIRECT" || r.TargetIfindex != uint32(p.xdp.f.eth0) {
					t.Errorf("XDP record: %s", r.String(t))
				}
				if resT.Verdict != testrun.Redirect {
					t.Errorf("tc did not forward it (%s, %s): XDP must not either", resT.Verdict, recT.String(t))
				}
				got := lbWant{action: r.Action, ct: r.CT, backend: r.BackendID, origSrc: r.OrigSrc, origDst: r.OrigDst}
				want := lbWant{action: recT.Action, ct: recT.CT, backend: recT.BackendID, origSrc: recT.OrigSrc, origDst: recT.OrigDst}
				if got != want {
					t.Errorf("load-balancer decision: XDP %+v, tc %+v", got, want)
				}
				if !p.sameBytes(resT.Out, resX.Out) {
					t.Errorf("XDP's packet differs from tc's:\n%s", testrun.Diff(resT.Out, resX.Out))
				}
			case testrun.XDPDrop:
				if len(recsX) != 1 || n.ObsPoint(recsX[0].ObsPoint) != "OBS_XDP" {
					t.Fatalf("XDP drop: %d records, want 1 at OBS_XDP", len(recsX))
				}
				if resT.Verdict != testrun.Shot || n.DropReason(recsX[0].DropReason) != n.DropReason(recT.DropReason) {
					t.Errorf("XDP dropped with %s, tc: %s %s", n.DropReason(recsX[0].DropReason), resT.Verdict, recT.String(t))
				}
			case testrun.XDPPass:
				if len(recsX) != 0 {
					t.Errorf("XDP_PASS traced %d records (%s): hand-overs are tc's to trace", len(recsX), recsX[0].String(t))
				}
				if !bytes.Equal(resX.Out, s.in) {
					t.Fatalf("XDP_PASS changed the packet:\n%s", testrun.Diff(s.in, resX.Out))
				}
				// tc continues on the XDP node, with what XDP left in the maps.
				resC, recC := p.xdp.run(t, p.xdp.d.FromNetdev, p.xdp.f.eth0, s.in)
				if resC.Verdict != resT.Verdict || (resT.Verdict != testrun.Shot && !p.sameBytes(resT.Out, resC.Out)) {
					t.Errorf("after XDP_PASS, from_netdev: %s %s; on the tc node: %s %s\n%s", resC.Verdict, recC.String(t),
						resT.Verdict, recT.String(t), testrun.Diff(resT.Out, resC.Out))
				}
			}
		})
	}
}

func TestXDPNodePortSNAT(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	p := newXDPPair(t, "xsnat", cfg)
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	spU := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendU, 17))
	replyFromR := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: sp}
	p.steps(t, []xdpStep{
		{"nodeport syn, backend on node 2: DNAT+SNAT at XDP", xFrame.to(npRemote).tcp(synOnly), testrun.XDPTx},
		{"the backend's syn-ack: reverse SNAT at XDP", replyFromR.tcp(synAck), testrun.XDPTx},
		{"the client's ack: established at XDP", xFrame.to(npRemote).tcp(ackOnly), testrun.XDPTx},
		{"a port no flow holds: tc's", replyFromR.to(netip.AddrPortFrom(hostIP, sp.Port()^1)).tcp(ackOnly), testrun.XDPPass},
		{"udp: DNAT+SNAT, checksum updated", xFrame.to(npUDP).udp(), testrun.XDPTx},
		{"udp reply", frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendU, dst: spU}.udp(), testrun.XDPTx},
		{"external IP", xFrame.from(netip.AddrPortFrom(clientX.Addr(), 50001)).to(extIP).tcp(synOnly), testrun.XDPTx},
		{"backend on this node: tc's (redirect_peer), the flow XDP created continues", xFrame.to(npLocal).tcp(synOnly), testrun.XDPPass},
		{"a ClusterIP from outside: tc's", xFrame.to(vipLocal).tcp(synOnly), testrun.XDPPass},
		{"nodeport without backends: dropped at XDP, named", xFrame.to(npEmpty).tcp(synOnly), testrun.XDPDrop},
		{"icmp: tc's", xFrame.to(npRemote).icmp(), testrun.XDPPass},
		{"ttl 1: tc's (the stack answers time exceeded)", frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: netip.AddrPortFrom(clientX.Addr(), 50002), dst: npRemote, ttl: 1}.tcp(synOnly), testrun.XDPPass},
	})
}

func TestXDPNodePortDSR(t *testing.T) {
	cfg := lbConfig(t, lbOpts{Mode: config.LBModeDSR})
	p := newXDPPair(t, "xdsr", cfg)
	p.steps(t, []xdpStep{
		{"syn: DNAT, the DSR option inserted at XDP", xFrame.to(npRemote).tcp(synOnly), testrun.XDPTx},
		{"ack: no option", xFrame.to(npRemote).tcp(ackOnly), testrun.XDPTx},
		{"external IP syn", xFrame.from(clientY).to(extIP).tcp(synOnly), testrun.XDPTx},
		{"udp: the option on every datagram", xFrame.to(npUDP).udp(), testrun.XDPTx},
		{"1492-byte DF datagram fits with the option", xFrame.to(npUDP).bigUDP(1492), testrun.XDPTx},
		{"1500-byte DF datagram: frag-needed answered at XDP", xFrame.to(npUDP).bigUDP(1500), testrun.XDPTx},
		{"backend on this node: tc's", xFrame.to(npLocal).tcp(synOnly), testrun.XDPPass},
	})
}

func TestXDPNodePortHybrid(t *testing.T) {
	cfg := lbConfig(t, lbOpts{Mode: config.LBModeHybrid})
	p := newXDPPair(t, "xhyb", cfg)
	spU := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendU, 17))
	p.steps(t, []xdpStep{
		{"tcp: DSR with the option", xFrame.to(npRemote).tcp(synOnly), testrun.XDPTx},
		{"udp: SNAT", xFrame.to(npUDP).udp(), testrun.XDPTx},
		{"udp reply: reverse SNAT", frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendU, dst: spU}.udp(), testrun.XDPTx},
	})
}

// Maglev: a NodePort frontend with Maglev selection over the two remote backends;
// XDP and tc pick the same one for every client (the same table, the same hash).
func TestXDPNodePortMaglev(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	p := newXDPPair(t, "xmag", cfg)
	npMaglev := netip.AddrPortFrom(hostIP, 30090)
	for _, e := range []*lbEnv{p.tc, p.xdp} {
		e.maglevTable(t, 20, 2, 5)
		e.service(t, 20, npMaglev, maps.ProtoTCP, maps.ServiceNodePort|maps.ServiceMaglev, 2, 5)
	}
	var steps []xdpStep
	for i := range 8 {
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{172, 16, 0, byte(20 + i)}), uint16(40000+i))
		steps = append(steps, xdpStep{fmt.Sprintf("client %s", c), xFrame.from(c).to(npMaglev).tcp(synOnly), testrun.XDPTx})
	}
	p.steps(t, steps)
}

// Geneve tunnel mode with DSR: XDP encapsulates with the Geneve DSR option.
func TestXDPNodePortDSRGeneve(t *testing.T) {
	mk := func(suffix string) *lbEnv {
		f := setupNamedFibNS(t, lbName(suffix))
		addRoute(t, testrun.NetlinkAt(t, f.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: f.eth0})
		cfg := tunnelConfig(t, config.TunnelGeneve, 0)
		cfg = withLB(t, cfg, lbOpts{Mode: config.LBModeDSR, MaglevTableSize: testM})
		e := newLBEnvIn(t, f, cfg, func(m *maps.Maps) { programOverlayMaps(t, m) })
		e.services(t)
		e.nodePorts(t)
		return e
	}
	p := &xdpPair{tc: mk("xgnv-tc"), xdp: mk("xgnv-x"), sportMasked: true}
	p.steps(t, []xdpStep{
		{"syn: encapsulated with the Geneve DSR option at XDP", xFrame.to(npRemote).tcp(synOnly), testrun.XDPTx},
		{"ack: encapsulated without it", xFrame.to(npRemote).tcp(ackOnly), testrun.XDPTx},
		{"1451-byte data packet: frag-needed at XDP", tcpOfSize(xFrame.to(npRemote), ackOnly, 1451), testrun.XDPTx},
	})
}

// Acceleration switched on or off under traffic: a flow tc created is continued at
// XDP and the other way round, on one node (shared maps).
func TestXDPContinuesTCFlows(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	e := newNodePortEnv(t, "xcont", cfg)
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	out := func(src netip.AddrPort, fl tcpFlags) []byte {
		return frame{srcMAC: eth0MAC, dstMAC: gw2MAC, src: src, dst: backendR, ttl: 63}.tcp(fl)
	}
	xdpRun := func(in []byte) (testrun.Result, []lbRecord) {
		res := runInNS(t, e.f.path, e.d.XDP, in, &testrun.XdpContext{DataEnd: uint32(len(in)), IngressIfindex: uint32(e.f.eth0)})
		return res, e.drain(t)
	}
	// tc creates the flow.
	if res, r := e.run(t, e.d.FromNetdev, e.f.eth0, xFrame.to(npRemote).tcp(synOnly)); !bytes.Equal(res.Out, out(sp, synOnly)) {
		t.Fatalf("tc syn: %s\n%s", r.String(t), testrun.Diff(out(sp, synOnly), res.Out))
	}
	// XDP continues it: the same SNAT port, established.
	res, recs := xdpRun(xFrame.to(npRemote).tcp(ackOnly))
	if res.Verdict != testrun.XDPTx || len(recs) != 1 || recs[0].CT != "TRACE_CT_ESTABLISHED" || !bytes.Equal(res.Out, out(sp, ackOnly)) {
		t.Fatalf("XDP ack of tc's flow: %s, %d records\n%s", testrun.XDPVerdictString(res.Verdict), len(recs), testrun.Diff(out(sp, ackOnly), res.Out))
	}
	// And the other way: a flow XDP created, continued by tc.
	c2 := netip.AddrPortFrom(clientX.Addr(), 50100)
	sp2 := netip.AddrPortFrom(hostIP, snatPort(cfg, c2, backendR, 6))
	if res, _ := xdpRun(xFrame.from(c2).to(npRemote).tcp(synOnly)); res.Verdict != testrun.XDPTx || !bytes.Equal(res.Out, out(sp2, synOnly)) {
		t.Fatalf("XDP syn: %s\n%s", testrun.XDPVerdictString(res.Verdict), testrun.Diff(out(sp2, synOnly), res.Out))
	}
	res2, r2 := e.run(t, e.d.FromNetdev, e.f.eth0, xFrame.from(c2).to(npRemote).tcp(ackOnly))
	if r2.CT != "TRACE_CT_ESTABLISHED" || !bytes.Equal(res2.Out, out(sp2, ackOnly)) {
		t.Fatalf("tc ack of XDP's flow: %s\n%s", r2.String(t), testrun.Diff(out(sp2, ackOnly), res2.Out))
	}
}

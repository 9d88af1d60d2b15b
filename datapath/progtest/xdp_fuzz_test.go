// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bytes"
	"fmt"
	"maps"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"podpath/datapath/config"
	pmaps "podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
)

// FuzzXDPNodePort feeds random frames to bpf_xdp with the load balancer on (SNAT) and
// the NodePort, external and ClusterIP frontends of the LB fixtures: the verdict is
// XDP_PASS, XDP_DROP, XDP_TX or XDP_REDIRECT; a pass leaves the frame untouched and
// untraced (tc's to judge); anything else leaves exactly one OBS_XDP record that says
// the same; the service, backend, endpoint and ipcache maps never change, and
// conntrack or SNAT entries are written only for TCP/UDP frames.
func FuzzXDPNodePort(f *testing.F) { fuzzXDPNodePort(f, config.LBModeSNAT) }

// FuzzXDPNodePortDSR is the same in DSR mode (options inserted, frag-needed answers).
func FuzzXDPNodePortDSR(f *testing.F) { fuzzXDPNodePort(f, config.LBModeDSR) }

func fuzzXDPNodePort(f *testing.F, mode config.LBMode) {
	fib := setupNamedFibNS(f, lbName(fmt.Sprintf("fuzzx-%s", mode)))
	addRoute(f, testrun.NetlinkAt(f, fib.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: fib.eth0})
	fib.path = testrun.UnnameNetns(f, fib.name)
	cfg := lbConfig(f, lbOpts{Mode: mode, Reject: true, SourceRangeCheck: true})
	e := newLBEnvIn(f, fib, cfg, func(m *pmaps.Maps) { upsertEndpoints(f, m, podAEndpoint, podBEndpoint, hostEndpoint) })
	e.services(f)
	e.nodePorts(f)
	e.semantics(f)
	n, err := trace.DefaultNames()
	if err != nil {
		f.Fatal(err)
	}
	l := e.d.LB
	frozen := map[string]*ebpf.Map{"lb_services": l.Services, "lb_backend_slots": l.BackendSlots,
		"lb_backends": l.Backends, "lb_rev_nat": l.RevNat, "lb_maglev": l.Maglev,
		"endpoints": e.d.Maps.Endpoints, "ipcache": e.d.Maps.IPCache, "nodes": e.d.Maps.Nodes}
	tracked := map[string]*ebpf.Map{"ct_tcp": l.CTTCP, "ct_any": l.CTAny, "snat": l.SNAT}

	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	for _, fr := range []frame{xFrame.to(npRemote), xFrame.to(npLocal), xFrame.to(npUDP), xFrame.to(extIP), xFrame.to(vipLocal),
		xFrame.to(npEmpty), xFrame.to(npRanged), {srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: sp}} {
		f.Add(fr.tcp(synOnly))
		f.Add(fr.tcp(finAck))
		f.Add(fr.udp())
		f.Add(laterFragment(fr.udp()))
	}
	f.Add(xFrame.to(npUDP).bigUDP(1500))

	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > testrun.MaxFuzzFrame || len(data) < 14 {
			t.Skip("beyond test-run's XDP frame limits")
		}
		frozenBefore := map[string]map[string]string{}
		for name, m := range frozen {
			frozenBefore[name] = testrun.MapContents(t, m)
		}
		trackedBefore := map[string]map[string]string{}
		for name, m := range tracked {
			trackedBefore[name] = testrun.MapContents(t, m)
		}
		var res testrun.Result
		err := nsutil.Do(e.f.path, func() error {
			out := make([]byte, len(data)+256)
			opts := ebpf.RunOptions{Data: data, DataOut: out, Repeat: 1,
				Context: testrun.XdpContext{DataEnd: uint32(len(data)), IngressIfindex: uint32(e.f.eth0)}}
			ret, err := e.d.XDP.Run(&opts)
			res = testrun.Result{Verdict: testrun.Verdict(int32(ret)), Out: opts.DataOut}
			return err
		})
		if err != nil {
			t.Skipf("test-run refused the frame: %v", err)
		}
		recs := e.drain(t)
		switch res.Verdict {
		case testrun.XDPPass:
			if len(recs) != 0 || !bytes.Equal(res.Out, data) {
				t.Fatalf("XDP_PASS with %d records or a changed frame:\n%s", len(recs), testrun.Diff(data, res.Out))
			}
		case testrun.XDPTx, testrun.XDPRedirect, testrun.XDPDrop:
			if len(recs) != 1 || n.ObsPoint(recs[0].ObsPoint) != "OBS_XDP" {
				t.Fatalf("%s with %d records", testrun.XDPVerdictString(res.Verdict), len(recs))
			}
			v := n.Verdict(recs[0].Verdict)
			if (res.Verdict == testrun.XDPDrop) != (v == "VERDICT_DROP") {
				t.Fatalf("%s but record %s", testrun.XDPVerdictString(res.Verdict), recs[0].String(t))
			}
		default:
			t.Fatalf("verdict %s", testrun.XDPVerdictString(res.Verdict))
		}
		for name, m := range frozen {
			if !maps.Equal(frozenBefore[name], testrun.MapContents(t, m)) {
				t.Fatalf("map %s changed", name)
			}
		}
		_, _, _, isL4 := fuzzTuple(data)
		for name, m := range tracked {
			for k, v := range testrun.MapContents(t, m) {
				if old, ok := trackedBefore[name][k]; ok && old == v {
					continue
				}
				if !isL4 {
					t.Fatalf("%s: entry %+v written for a frame that is no TCP/UDP packet", name, decodeCTKey([]byte(k)))
				}
			}
		}
	})
}

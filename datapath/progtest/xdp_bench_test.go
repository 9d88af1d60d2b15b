// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"testing"

	"net/netip"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// BenchmarkXDPNodePort puts bpf_xdp next to from_netdev on the same NodePort packets
// of one node (SNAT and DSR to node 2's backend, tracing of forwarded packets off):
// new flow (conntrack entries deleted before each run) and established flow.
// ns/pkt-net is net of the empty program of the same hook (the empty tc program for
// tc rows, the empty XDP program for XDP rows), measured in the same run.
// `podpath bench` prints each xdp row beside its tc row with the ratio.
func BenchmarkXDPNodePort(b *testing.B) {
	for _, mode := range []config.LBMode{config.LBModeSNAT, config.LBModeDSR} {
		cfg := lbConfig(b, lbOpts{Mode: mode})
		cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
		e := newNodePortEnv(b, "bench-xdp-"+string(mode), cfg)
		l := e.d.LB
		sp := snatPort(cfg, clientX, backendR, 6)
		reset := func() error {
			_ = l.CTTCP.Delete(ctKeyOf(clientX, npRemote, 6, maps.CTService))
			_ = l.SNAT.Delete(ctKeyOf(backendR, netip.AddrPortFrom(hostIP, sp), 6, maps.CTReply))
			return nil
		}
		for _, hook := range []struct {
			name string
			prog *ebpf.Program
			want testrun.Verdict
		}{{"tc", e.d.FromNetdev, testrun.Redirect}, {"xdp", e.d.XDP, testrun.XDPRedirect}} {
			b.Run(string(mode)+"/new-flow/"+hook.name, func(b *testing.B) {
				testrun.BenchPath(b, e.f.path, hook.prog, xFrame.to(npRemote).tcp(synOnly), hook.want, reset)
			})
			b.Run(string(mode)+"/established/"+hook.name, func(b *testing.B) {
				testrun.BenchPath(b, e.f.path, hook.prog, xFrame.to(npRemote).tcp(ackOnly), hook.want, nil)
			})
		}
	}
}

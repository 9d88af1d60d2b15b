// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/testrun"
)

// BenchmarkOverlay measures the tunnel paths as BenchmarkDatapath does the native
// ones: monitor-aggregation maximum (forwarded packets untraced), one test-run per
// packet from a fresh copy (testrun.Rewrites), inside node 1's namespace of the
// overlay fixtures. from_overlay needs tunnel metadata, which test-run cannot attach:
// it runs behind tunnelKeyShim (bpf_skb_set_tunnel_key + tail call), and
// "from-overlay/shim-only" is the shim in front of the empty program, to subtract.
// Test-run's skbs carry no flow hash, so Geneve encapsulation runs the flow dissector
// (bpf_get_hash_recalc()); what a pod's socket sends has one (sk_txhash): the
// "+hash-shim" cases set it first (bpf_set_hash + tail call), "hash-shim-only" is
// that shim's own cost.
func BenchmarkOverlay(b *testing.B) {
	quiet := func(c *bpfconfig.Config) { c.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX) }
	vx := newOverlayEnv(b, "bench-vx", overlayOpts{proto: config.TunnelVXLAN, mutate: quiet})
	gnv := newOverlayEnv(b, "bench-gnv", overlayOpts{proto: config.TunnelGeneve, mutate: quiet})
	gnvOpt := newOverlayEnv(b, "bench-gnvopt", overlayOpts{proto: config.TunnelGeneve, mutate: quiet, testOpt: true})
	empty, err := testrun.EmptyProgram()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { empty.Close() })

	toRemote := fromPodA(remotePodIP).tcpSYN()
	fromNode2TCP := fromNode2().wrap(remotePodToB().tcpSYN())
	for _, bc := range []struct {
		name string
		env  *overlayEnv
		prog *ebpf.Program
		pkt  []byte
		want testrun.Verdict
	}{
		{"from-container/vxlan-encap", vx, vx.d.FromContainer, toRemote, testrun.Redirect},
		{"from-container/geneve-encap", gnv, gnv.d.FromContainer, toRemote, testrun.Redirect},
		{"from-container/geneve-encap-12B-option", gnvOpt, gnvOpt.d.FromContainer, toRemote, testrun.Redirect},
		{"from-container/geneve-encap-socket-hash+hash-shim", gnv, hashShim(b, gnv.d.FromContainer, 0x5eed1234), toRemote, testrun.Redirect},
		{"from-container/vxlan-encap-socket-hash+hash-shim", vx, hashShim(b, vx.d.FromContainer, 0x5eed1234), toRemote, testrun.Redirect},
		{"hash-shim-only", gnv, hashShim(b, empty, 0x5eed1234), toRemote, testrun.Next},
		{"from-container/tunnel-same-node-redirect-peer", gnv, gnv.d.FromContainer, fromPodA(podBIP).tcpSYN(), testrun.Redirect},
		{"from-netdev/geneve-decap", gnv, gnv.d.FromNetdev, fromNode2TCP, testrun.Redirect},
		{"from-overlay/vxlan-deliver+shim", vx, tunnelKeyShim(b, vx.d.FromOverlay, remoteIdentity, node2IP), remotePodToB().tcpSYN(), testrun.Redirect},
		{"from-overlay/shim-only", vx, tunnelKeyShim(b, empty, remoteIdentity, node2IP), remotePodToB().tcpSYN(), testrun.Next},
	} {
		b.Run(bc.name, func(b *testing.B) { testrun.BenchPath(b, bc.env.f.path, bc.prog, bc.pkt, bc.want, nil) })
	}
}

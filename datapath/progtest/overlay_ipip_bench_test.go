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

// BenchmarkIPIP measures IPIP encapsulation and decapsulation beside Geneve's in the
// same run (issue 14: IPIP within 1.2x of Geneve), as BenchmarkOverlay does: monitor
// aggregation maximum, one test-run per packet from a fresh copy. Geneve's encap is
// also given with the socket's flow hash set (what a pod's TCP sends), since IPIP
// needs no hash; and cross-subnet's native path beside them.
func BenchmarkIPIP(b *testing.B) {
	quiet := func(c *bpfconfig.Config) { c.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX) }
	gnv := newOverlayEnv(b, "bench-ipgnv", overlayOpts{proto: config.TunnelGeneve, mutate: quiet})
	ipip := newIPIPEnv(b, "bench-ipip", quiet)
	xs := newIPIPEnv(b, "bench-ipxs", func(c *bpfconfig.Config) {
		quiet(c)
		c.TunnelMode, c.NodeSubnetLen = uint8(bpfconfig.TunnelModeCrossSubnet), 24
	})

	toRemote := fromPodA(remotePodIP).tcpSYN()
	for _, bc := range []struct {
		name string
		env  *overlayEnv
		prog *ebpf.Program
		pkt  []byte
	}{
		{"from-container/geneve-encap", gnv, gnv.d.FromContainer, toRemote},
		{"from-container/geneve-encap-socket-hash+hash-shim", gnv, hashShim(b, gnv.d.FromContainer, 0x5eed1234), toRemote},
		{"from-container/ipip-encap", ipip, ipip.d.FromContainer, toRemote},
		{"from-container/ipip-cross-subnet-native", xs, xs.d.FromContainer, toRemote},
		{"from-netdev/geneve-decap", gnv, gnv.d.FromNetdev, fromNode2().wrap(remotePodToB().tcpSYN())},
		{"from-netdev/ipip-decap", ipip, ipip.d.FromNetdev, ipipFromNode2().wrap(remotePodToB().tcpSYN())},
	} {
		b.Run(bc.name, func(b *testing.B) { testrun.BenchPath(b, bc.env.f.path, bc.prog, bc.pkt, testrun.Redirect, nil) })
	}
}

// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"podpath/datapath/bpfobj"
)

// BenchmarkSockLB compares, in one run and one datapath (load balancer on, socket-LB
// on, the fixture services programmed, tracing of forwarded packets off), what
// from_container costs per established packet of a pod's flow:
//   - pod-to-pod: pod A to pod B on a port that is no backend (plain traffic);
//   - socket-lb: the flow after a socket-LB connect() to vipLocal: connect4 already
//     rewrote the socket to backend 1 (pod B:8080), so every packet, the first
//     included, is pod A -> pod B:8080 and meets only the service lookup's and the
//     reply lookup's misses, as plain traffic does;
//   - tc: the same service reached per packet (bpf-lb-sock off or hostns-only):
//     service lookup, conntrack hit, DNAT of every packet.
//
// Expected: socket-lb equals pod-to-pod within noise; tc costs more.
func BenchmarkSockLB(b *testing.B) {
	cfg := lbConfig(b, lbOpts{})
	cfg.LbSock = 1
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	e := newLBEnv(b, "sockbench", cfg)
	e.services(b)
	plainDst := netip.AddrPortFrom(podBIP, 7777)
	plainSrc := netip.AddrPortFrom(podAIP, 40001)
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"pod-to-pod/established", podAFrame(plainSrc, plainDst).tcp(ackOnly)},
		{"socket-lb/established", podAFrame(clientA, backendB).tcp(ackOnly)},
		{"tc/established", podAFrame(clientA, vipLocal).tcp(ackOnly)},
	} {
		b.Run(bc.name, func(b *testing.B) { benchRedirect(b, e.f.path, e.d.FromContainer, bc.pkt, nil) })
	}
}

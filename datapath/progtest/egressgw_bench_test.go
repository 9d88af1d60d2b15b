// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/testrun"
)

// BenchmarkEgressGateway measures the egress gateway's paths next to plain BPF
// masquerading in the same datapath (egress gateway on, native routing):
//   - masq/established: to_netdev, pod B (no policy) to the world: the baseline;
//   - egw/gateway-established: to_netdev on the gateway, node 2's pod to the world:
//     SNAT to the egress IP;
//   - egw/gateway-reply: from_netdev on the gateway, the world's reply translated
//     back to node 2's pod (to the stack);
//   - egw/source-redirect: from_container, pod A's packet sent to the gateway node
//     by a FIB lookup of its address.
func BenchmarkEgressGateway(b *testing.B) {
	f := setupNamedFibNS(b, lbName("egwbench"))
	cfg := masqConfig(32768, 60999)
	cfg.EgressGwEnabled = 1
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	sizes := testSizes
	sizes.CTTCP, sizes.CTAny, sizes.SNAT = 65536, 65536, 262144
	d := newDatapath(b, cfg, loader.Options{MapSizes: sizes})
	upsertEndpoints(b, d.Maps, podAEndpoint, podBEndpoint, hostEndpoint)
	if err := d.EgressGW.Replace(egwEntries(egwNode2)); err != nil {
		b.Fatal(err)
	}
	podB := netip.AddrPortFrom(podBIP, 40000)
	nat := netip.AddrPortFrom(egwIP, masqPort(cfg, egwRemote, egwWorld, 6))
	for _, first := range []struct {
		prog *ebpf.Program
		pkt  []byte
	}{{d.ToNetdev, leaving(podB, egwWorld).tcp(synOnly)}, {d.ToNetdev, leaving(egwRemote, egwWorld).tcp(synOnly)}} {
		if _, err := masqRunOnce(b, f, first.prog, first.pkt); err != nil {
			b.Fatal(err)
		}
	}
	cases := []struct {
		name string
		prog *ebpf.Program
		pkt  []byte
		want testrun.Verdict
	}{
		{"masq/established", d.ToNetdev, leaving(podB, egwWorld).tcp(ackOnly), testrun.Next},
		{"egw/gateway-established", d.ToNetdev, leaving(egwRemote, egwWorld).tcp(ackOnly), testrun.Next},
		{"egw/gateway-reply", d.FromNetdev, arriving(egwWorld, nat).tcp(ackOnly), testrun.Next},
		{"egw/source-redirect", d.FromContainer, frame{srcMAC: podAMAC, dstMAC: lxcAMAC, src: netip.AddrPortFrom(podAIP, 40000), dst: egwWorld}.tcp(ackOnly),
			testrun.Redirect},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) { testrun.BenchPath(b, f.path, c.prog, c.pkt, c.want, nil) })
	}
}

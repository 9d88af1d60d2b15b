// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/loader/loadertest"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/testutil"
)

var (
	macA = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0a}
	macB = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x0b}
	ipA  = net.IPv4(10, 244, 1, 10).To4()
	ipB  = net.IPv4(10, 244, 2, 20).To4()
)

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macA, DstMAC: macB, EthernetType: t}
}

func ipv4(p layers.IPProtocol) *layers.IPv4 {
	return &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Protocol: p, SrcIP: ipA, DstIP: ipB}
}

func tcpSYN() []byte {
	return testrun.MustBuild(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolTCP),
		&layers.TCP{SrcPort: 40000, DstPort: 80, SYN: true, Window: 64240, Seq: 1})
}

func icmpEcho() []byte {
	return testrun.MustBuild(eth(layers.EthernetTypeIPv4), ipv4(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1},
		gopacket.Payload(make([]byte, 56)))
}

// corrupt returns a copy of pkt with f applied to it.
func corrupt(pkt []byte, f func(b []byte) []byte) []byte {
	return f(append([]byte(nil), pkt...))
}

func names(t testing.TB) *trace.Names {
	t.Helper()
	n, err := trace.DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// expectOneRecord drains the ring buffer and checks it holds exactly one record with
// the given verdict and drop reason.
func expectOneRecord(t *testing.T, rd *trace.Reader, verdict, reason string) trace.Record {
	t.Helper()
	n := names(t)
	r := oneRecord(t, rd)
	if got := n.Verdict(r.Verdict); got != verdict {
		t.Errorf("trace verdict: want %s, got %s (%s)", verdict, got, n.Format(r))
	}
	if got := n.DropReason(r.DropReason); got != reason {
		t.Errorf("trace drop reason: want %s, got %s (%s)", reason, got, n.Format(r))
	}
	if r.NodeID != 42 {
		t.Errorf("trace node id: want the constant 42 set at load, got %d", r.NodeID)
	}
	return r
}

func TestProbeFixtures(t *testing.T) {
	objs, rd := loadertest.LoadProbe(t, bpfconfig.Config{NodeId: 42, MonitorAggregation: uint32(bpfobj.LxcMonitorAggregationAGGREGATION_NONE)})

	dropped := func(reason string) func(*testing.T, testrun.Result) {
		return func(t *testing.T, _ testrun.Result) { expectOneRecord(t, rd, "VERDICT_DROP", reason) }
	}
	syn, echo := tcpSYN(), icmpEcho()
	fixtures := []testrun.Fixture{
		{
			Name: "tcp syn passes unchanged and is traced with its 5-tuple", Input: syn, Verdict: testrun.Next,
			Check: func(t *testing.T, _ testrun.Result) {
				r := expectOneRecord(t, rd, "VERDICT_PASS", "DROP_NONE")
				want := trace.Summary{
					Src: netip.MustParseAddr("10.244.1.10"), Dst: netip.MustParseAddr("10.244.2.20"),
					SrcPort: 40000, DstPort: 80, EthProto: 0x0800, IPProto: 6, TTL: 64, IPID: 0x1234,
					HasIPv4: true, HasTransport: true,
				}
				if r.Pkt != want {
					t.Errorf("summary: want %+v, got %+v", want, r.Pkt)
				}
				if r.PktLen != uint32(len(syn)) || r.ObsPoint != uint16(bpfobj.ProbeObsPointOBS_PROBE) {
					t.Errorf("record: want len %d at OBS_PROBE, got %s", len(syn), names(t).Format(r))
				}
			},
		},
		{
			Name: "icmp echo passes with type and code", Input: echo, Verdict: testrun.Next,
			Check: func(t *testing.T, _ testrun.Result) {
				r := expectOneRecord(t, rd, "VERDICT_PASS", "DROP_NONE")
				if r.Pkt.ICMPType != 8 || r.Pkt.ICMPCode != 0 || r.Pkt.HasTransport {
					t.Errorf("icmp summary wrong: %s", r.Pkt)
				}
			},
		},
		{
			Name:    "arp is not IPv4 and passes",
			Input:   testrun.MustBuild(eth(layers.EthernetTypeARP), &layers.ARP{AddrType: 1, Protocol: 0x0800, HwAddressSize: 6, ProtAddressSize: 4, Operation: 1, SourceHwAddress: macA, SourceProtAddress: ipA, DstHwAddress: make([]byte, 6), DstProtAddress: ipB}),
			Verdict: testrun.Next,
			Check: func(t *testing.T, _ testrun.Result) {
				r := expectOneRecord(t, rd, "VERDICT_PASS", "DROP_NONE")
				if r.Pkt.HasIPv4 || r.Pkt.EthProto != 0x0806 {
					t.Errorf("arp summary wrong: %+v", r.Pkt)
				}
			},
		},
		{
			Name: "ihl below 5", Verdict: testrun.Shot, IgnoreOutput: true, Check: dropped("DROP_BAD_IHL"),
			Input: corrupt(syn, func(b []byte) []byte { b[14] = 0x44; return b }),
		},
		{
			Name: "ihl beyond the frame", Verdict: testrun.Shot, IgnoreOutput: true, Check: dropped("DROP_TRUNCATED_IPV4"),
			Input: corrupt(syn, func(b []byte) []byte { b[14] = 0x4f; return b[:14+40] }),
		},
		{
			Name: "ethertype ipv4 with version 6", Verdict: testrun.Shot, IgnoreOutput: true, Check: dropped("DROP_BAD_IP_VERSION"),
			Input: corrupt(syn, func(b []byte) []byte { b[14] = 0x65; return b }),
		},
		{
			Name: "total length beyond the frame", Verdict: testrun.Shot, IgnoreOutput: true, Check: dropped("DROP_BAD_TOTAL_LEN"),
			Input: corrupt(syn, func(b []byte) []byte { b[16], b[17] = 0x05, 0xdc; return b }),
		},
		{
			Name: "total length shorter than the header", Verdict: testrun.Shot, IgnoreOutput: true, Check: dropped("DROP_BAD_TOTAL_LEN"),
			Input: corrupt(syn, func(b []byte) []byte { b[16], b[17] = 0, 19; return b }),
		},
		{
			Name: "tcp header cut short", Verdict: testrun.Shot, IgnoreOutput: true, Check: dropped("DROP_TRUNCATED_L4"),
			Input: corrupt(syn, func(b []byte) []byte { b[16], b[17] = 0, 30; return b[:14+30] }),
		},
		{
			Name: "later fragment carries no ports and passes", Verdict: testrun.Next,
			Input: corrupt(syn, func(b []byte) []byte {
				b[16], b[17] = 0, 24 // 20 header + 4 bytes of payload
				b[20], b[21] = 0, 10 // fragment offset 80 bytes
				b = b[:14+24]
				sum := ipChecksum(b[14:34])
				b[24], b[25] = byte(sum>>8), byte(sum)
				return b
			}),
			Check: func(t *testing.T, _ testrun.Result) {
				r := expectOneRecord(t, rd, "VERDICT_PASS", "DROP_NONE")
				if r.Pkt.HasTransport {
					t.Errorf("a later fragment has no L4 header, yet ports were read: %s", r.Pkt)
				}
			},
		},
	}
	testrun.RunFixtures(t, objs.Probe, fixtures)
}

// BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header, and IPv4 frames
// shorter than Ethernet + 20 bytes, before any program runs: those truncations are
// reached through IHL and total length above, and this test keeps the claim honest.
func TestKernelRejectsShortFramesBeforeTheProgram(t *testing.T) {
	objs, _ := loadertest.LoadProbe(t, bpfconfig.Config{})
	for _, n := range []int{13, 14 + 19} {
		if _, err := testrun.Run(objs.Probe, tcpSYN()[:n]); err == nil {
			t.Errorf("%d-byte frame: the kernel ran the program; the truncated-frame fixtures can now feed it directly", n)
		}
	}
}

func ipChecksum(h []byte) uint16 {
	h[10], h[11] = 0, 0
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

func TestProbeMonitorAggregation(t *testing.T) {
	for _, tc := range []struct {
		level            uint32
		passes, dropsToo int
	}{
		{uint32(bpfobj.LxcMonitorAggregationAGGREGATION_NONE), 1, 1},
		{uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MEDIUM), 0, 1},
		{uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX), 0, 1},
	} {
		objs, rd := loadertest.LoadProbe(t, bpfconfig.Config{NodeId: 1, MonitorAggregation: tc.level})
		if _, err := testrun.Run(objs.Probe, tcpSYN()); err != nil {
			t.Fatal(err)
		}
		bad := corrupt(tcpSYN(), func(b []byte) []byte { b[14] = 0x44; return b })
		if _, err := testrun.Run(objs.Probe, bad); err != nil {
			t.Fatal(err)
		}
		recs, err := rd.Drain()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != tc.passes+tc.dropsToo {
			t.Errorf("monitor-aggregation %d: want %d records (pass traced: %d), got %d",
				tc.level, tc.passes+tc.dropsToo, tc.passes, len(recs))
		}
	}
}

func TestDropReasonNamesFromBTF(t *testing.T) {
	n := names(t)
	for code, want := range map[uint16]string{
		uint16(bpfobj.ProbeDropReasonDROP_TRUNCATED_ETH): "DROP_TRUNCATED_ETH",
		uint16(bpfobj.ProbeDropReasonDROP_BAD_IHL):       "DROP_BAD_IHL",
	} {
		if got := n.DropReason(code); got != want {
			t.Errorf("drop reason %d: want %s, got %s", code, want, got)
		}
	}
	if got := n.DropReason(999); got != "drop_reason(999)" {
		t.Errorf("unknown code should be shown as a number, got %s", got)
	}
	// Codes come in per-feature ranges (drop.h), so they may have gaps: every named
	// code lies below __DROP_REASON_MAX, and the last one before it is named.
	max := uint64(bpfobj.ProbeDropReasonDROP_REASON_MAX)
	if _, ok := n.DropReasons[max-1]; !ok {
		t.Errorf("drop reason %d (the last before __DROP_REASON_MAX) has no name: %v", max-1, n.DropReasons)
	}
	for code, name := range n.DropReasons {
		if code >= max {
			t.Errorf("drop reason %s = %d: at or above __DROP_REASON_MAX %d", name, code, max)
		}
	}
}

func BenchmarkProbe(b *testing.B) {
	testutil.RequireRoot(b)
	objs, err := loader.LoadProbe(bpfconfig.Config{MonitorAggregation: uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)})
	if err != nil {
		b.Fatal(err)
	}
	defer objs.Close()
	b.Run("tcp-syn", func(b *testing.B) { testrun.Bench(b, objs.Probe, tcpSYN(), testrun.ReadOnly) })
	b.Run("tcp-syn-repeat1", func(b *testing.B) { testrun.Bench(b, objs.Probe, tcpSYN(), testrun.Rewrites) })
}

func BenchmarkEmptyProgram(b *testing.B) {
	testutil.RequireRoot(b)
	prog, err := testrun.EmptyProgram()
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	b.Run("repeatN", func(b *testing.B) { testrun.Bench(b, prog, tcpSYN(), testrun.ReadOnly) })
	b.Run("repeat1", func(b *testing.B) { testrun.Bench(b, prog, tcpSYN(), testrun.Rewrites) })
	// The floor of the XDP rows (BenchmarkXDPNodePort): the kernel's XDP test-run
	// builds an xdp_buff, not an skb.
	xdp, err := testrun.EmptyXDPProgram()
	if err != nil {
		b.Fatal(err)
	}
	defer xdp.Close()
	b.Run("xdp-repeat1", func(b *testing.B) { testrun.Bench(b, xdp, tcpSYN(), testrun.Rewrites) })
}

// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"podpath/datapath/bpfobj"
)

func wireAddr(s string) uint32 {
	b := netip.MustParseAddr(s).As4()
	return binary.NativeEndian.Uint32(b[:])
}

func TestDecodeAndFormatCarryThePassReason(t *testing.T) {
	n, err := DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	w := bpfobj.LxcTraceRecord{
		NodeId: 2, Ifindex: 7, PktLen: 1514,
		ObsPoint:   uint16(bpfobj.LxcObsPointOBS_FROM_CONTAINER),
		Verdict:    uint16(bpfobj.LxcTraceVerdictVERDICT_PASS),
		PassReason: uint16(bpfobj.LxcPassReasonPASS_FIB_FRAG_NEEDED),
	}
	w.Pkt.Saddr, w.Pkt.Daddr, w.Pkt.IpProto, w.Pkt.Ttl = wireAddr("10.244.1.10"), wireAddr("10.244.2.20"), 1, 64
	w.Pkt.EthProto = 0x0008 // 0x0800 on the wire
	raw, err := binary.Append(nil, binary.NativeEndian, w)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	if r.PassReason != uint16(bpfobj.LxcPassReasonPASS_FIB_FRAG_NEEDED) || r.DropReason != 0 {
		t.Errorf("decoded reasons: %+v", r)
	}
	want := "node 2 OBS_FROM_CONTAINER if 7 VERDICT_PASS PASS_FIB_FRAG_NEEDED len 1514 10.244.1.10 -> 10.244.2.20 icmp type 0 code 0 ttl 64"
	if got := n.Format(r); got != want {
		t.Errorf("format:\n got %s\nwant %s", got, want)
	}
	if code, err := n.PassReasonCode("PASS_TTL_EXPIRED"); err != nil || code != uint16(bpfobj.LxcPassReasonPASS_TTL_EXPIRED) {
		t.Errorf("PassReasonCode: %d, %v", code, err)
	}
	if _, ok := n.PassReasons[uint64(bpfobj.LxcPassReasonPASS_FIB_BASE)]; ok {
		t.Error("the __PASS_FIB_BASE marker should not be a name")
	}
}

// The FIB block of pass_reason is the kernel's BPF_FIB_LKUP_RET_* + 16 (fib.h asserts
// it at compile time); the names Go prints follow.
func TestPassReasonFIBBlock(t *testing.T) {
	n, err := DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	for ret, name := range map[int]string{1: "PASS_FIB_BLACKHOLE", 2: "PASS_FIB_UNREACHABLE", 4: "PASS_FIB_NOT_FWDED", 8: "PASS_FIB_FRAG_NEEDED"} {
		if got := n.PassReason(uint16(16 + ret)); got != name {
			t.Errorf("fib ret %d: %s, want %s", ret, got, name)
		}
	}
}

// Tunnel records carry which tunnel, the source identity from the VNI and the remote
// node, and Format says so.
func TestDecodeAndFormatTunnelRecords(t *testing.T) {
	n, err := DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tunnel bpfobj.LxcTraceTunnel
		want   string
	}{
		{bpfobj.LxcTraceTunnelTRACE_ENCAP_VXLAN, "node 1 OBS_FROM_CONTAINER if 7 VERDICT_REDIRECT -> if 4 encap vxlan to 192.168.77.2 identity 1000 len 98 10.244.1.10 -> 10.244.2.20 icmp type 8 code 0 ttl 64"},
		{bpfobj.LxcTraceTunnelTRACE_DECAP_GENEVE, "node 1 OBS_FROM_CONTAINER if 7 VERDICT_REDIRECT -> if 4 decap geneve from 192.168.77.2 identity 1000 len 98 10.244.1.10 -> 10.244.2.20 icmp type 8 code 0 ttl 64"},
	} {
		w := bpfobj.LxcTraceRecord{
			NodeId: 1, Ifindex: 7, TargetIfindex: 4, PktLen: 98,
			ObsPoint: uint16(bpfobj.LxcObsPointOBS_FROM_CONTAINER), Verdict: uint16(bpfobj.LxcTraceVerdictVERDICT_REDIRECT),
			SrcIdentity: 1000, TunnelEndpoint: wireAddr("192.168.77.2"), Tunnel: uint16(tc.tunnel),
		}
		w.Pkt.Saddr, w.Pkt.Daddr, w.Pkt.IpProto, w.Pkt.Ttl, w.Pkt.IcmpType = wireAddr("10.244.1.10"), wireAddr("10.244.2.20"), 1, 64, 8
		w.Pkt.EthProto = 0x0008
		raw, err := binary.Append(nil, binary.NativeEndian, w)
		if err != nil {
			t.Fatal(err)
		}
		r, err := Decode(raw)
		if err != nil {
			t.Fatal(err)
		}
		if r.SrcIdentity != 1000 || r.TunnelEndpoint != netip.MustParseAddr("192.168.77.2") || r.Tunnel != uint16(tc.tunnel) {
			t.Errorf("decoded tunnel fields: %+v", r)
		}
		if got := n.Format(r); got != tc.want {
			t.Errorf("format:\n got %s\nwant %s", got, tc.want)
		}
	}
	// Without a tunnel the record reads as before.
	if r, _ := Decode(make([]byte, RecordSize)); r.TunnelEndpoint.IsValid() || r.Tunnel != 0 {
		t.Errorf("zero record has tunnel fields: %+v", r)
	}
	if len(n.Tunnels) != 7 || n.Tunnel(0) != "TRACE_TUNNEL_NONE" || n.Tunnel(5) != "TRACE_ENCAP_IPIP" || n.Tunnel(6) != "TRACE_DECAP_IPIP" {
		t.Errorf("tunnel names: %v", n.Tunnels)
	}
}

func TestDecodeAndFormatLBRecords(t *testing.T) {
	n, err := DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	w := bpfobj.LxcTraceRecord{NodeId: 1, Ifindex: 7, TargetIfindex: 7, PktLen: 70,
		ObsPoint: uint16(bpfobj.LxcObsPointOBS_FROM_NETDEV), Verdict: uint16(bpfobj.LxcTraceVerdictVERDICT_REDIRECT)}
	w.Pkt.Saddr, w.Pkt.Daddr, w.Pkt.IpProto, w.Pkt.Ttl = wireAddr("172.16.0.5"), wireAddr("10.244.2.30"), 6, 64
	w.Pkt.Sport, w.Pkt.Dport, w.Pkt.EthProto = 0x50c3, 0x901f, 0x0008 // 50000, 8080 on the wire
	w.Pkt.Lb.Action, w.Pkt.Lb.Ct, w.Pkt.Lb.BackendId = uint8(bpfobj.LxcTraceLbTRACE_LB_DNAT_DSR), uint8(bpfobj.LxcTraceCtTRACE_CT_NEW), 2
	w.Pkt.Lb.OrigSaddr, w.Pkt.Lb.OrigDaddr, w.Pkt.Lb.OrigSport, w.Pkt.Lb.OrigDport = wireAddr("172.16.0.5"), wireAddr("192.168.50.1"), 0x50c3, 0x8075
	raw, err := binary.Append(nil, binary.NativeEndian, w)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	want := LBInfo{Action: uint8(bpfobj.LxcTraceLbTRACE_LB_DNAT_DSR), CT: uint8(bpfobj.LxcTraceCtTRACE_CT_NEW), BackendID: 2,
		OrigSrc: netip.MustParseAddrPort("172.16.0.5:50000"), OrigDst: netip.MustParseAddrPort("192.168.50.1:30080")}
	if r.LB != want {
		t.Errorf("decoded lb part %+v, want %+v", r.LB, want)
	}
	const line = "node 1 OBS_FROM_NETDEV if 7 VERDICT_REDIRECT -> if 7 len 70 172.16.0.5:50000 -> 10.244.2.30:8080 tcp ttl 64 " +
		"lb dnat-dsr ct new backend 2 from 172.16.0.5:50000->192.168.50.1:30080"
	if got := n.Format(r); got != line {
		t.Errorf("format:\n got %s\nwant %s", got, line)
	}
	if r, _ := Decode(make([]byte, RecordSize)); r.LB != (LBInfo{}) {
		t.Errorf("zero record has an lb part: %+v", r.LB)
	}
}

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

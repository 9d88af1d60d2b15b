// SPDX-License-Identifier: Apache-2.0

package kdrop

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"podpath/datapath/btfnames"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// sample builds a ring buffer sample as bpf/kdrop.c lays it out.
func sample(netns, ifindex, reason uint32, proto uint16, hdr []byte) []byte {
	b := make([]byte, recordSize)
	le := binary.LittleEndian
	le.PutUint64(b[0:], 123)
	le.PutUint64(b[8:], 0xffffffff81000010)
	le.PutUint32(b[16:], netns)
	le.PutUint32(b[20:], ifindex)
	le.PutUint32(b[24:], reason)
	le.PutUint32(b[28:], 84)
	binary.BigEndian.PutUint16(b[32:], proto) // skb->protocol is in network order
	le.PutUint16(b[34:], uint16(len(hdr)))
	copy(b[36:], hdr)
	return b
}

func ipv4(proto byte, l4 ...byte) []byte {
	h := []byte{0x45, 0, 0, 84, 0, 0, 0x40, 0, 63, proto, 0, 0, 10, 0, 0, 1, 10, 0, 1, 2}
	return append(h, l4...)
}

func TestDecodeRecord(t *testing.T) {
	tests := []struct {
		name   string
		sample []byte
		packet string
		mcast  bool
		err    bool
	}{
		{"tcp", sample(7, 2, 6, 0x0800, ipv4(6, 0x13, 0x88, 0, 80)), "10.0.0.1:5000 > 10.0.1.2:80 tcp ttl 63", false, false},
		{"udp", sample(7, 2, 6, 0x0800, ipv4(17, 0, 53, 0x75, 0x30)), "10.0.0.1:53 > 10.0.1.2:30000 udp ttl 63", false, false},
		{"icmp", sample(7, 2, 6, 0x0800, ipv4(1, 8, 0)), "10.0.0.1 > 10.0.1.2 icmp type 8 code 0 ttl 63", false, false},
		{"igmp", sample(7, 2, 6, 0x0800, append(ipv4(2)[:16], 224, 0, 0, 22)), "10.0.0.1 > 224.0.0.22 proto 2 ttl 63", true, false},
		{"mld", sample(7, 2, 6, 0x86dd, append(append([]byte{0x60, 0, 0, 0, 0, 8, 0, 1}, make([]byte, 16)...), 0xff, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x16)), "ipv6 :: > ff02::16 next-header 0", true, false},
		{"ipip", sample(7, 2, 6, 0x0800, ipv4(4)), "10.0.0.1 > 10.0.1.2 proto 4 ttl 63", false, false},
		{"arp", sample(7, 2, 6, 0x0806, nil), "arp", false, false},
		{"no header", sample(7, 2, 6, 0x0800, nil), "ethertype 0x0800, header not read", false, false},
		{"short", make([]byte, recordSize-1), "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRecord(tt.sample)
			if (err != nil) != tt.err {
				t.Fatalf("DecodeRecord: err %v, want error %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if r.Netns != 7 || r.Ifindex != 2 || r.Reason != 6 || r.Len != 84 || r.Location != 0xffffffff81000010 {
				t.Errorf("record %+v: fields not at their offsets", r)
			}
			if got := Packet(r); got != tt.packet {
				t.Errorf("Packet = %q, want %q", got, tt.packet)
			}
			if got := Multicast(r); got != tt.mcast {
				t.Errorf("Multicast = %v, want %v", got, tt.mcast)
			}
		})
	}
}

func TestReasonName(t *testing.T) {
	e := btfnames.Enum{6: "SKB_DROP_REASON_NETFILTER_DROP"}
	if got := ReasonName(e, 6); got != "NETFILTER_DROP" {
		t.Errorf("ReasonName(6) = %q", got)
	}
	if got := ReasonName(e, 99); got != "reason(99)" {
		t.Errorf("ReasonName(99) = %q", got)
	}
}

func TestKallsymsName(t *testing.T) {
	k := &kallsyms{addrs: []uint64{0x1000, 0x2000}, names: []string{"a", "b"}}
	for addr, want := range map[uint64]string{0x1000: "a+0x0", 0x1010: "a+0x10", 0x2fff: "b+0xfff", 0x10: "0x10"} {
		if got := k.name(addr); got != want {
			t.Errorf("name(%#x) = %q, want %q", addr, got, want)
		}
	}
}

// TestWitnessNetfilterDrop drops UDP to port 9 with nftables in a namespace of its own,
// sends one datagram there and expects the witness to name the kernel's reason, the
// namespace and the packet; a namespace not watched must stay silent.
func TestWitnessNetfilterDrop(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed")
	}
	w, err := Open()
	if err != nil {
		t.Skipf("kernel drop witness unavailable: %v", err)
	}
	defer w.Close()
	names := []string{fmt.Sprintf("pp-kdroptest-%d-a", os.Getpid()), fmt.Sprintf("pp-kdroptest-%d-b", os.Getpid())}
	for _, n := range names {
		if err := nsutil.Create(n); err != nil {
			t.Fatal(err)
		}
		defer nsutil.Delete(n)
		out, err := exec.Command("ip", "netns", "exec", n, "nft",
			"add table inet t; add chain inet t out { type filter hook output priority 0; }; add rule inet t out udp dport 9 drop").CombinedOutput()
		if err != nil {
			t.Fatalf("nft in %s: %v: %s", n, err, out)
		}
	}
	if err := w.Watch("test", map[string]string{"a": nsutil.Path(names[0])}); err != nil {
		t.Fatal(err)
	}
	defer w.Unwatch("test")
	mark := w.Drain()
	for _, n := range names {
		err := nsutil.Do(nsutil.Path(n), func() error {
			c, err := net.Dial("udp4", "127.0.0.1:9")
			if err != nil {
				return err
			}
			defer c.Close()
			_, _ = c.Write([]byte("kdrop"))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	var drops []Drop
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if drops = w.Since(mark); len(drops) > 0 {
			break
		}
	}
	if len(drops) != 1 {
		t.Fatalf("want 1 drop (namespace a only), got %d:\n%s", len(drops), Format(drops, "  ", 20))
	}
	d := drops[0]
	t.Logf("drop: %s", d)
	if d.Member != "a" || d.Reason != "NETFILTER_DROP" || !strings.Contains(d.Packet, "> 127.0.0.1:9 udp") {
		t.Errorf("drop %s: want member a, NETFILTER_DROP, UDP to 127.0.0.1:9", d)
	}
}

func TestLeftOut(t *testing.T) {
	udp := sample(7, 2, 6, 0x0800, ipv4(17, 0, 53, 0x75, 0x30))
	igmp := sample(7, 2, 6, 0x0800, append(ipv4(2)[:16], 224, 0, 0, 22))
	tests := []struct {
		name, reason string
		sample       []byte
		want         string
	}{
		{"netfilter", "NETFILTER_DROP", udp, ""},
		{"no socket", "NO_SOCKET", udp, ""},
		{"purge", "QUEUE_PURGE", udp, "closing socket"},
		{"multicast", "NOT_SPECIFIED", igmp, "multicast"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeRecord(tt.sample)
			if err != nil {
				t.Fatal(err)
			}
			if got := leftOut(r, tt.reason); got != tt.want {
				t.Errorf("leftOut = %q, want %q", got, tt.want)
			}
		})
	}
	drops := []Drop{{Reason: "A"}, {Reason: "B", LeftOut: "multicast"}}
	if got := Relevant(drops); len(got) != 1 || got[0].Reason != "A" {
		t.Errorf("Relevant = %+v", got)
	}
}

// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
)

// ipipSeeds are the IPIP decap fixtures' frames, from node 2 and from a stranger.
func ipipSeeds() [][]byte {
	inner := remotePodToB()
	var seeds [][]byte
	for _, o := range []ipipOuter{
		ipipFromNode2(),
		func() ipipOuter { o := ipipFromNode2(); o.src = strangerIP; return o }(),
		func() ipipOuter { o := ipipFromNode2(); o.tos = 3; return o }(),
		func() ipipOuter { o := ipipFromNode2(); o.frag = 0x2000; return o }(),
	} {
		seeds = append(seeds, o.wrap(inner.icmpEcho()), o.wrap(inner.tcpSYN()), o.wrap(setTTL(inner.udp(), 1)),
			o.wrap(pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: hostIP}.icmpEcho()),
			o.wrap(pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: localNoEPIP}.icmpEcho()),
			o.wrap(inner.icmpEcho()[:14+12]))
	}
	return seeds
}

// withIPIPPrefix puts a valid outer Ethernet + IPv4 (protocol 4, to node 1) header in
// front of the fuzzer's bytes, the total length and checksum matching the frame. The
// first byte picks the outer source: even, node 2 (a node); odd, a stranger (no node).
func withIPIPPrefix(tail []byte) []byte {
	o := ipipFromNode2()
	if len(tail) > 0 && tail[0]%2 == 1 {
		o.src = strangerIP
	}
	if len(tail) > 0 {
		tail = tail[1:]
	}
	b := o.wrap(make([]byte, 14))[:34]
	b = append(b, tail...)
	binary.BigEndian.PutUint16(b[16:], uint16(len(b)-14))
	binary.BigEndian.PutUint16(b[24:], ipChecksum(b[14:34]))
	return b
}

// ipipDecapRules: an IPIP frame from an outer source that is no node is never
// decapsulated or delivered: it is dropped, with DROP_IPIP_UNKNOWN_PEER unless an
// earlier check (fragment, truncated or non-IPv4 payload) named its own reason; and
// every IPIP drop names a reason (CheckRecord) and leaves the maps as they were.
func ipipDecapRules(t *testing.T, data []byte, res testrun.Result, r trace.Record) {
	{
		n := names(t)
		if len(data) < 34 || data[12] != 0x08 || data[13] != 0x00 || data[14]>>4 != 4 || data[23] != 4 {
			return
		}
		src, _ := netip.AddrFromSlice(data[26:30])
		dst, _ := netip.AddrFromSlice(data[30:34])
		if dst != hostIP || src == node2IP || src == node3IP || src == hostIP || src == farNodeIP {
			return
		}
		if res.Verdict != testrun.Shot {
			t.Fatalf("ipip from %s (no node) got verdict %s (%s), want a drop", src, res.Verdict, n.Format(r))
		}
		switch reason := n.DropReason(r.DropReason); reason {
		case "DROP_IPIP_UNKNOWN_PEER", "DROP_IPIP_TRUNCATED_INNER", "DROP_IPIP_INNER_NOT_IPV4", "DROP_TUNNEL_FRAGMENT",
			"DROP_TRUNCATED_IPV4", "DROP_BAD_IHL", "DROP_BAD_IP_VERSION", "DROP_BAD_TOTAL_LEN", "DROP_TRUNCATED_L4":
		default:
			t.Fatalf("ipip from %s (no node) dropped with %s, want DROP_IPIP_UNKNOWN_PEER or a parse reason", src, reason)
		}
	}
}

func ipipNetdevFuzz(suffix string) overlayFuzz {
	fz := netdevFuzz(suffix)
	fz.opts = overlayOpts{proto: config.TunnelIPIP, mutate: func(c *bpfconfig.Config) { c.TunnelMtu = ipipMTU }}
	fz.check = ipipDecapRules
	return fz
}

// FuzzIPIPDecap feeds from_netdev (IPIP mode) random bytes behind a valid outer
// Ethernet/IPv4 protocol-4 header to node 1, from node 2 or from a stranger.
func FuzzIPIPDecap(f *testing.F) {
	fz := ipipNetdevFuzz("fuzz-ipip")
	fz.frame = withIPIPPrefix
	for i, s := range ipipSeeds() {
		fz.seeds = append(fz.seeds, append([]byte{byte(i)}, s[34:]...))
	}
	fz.run(f)
}

// FuzzFromNetdevIPIP feeds from_netdev (IPIP mode) entirely random frames.
func FuzzFromNetdevIPIP(f *testing.F) {
	fz := ipipNetdevFuzz("fuzz-fn-ipip")
	fz.seeds = append(ipipSeeds(), fuzzSeeds()...)
	fz.run(f)
}

// FuzzFromContainerIPIP feeds from_container (IPIP mode) random frames.
func FuzzFromContainerIPIP(f *testing.F) {
	overlayFuzz{
		suffix: "fuzz-fc-ipip", opts: overlayOpts{proto: config.TunnelIPIP, mutate: func(c *bpfconfig.Config) { c.TunnelMtu = ipipMTU }},
		prog: func(d *loader.Datapath) *ebpf.Program { return d.FromContainer },
		dev:  func(e *overlayEnv) int { return e.f.lxc0 },
		obs:  "OBS_FROM_CONTAINER", valid: []testrun.Verdict{testrun.Pass, testrun.Shot, testrun.Redirect},
		seeds: append(fuzzSeeds(), fromPodA(strangerPodIP).icmpEcho(), fromPodA(farPodIP).tcpSYN(), fromPodA(remotePodIP).udp()),
	}.run(f)
}

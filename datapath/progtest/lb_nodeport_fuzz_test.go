// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"

	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	pmaps "podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
)

// fuzzTuple is the frame as gopacket reads it, when it is an IPv4 first fragment
// with a whole TCP or UDP header.
func fuzzTuple(data []byte) (src, dst netip.AddrPort, proto uint8, ok bool) {
	p := gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.DecodeOptions{Lazy: true, NoCopy: true})
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil || ip.FragOffset != 0 {
		return src, dst, 0, false
	}
	sa, _ := netip.AddrFromSlice(ip.SrcIP.To4())
	da, _ := netip.AddrFromSlice(ip.DstIP.To4())
	switch l4 := p.TransportLayer().(type) {
	case *layers.TCP:
		return netip.AddrPortFrom(sa, uint16(l4.SrcPort)), netip.AddrPortFrom(da, uint16(l4.DstPort)), 6, true
	case *layers.UDP:
		return netip.AddrPortFrom(sa, uint16(l4.SrcPort)), netip.AddrPortFrom(da, uint16(l4.DstPort)), 17, true
	}
	return src, dst, 0, false
}

// fragTuple is the tuple of an IPv4 TCP/UDP fragment whose header checks out as the
// datapath reads it: a first fragment's own ports, a later one's from lb_frag.
func fragTuple(data []byte, frag *ebpf.Map) (src, dst netip.AddrPort, proto uint8, ok bool) {
	if len(data) < 14+20 || binary.BigEndian.Uint16(data[12:14]) != 0x0800 || data[14]>>4 != 4 {
		return src, dst, 0, false
	}
	ip := data[14:]
	ihl, tot := int(ip[0]&0x0f)*4, int(binary.BigEndian.Uint16(ip[2:4]))
	fo := binary.BigEndian.Uint16(ip[6:8])
	proto = ip[9]
	if ihl < 20 || len(ip) < ihl || tot < ihl || fo&0x3fff == 0 || (proto != 6 && proto != 17) {
		return src, dst, 0, false
	}
	sa, da := netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	var sport, dport uint16
	if fo&0x1fff == 0 {
		if len(ip) < ihl+4 || tot < ihl+4 {
			return src, dst, 0, false
		}
		sport, dport = binary.BigEndian.Uint16(ip[ihl:]), binary.BigEndian.Uint16(ip[ihl+2:])
	} else {
		var v bpfobj.LxcLbFragPorts
		k := bpfobj.LxcLbFragKey{Daddr: binary.NativeEndian.Uint32(ip[16:20]), Saddr: binary.NativeEndian.Uint32(ip[12:16]),
			Id: binary.NativeEndian.Uint16(ip[4:6]), Proto: proto}
		if frag.Lookup(&k, &v) != nil {
			return src, dst, 0, false
		}
		var b [4]byte
		binary.NativeEndian.PutUint16(b[0:], v.Sport)
		binary.NativeEndian.PutUint16(b[2:], v.Dport)
		sport, dport = binary.BigEndian.Uint16(b[0:]), binary.BigEndian.Uint16(b[2:])
	}
	return netip.AddrPortFrom(sa, sport), netip.AddrPortFrom(da, dport), proto, true
}

type fuzzCTKey struct {
	src, dst netip.AddrPort
	proto    uint8
	dir      pmaps.CTDir
}

func decodeCTKey(k []byte) fuzzCTKey {
	ap := func(a, p []byte) netip.AddrPort {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(a)), binary.BigEndian.Uint16(p))
	}
	return fuzzCTKey{src: ap(k[0:4], k[8:10]), dst: ap(k[4:8], k[10:12]), proto: k[12], dir: pmaps.CTDir(k[13])}
}

// FuzzLBFromNetdev feeds random frames to from_netdev with the load balancer on and
// NodePort, external and ClusterIP frontends programmed: the verdict is valid and
// matches the one trace record; the packet keeps its length; the service, backend,
// slot, rev NAT and Maglev maps never change; conntrack and SNAT entries appear or
// change only for a frame that is a TCP or UDP packet, and a new one is keyed by that
// packet's own tuple (service entries: to a NodePort or external frontend; reply
// entries: from the backend they name, back to the packet's source).
func FuzzLBFromNetdev(f *testing.F) { fuzzLBFromNetdev(f, config.LBModeSNAT) }

// FuzzLBFromNetdevDSR is the same in DSR mode: options inserted and removed, ICMP
// frag-needed answers, flows learned from options; the packet length changes only
// as the trace record says.
func FuzzLBFromNetdevDSR(f *testing.F) { fuzzLBFromNetdev(f, config.LBModeDSR) }

func fuzzLBFromNetdev(f *testing.F, mode config.LBMode) {
	fib := setupNamedFibNS(f, lbName(fmt.Sprintf("fuzz-%s", mode)))
	addRoute(f, testrun.NetlinkAt(f, fib.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: fib.eth0})
	fib.path = testrun.UnnameNetns(f, fib.name)
	// The service semantics' flags too (issue 12): reject, source ranges, Local, affinity.
	cfg := lbConfig(f, lbOpts{Mode: mode, Reject: true, SourceRangeCheck: true, FragTracking: true})
	// Service addresses (issue 12): ClusterIPs from outside are served in DSR mode and
	// dropped (DROP_IS_CLUSTER_IP) in SNAT mode, so both values are fuzzed; a NodePort
	// frontend on a second device address.
	if mode == config.LBModeDSR {
		cfg.LbExternalClusterip = 1
	}
	e := newLBEnvIn(f, fib, cfg, func(m *pmaps.Maps) { upsertEndpoints(f, m, podAEndpoint, podBEndpoint, hostEndpoint) })
	e.services(f)
	e.nodePorts(f)
	e.semantics(f)
	e.service(f, 40, npSecond, pmaps.ProtoTCP, pmaps.ServiceNodePort, 2)
	n, err := trace.DefaultNames()
	if err != nil {
		f.Fatal(err)
	}
	l := e.d.LB
	frozen := map[string]*ebpf.Map{"lb_services": l.Services, "lb_backend_slots": l.BackendSlots,
		"lb_backends": l.Backends, "lb_rev_nat": l.RevNat, "lb_maglev": l.Maglev,
		"endpoints": e.d.Maps.Endpoints, "ipcache": e.d.Maps.IPCache, "nodes": e.d.Maps.Nodes,
		"lb_source_ranges": l.SourceRanges}
	tracked := map[string]*ebpf.Map{"ct_tcp": l.CTTCP, "ct_any": l.CTAny, "snat": l.SNAT}
	services, err := l.ServiceList()
	if err != nil {
		f.Fatal(err)
	}
	backends, err := l.BackendList()
	if err != nil {
		f.Fatal(err)
	}

	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	for _, s := range fuzzSeeds() {
		f.Add(s)
	}
	for _, fr := range []frame{xFrame.to(npRemote), xFrame.to(npLocal), xFrame.to(npUDP), xFrame.to(extIP), xFrame.to(vipLocal),
		xFrame.to(npEmpty), {srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: sp}} {
		f.Add(fr.tcp(synOnly))
		f.Add(fr.tcp(finAck))
		f.Add(fr.udp())
		f.Add(laterFragment(fr.udp()))
		first, later := fragmentsOf(fr)
		f.Add(first)
		f.Add(later)
	}
	dsrSvc := netip.MustParseAddrPort("192.168.50.9:30080")
	toB := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: clientX, dst: backendB, ttl: 63}
	f.Add(withDSROption(toB.tcp(synOnly), dsrSvc))
	f.Add(withDSROption(toB.udp(), dsrSvc))
	f.Add(xFrame.to(npUDP).bigUDP(1500))
	for _, fr := range []frame{xFrame.to(npRanged), xFrame.from(clientY).to(npRanged), xFrame.from(netip.MustParseAddrPort("172.16.0.9:1")).to(npRanged),
		xFrame.to(npAffine), xFrame.to(npLocalPol), xFrame.to(npEmpty), xFrame.to(npSecond), xFrame.to(vipLocal), xFrame.to(vipLocalPol)} {
		f.Add(fr.tcp(synOnly))
		f.Add(fr.tcp(rstOnly))
		f.Add(fr.udp())
	}

	ctx := e.f.ctx(e.f.eth0)
	f.Fuzz(func(t *testing.T, data []byte) {
		frozenBefore := map[string]map[string]string{}
		for name, m := range frozen {
			frozenBefore[name] = testrun.MapContents(t, m)
		}
		trackedBefore := map[string]map[string]string{}
		for name, m := range tracked {
			trackedBefore[name] = testrun.MapContents(t, m)
		}
		affinityBefore := testrun.MapContents(t, l.Affinity)
		res, ok := testrun.RunFuzz(t, e.f.path, e.d.FromNetdev, data, ctx)
		if !ok {
			return
		}
		if !slices.Contains([]testrun.Verdict{testrun.Next, testrun.Shot, testrun.Redirect}, res.Verdict) {
			t.Fatalf("verdict %s", res.Verdict)
		}
		recs := e.drain(t)
		if len(recs) != 1 {
			t.Fatalf("want 1 trace record, got %d", len(recs))
		}
		r := recs[0]
		if want := fuzzOutLen(data, r); len(res.Out) != want {
			t.Fatalf("packet length changed from %d to %d, want %d (%s)", len(data), len(res.Out), want, r.String(t))
		}
		if err := testrun.CheckRecord(n, res.Verdict, r.Record, "OBS_FROM_NETDEV", fuzzOutLen(data, r)); err != nil || r.Action == "" || r.CT == "" {
			t.Fatalf("verdict %s but record %s (%v)", res.Verdict, r.String(t), err)
		}
		for name, m := range frozen {
			if !maps.Equal(frozenBefore[name], testrun.MapContents(t, m)) {
				t.Fatalf("map %s changed", name)
			}
		}

		src, dst, proto, isL4 := fuzzTuple(data)
		if !isL4 {
			// A fragment with fragment tracking: the datagram's tuple, ports from its
			// first fragment (read here, or recorded in lb_frag by an earlier input).
			src, dst, proto, isL4 = fragTuple(data, e.d.Lxc.LbFrag)
		}
		// An affinity entry appears or changes only for a TCP packet to the affine
		// NodePort, keyed by its service and the packet's source, naming one of its backends.
		for k, v := range testrun.MapContents(t, l.Affinity) {
			if affinityBefore[k] == v {
				continue
			}
			kb, vb := []byte(k), []byte(v)
			id, client, be := binary.NativeEndian.Uint32(kb[0:4]), netip.AddrFrom4([4]byte(kb[4:8])), binary.NativeEndian.Uint32(vb[0:4])
			if !isL4 || proto != 6 || dst != npAffine || id != 27 || client != src.Addr() || (be != 1 && be != 2) {
				t.Fatalf("lb_affinity: entry service %d client %s backend %d for packet %s -> %s proto %d", id, client, be, src, dst, proto)
			}
		}
		if r.Action == "TRACE_LB_REJECT" && (!isL4 || !slices.Contains([]netip.AddrPort{npEmpty, vipEmpty, vipEmptyUDP}, dst)) {
			t.Fatalf("rejected a packet %s -> %s that is not for a frontend without backends", src, dst)
		}
		if n.DropReason(r.DropReason) == "DROP_SVC_SOURCE_RANGE" && (dst != npRanged || netip.MustParsePrefix("172.16.0.4/31").Contains(src.Addr())) {
			t.Fatalf("source range drop of %s -> %s", src, dst)
		}
		for name, m := range tracked {
			after := testrun.MapContents(t, m)
			for k, v := range after {
				if old, ok := trackedBefore[name][k]; ok && old == v {
					continue
				}
				ck := decodeCTKey([]byte(k))
				if !isL4 {
					t.Fatalf("%s: entry %+v written for a frame that is no TCP/UDP packet", name, ck)
				}
				if _, existed := trackedBefore[name][k]; existed {
					continue // a refresh of a flow the packet belongs to
				}
				wantProto := map[string]uint8{"ct_tcp": 6, "ct_any": 17, "snat": ck.proto}[name]
				if ck.proto != proto || ck.proto != wantProto {
					t.Fatalf("%s: new entry %+v for a packet of protocol %d", name, ck, proto)
				}
				backendID := binary.NativeEndian.Uint32([]byte(v)[8:12])
				flags := pmaps.CTFlags(binary.NativeEndian.Uint16([]byte(v)[4:6]))
				if backendID == 0 && flags&pmaps.CTDSR != 0 {
					// Learned from a DSR option: the reply of the packet's flow.
					if mode == config.LBModeSNAT || !hasDSROption(data) || ck.dir != pmaps.CTReply || ck.src != dst || ck.dst != src {
						t.Fatalf("%s: DSR entry %+v for packet %s -> %s", name, ck, src, dst)
					}
					continue
				}
				var be *pmaps.Backend
				for i := range backends {
					if backends[i].ID == backendID {
						be = &backends[i]
					}
				}
				if be == nil {
					t.Fatalf("%s: new entry %+v names backend %d, which does not exist", name, ck, backendID)
				}
				bAP := netip.AddrPortFrom(be.Addr, be.Port)
				switch {
				case name != "snat" && ck.dir == pmaps.CTService:
					ok := ck.src == src && ck.dst == dst
					okFE := false
					for _, s := range services {
						// A ClusterIP frontend only with bpf-lb-external-clusterip.
						reachable := pmaps.ServiceNodePort | pmaps.ServiceExternal
						if cfg.LbExternalClusterip != 0 {
							reachable |= pmaps.ServiceClusterIP
						}
						okFE = okFE || (netip.AddrPortFrom(s.Addr, s.Port) == dst && uint8(s.Proto) == proto && s.Flags&reachable != 0)
					}
					if !ok || !okFE {
						t.Fatalf("%s: new service entry %+v for packet %s -> %s", name, ck, src, dst)
					}
				case name != "snat" && ck.dir == pmaps.CTReply:
					if ck.src != bAP || ck.dst != src {
						t.Fatalf("%s: new reply entry %+v for packet %s -> %s (backend %s)", name, ck, src, dst, bAP)
					}
				case name == "snat" && ck.dir == pmaps.CTReply:
					if ck.src != bAP || ck.dst.Addr() != hostIP || ck.dst.Port() < cfg.LbSnatPortMin {
						t.Fatalf("snat: new entry %+v for packet %s -> %s (backend %s)", ck, src, dst, bAP)
					}
				default:
					t.Fatalf("%s: new entry with direction %d", name, ck.dir)
				}
			}
		}
	})
}

// hasDSROption reports whether the frame's IPv4 header starts its options with the
// DSR option.
func hasDSROption(data []byte) bool {
	return len(data) >= 42 && data[14]&0x0f >= 7 && data[34] == 0x9a && data[35] == 8
}

// fuzzOutLen is the output length the record r allows: the option added (balancing a
// DSR flow, when the packet must carry it: a TCP SYN or any UDP datagram) or removed
// (learned on the backend's node), the packet replaced by a 70-byte ICMP frag-needed,
// else unchanged.
func fuzzOutLen(data []byte, r lbRecord) int {
	switch r.Action {
	case "TRACE_LB_DNAT_DSR":
		if carriesDSROption(data) {
			return len(data) + 8
		}
	case "TRACE_LB_DSR_LEARNED":
		return len(data) - 8
	case "TRACE_LB_FRAG_NEEDED":
		return 14 + 20 + 8 + 28
	case "TRACE_LB_REJECT": // an RST, or an ICMP port unreachable quoting 28 bytes
		if r.Pkt.IPProto == 6 {
			return 14 + 20 + 20
		}
		return 14 + 20 + 8 + 28
	}
	return len(data)
}

// carriesDSROption reports whether a DSR flow's packet gets the option: UDP, or TCP
// with SYN and without ACK (the frame parsed: the program translated it).
func carriesDSROption(data []byte) bool {
	l4 := 14 + int(data[14]&0x0f)*4
	switch data[14+9] {
	case 17:
		return true
	case 6:
		return len(data) > l4+13 && data[l4+13]&0x12 == 0x02
	}
	return false
}

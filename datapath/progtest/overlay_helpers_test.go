// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
)

// The overlay fixtures run in node 1's namespace (setupFibNS) with tunnel mode on.
// Node 1 is 192.168.50.1; its pod A (10.244.1.10, identity 1000) sends. The ipcache
// names a tunnel endpoint for the remote PodCIDRs:
//
//	10.244.2.0/24  -> node 2, 192.168.50.2 (neighbour known: the FIB gives MACs)
//	10.244.3.0/24  -> node 3, 192.168.50.3 (no neighbour: bpf_redirect_neigh)
//	10.244.4.0/24  -> 192.168.50.9, in no nodes map entry
//	10.244.11.0/24 -> node 192.168.60.5, behind an unreachable underlay route
//	10.244.12.0/24 -> 192.168.50.1, this node itself
//	10.244.1.0/24  -> local, no tunnel endpoint
var (
	node2IP         = netip.MustParseAddr("192.168.50.2")
	node3IP         = netip.MustParseAddr("192.168.50.3")
	strangerIP      = netip.MustParseAddr("192.168.50.9")
	farNodeIP       = netip.MustParseAddr("192.168.60.5")
	strangerPodIP   = netip.MustParseAddr("10.244.4.4")
	farPodIP        = netip.MustParseAddr("10.244.11.11")
	selfTunnelPodIP = netip.MustParseAddr("10.244.12.12")
	localNoEPIP     = netip.MustParseAddr("10.244.1.99") // in node 1's PodCIDR, no endpoint
	spoofedIP       = netip.MustParseAddr("10.244.1.77") // a source that is no endpoint
	remotePodMAC    = mustMAC("02:00:00:00:02:1e")
	remoteGwMAC     = mustMAC("02:00:00:00:bb:02")
	podAIdentity    = uint32(1000)
	remoteIdentity  = uint32(2000)
	fixtureMTU      = 1450
	podAEndpoint    = maps.Endpoint{IP: podAIP, Ifindex: 4141, MAC: podAMAC, HostMAC: lxcAMAC, Identity: podAIdentity}
)

// tunnelConfig is fixtureConfig in tunnel mode with proto, port default, MTU 1450. It
// keeps the fixture's native-routing CIDR, for tests that switch to native routing.
func tunnelConfig(t testing.TB, proto config.TunnelProtocol, vxlanIfindex int) bpfconfig.Config {
	c := fixtureSettings()
	c.RoutingMode, c.TunnelProtocol, c.TunnelPort = config.RoutingTunnel, proto, proto.DefaultPort()
	cfg, err := bpfconfig.Build(c, bpfconfig.Node{ID: fixtureNodeID, IP: hostIP, TunnelMTU: fixtureMTU, VXLANIfindex: vxlanIfindex})
	if err != nil {
		t.Fatal(err)
	}
	fixture := fixtureConfig()
	cfg.NativeRoutingCidr, cfg.NativeRoutingCidrLen = fixture.NativeRoutingCidr, fixture.NativeRoutingCidrLen
	return cfg
}

// overlayEnv is node 1 for the overlay fixtures: its namespace with a collect_md
// vxlan device, the datapath loaded with the config the test asks for, and the
// endpoints, ipcache and nodes above.
type overlayEnv struct {
	fixtureEnv
	vxlan int // cilium_vxlan's ifindex
}

type overlayOpts struct {
	proto   config.TunnelProtocol
	mutate  func(*bpfconfig.Config) // applied after tunnelConfig
	testOpt bool                    // GENEVE_TEST_OPT
}

func newOverlayEnv(t testing.TB, suffix string, o overlayOpts) *overlayEnv {
	t.Helper()
	f := setupNamedFibNS(t, ovName(suffix))
	h := testrun.NetlinkAt(t, f.name)
	e := &overlayEnv{vxlan: addCollectMDVXLAN(t, h, "cilium_vxlan", config.PortVXLAN)}
	addRoute(t, h, &netlink.Route{Dst: ipnet("192.168.60.0/24"), Type: unix.RTN_UNREACHABLE})
	cfg := tunnelConfig(t, o.proto, e.vxlan)
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	d := newDatapath(t, cfg, loader.Options{GeneveTestOption: o.testOpt})
	programOverlayMaps(t, d.Maps)
	rd := traceReader(t, d)
	e.fixtureEnv = fixtureEnv{f: f, d: d, rd: rd}
	return e
}

func programOverlayMaps(t testing.TB, m *maps.Maps) {
	t.Helper()
	for _, ep := range []maps.Endpoint{podAEndpoint, podBEndpoint, hostEndpoint} {
		if err := m.EndpointUpsert(ep); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []maps.IPCacheEntry{
		{Prefix: netipPrefix("10.244.1.0/24"), Identity: 2},
		{Prefix: netipPrefix("10.244.2.0/24"), Identity: 2, TunnelEndpoint: node2IP},
		{Prefix: netipPrefix("10.244.3.0/24"), Identity: 2, TunnelEndpoint: node3IP},
		{Prefix: netipPrefix("10.244.4.0/24"), Identity: 2, TunnelEndpoint: strangerIP},
		{Prefix: netipPrefix("10.244.11.0/24"), Identity: 2, TunnelEndpoint: farNodeIP},
		{Prefix: netipPrefix("10.244.12.0/24"), Identity: 2, TunnelEndpoint: hostIP},
	} {
		if err := m.IPCacheUpsert(e); err != nil {
			t.Fatal(err)
		}
	}
	for i, ip := range []netip.Addr{hostIP, node2IP, node3IP, farNodeIP} {
		if err := m.NodeUpsert(maps.Node{IP: ip, ID: uint32(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
}

// addCollectMDVXLAN creates a collect_md vxlan device
// (`ip link add NAME type vxlan external dstport PORT`), up, and returns its ifindex.
func addCollectMDVXLAN(t testing.TB, h *netlink.Handle, name string, port int) int {
	t.Helper()
	la := netlink.NewLinkAttrs()
	la.Name = name
	if err := h.LinkAdd(&netlink.Vxlan{LinkAttrs: la, FlowBased: true, Port: port}); err != nil {
		t.Fatalf("add vxlan device %s: %v", name, err)
	}
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(l); err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func setTOS(pkt []byte, tos uint8) []byte {
	return corrupt(pkt, func(b []byte) []byte {
		b[15] = tos
		sum := ipChecksum(b[14:34])
		b[24], b[25] = byte(sum>>8), byte(sum)
		return b
	})
}

// outer describes the outer headers of a Geneve packet, built byte by byte.
type outer struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.Addr
	tos            uint8
	id             uint16
	frag           uint16 // IPv4 flags and fragment offset (0x4000: DF)
	ttl            uint8
	sport, dport   uint16
	gver, gflags   uint8
	gproto         uint16
	vni            uint32
	opts           []byte
	optWords       int // Geneve options length field; -1: len(opts)/4
}

// encapOuter is what node 1 writes for pod A's inner packet towards tunnel endpoint
// dst: the FIB's MACs, this node as source, TTL 64, DF, the inner ID, Geneve port.
func encapOuter(srcMAC, dstMAC net.HardwareAddr, dst netip.Addr, sport uint16) outer {
	return outer{srcMAC: srcMAC, dstMAC: dstMAC, src: hostIP, dst: dst, id: 0x1234, frag: 0x4000, ttl: 64,
		sport: sport, dport: config.PortGeneve, gproto: 0x6558, vni: podAIdentity, optWords: -1}
}

// fromNode2 is a Geneve packet node 2 sends to node 1, source identity 2000.
func fromNode2() outer {
	return outer{srcMAC: remoteMAC, dstMAC: eth0MAC, src: node2IP, dst: hostIP, id: 0x4321, frag: 0x4000, ttl: 64,
		sport: 40123, dport: config.PortGeneve, gproto: 0x6558, vni: remoteIdentity, optWords: -1}
}

func (o outer) wrap(inner []byte) []byte {
	b := append([]byte{}, o.dstMAC...)
	b = append(b, o.srcMAC...)
	b = append(b, 0x08, 0x00)
	l4 := 8 + 8 + len(o.opts) + len(inner)
	ip := make([]byte, 20)
	ip[0], ip[1] = 0x45, o.tos
	binary.BigEndian.PutUint16(ip[2:], uint16(20+l4))
	binary.BigEndian.PutUint16(ip[4:], o.id)
	binary.BigEndian.PutUint16(ip[6:], o.frag)
	ip[8], ip[9] = o.ttl, 17
	copy(ip[12:16], o.src.AsSlice())
	copy(ip[16:20], o.dst.AsSlice())
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	b = append(b, ip...)
	b = binary.BigEndian.AppendUint16(b, o.sport)
	b = binary.BigEndian.AppendUint16(b, o.dport)
	b = binary.BigEndian.AppendUint16(b, uint16(l4))
	b = append(b, 0, 0)
	words := o.optWords
	if words < 0 {
		words = len(o.opts) / 4
	}
	b = append(b, o.gver<<6|uint8(words), o.gflags)
	b = binary.BigEndian.AppendUint16(b, o.gproto)
	b = append(b, byte(o.vni>>16), byte(o.vni>>8), byte(o.vni), 0)
	b = append(b, o.opts...)
	return append(b, inner...)
}

// geneveOpt is one option TLV.
func geneveOpt(class uint16, typ uint8, data []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, class)
	b = append(b, typ, uint8(len(data)/4))
	return append(b, data...)
}

// testOption is the option GENEVE_TEST_OPT adds: class 0x014B type 0x7F, the inner
// destination address and port and two bytes of padding.
func testOption(dst netip.Addr, port uint16) []byte {
	data := append(dst.AsSlice(), byte(port>>8), byte(port), 0, 0)
	return geneveOpt(0x014B, 0x7F, data)
}

// withLen fixes the outer IPv4 total length, UDP length and IPv4 checksum of a Geneve
// packet cut to n bytes, so only the cut is wrong.
func withLen(pkt []byte, n int) []byte {
	return corrupt(pkt, func(b []byte) []byte {
		b = b[:n]
		binary.BigEndian.PutUint16(b[16:], uint16(n-14))
		if n >= 40 {
			binary.BigEndian.PutUint16(b[38:], uint16(n-34))
		}
		binary.BigEndian.PutUint16(b[24:], ipChecksum(b[14:34]))
		return b
	})
}

// runInNS runs prog once on pkt inside nsPath with ctx (nil: none; *SkbContext or raw
// bytes as gsoContext builds them).
func runInNS(t testing.TB, nsPath string, prog *ebpf.Program, pkt []byte, ctx any) testrun.Result {
	t.Helper()
	var res testrun.Result
	err := nsutil.Do(nsPath, func() error {
		out := make([]byte, len(pkt)+256)
		opts := ebpf.RunOptions{Data: pkt, DataOut: out, Repeat: 1}
		switch c := ctx.(type) {
		case *testrun.SkbContext:
			if c != nil {
				opts.Context = *c
			}
		case nil:
		default:
			opts.Context = c
		}
		ret, err := prog.Run(&opts)
		if err != nil {
			return err
		}
		res = testrun.Result{Verdict: testrun.Verdict(int32(ret)), Out: opts.DataOut}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// remotePodToB is the inner packet of the decap fixtures: a pod of node 2 to pod B,
// as that pod sent it (to its own gateway's MAC).
func remotePodToB() pktSpec {
	return pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: podBIP}
}

// tunnelKeyShim is a tc program that puts tunnel metadata on the skb, as the vxlan
// device does when it decapsulates (VNI vni, outer source remote), then tail-calls
// target: test-run cannot attach metadata itself, and from_overlay reads it with
// bpf_skb_get_tunnel_key(). Close the program and the map when done.
func tunnelKeyShim(t testing.TB, target *ebpf.Program, vni uint32, remote netip.Addr) *ebpf.Program {
	t.Helper()
	const keyOff, keySize = -48, 44 // struct bpf_tunnel_key, local_ipv6 included
	var insns asm.Instructions
	for off := int16(keyOff); off < 0; off += 4 {
		insns = append(insns, asm.StoreImm(asm.RFP, off, 0, asm.Word))
	}
	remoteHost := binary.BigEndian.Uint32(remote.AsSlice())
	insns = append(insns,
		asm.StoreImm(asm.RFP, keyOff, int64(int32(vni)), asm.Word), // tunnel_id
		// The metadata of a received packet has the outer source in key.u.ipv4.src,
		// which bpf_skb_get_tunnel_key() reports as remote_ipv4 and
		// bpf_skb_set_tunnel_key() fills from local_ipv4 (offset 28, host order).
		asm.StoreImm(asm.RFP, keyOff+28, int64(int32(remoteHost)), asm.Word),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, keyOff),
		asm.Mov.Imm(asm.R3, keySize),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnSkbSetTunnelKey.Call(),
	)
	return shimProgram(t, target, insns)
}

// hashShim sets skb->hash as a socket does on what it sends (bpf_set_hash(), an L4
// hash), then tail-calls target: test-run's skbs carry no hash.
func hashShim(t testing.TB, target *ebpf.Program, hash uint32) *ebpf.Program {
	t.Helper()
	return shimProgram(t, target, asm.Instructions{
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.Mov.Imm(asm.R2, int32(hash)),
		asm.FnSetHash.Call(),
	})
}

// shimProgram is a tc program that runs body with the skb in R6, then tail-calls
// target (and drops if the tail call fails). Closed when the test ends.
func shimProgram(t testing.TB, target *ebpf.Program, body asm.Instructions) *ebpf.Program {
	t.Helper()
	progs, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.ProgramArray, KeySize: 4, ValueSize: 4, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { progs.Close() })
	insns := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R1)}
	insns = append(insns, body...)
	insns = append(insns,
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, progs.FD()),
		asm.Mov.Imm(asm.R3, 0),
		asm.FnTailCall.Call(),
		asm.Mov.Imm(asm.R0, 2), // the tail call failed
		asm.Return(),
	)
	shim, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "pptest_shim", Type: ebpf.SchedCLS, License: "GPL", Instructions: insns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shim.Close() })
	if err := progs.Put(uint32(0), target); err != nil {
		t.Fatal(err)
	}
	return shim
}

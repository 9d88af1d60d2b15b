// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// BenchmarkLB measures from_netdev on a NodePort packet (and from_container on a
// ClusterIP packet) with n frontends in lb_services, every one of them a Maglev
// service with its own table (M = 251; the last case M = 16381), tracing of forwarded
// packets off. new-flow: service lookup, Maglev selection, conntrack entries written,
// DNAT (and SNAT), forwarding; established: service lookup, conntrack hit, DNAT.
func BenchmarkLB(b *testing.B) {
	for _, c := range []struct {
		n int
		m uint32
	}{{1, 251}, {1000, 251}, {100000, 251}, {1, 16381}} {
		b.Run(fmt.Sprintf("services=%d/M=%d", c.n, c.m), func(b *testing.B) { benchLB(b, c.n, c.m) })
	}
}

func benchLB(b *testing.B, n int, m uint32) {
	f := setupNamedFibNS(b, lbName(fmt.Sprintf("bench-%d-%d", n, m)))
	addRoute(b, testrun.NetlinkAt(b, f.name), &netlink.Route{Dst: ipnet("172.16.0.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: f.eth0})
	cfg := lbConfig(b, lbOpts{MaglevTableSize: m})
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	sizes := testSizes
	sizes.LBServices, sizes.LBRevNat, sizes.LBMaglev, sizes.LBBackendSlots = 131072, 131072, 131072, 262144
	sizes.CTTCP, sizes.CTAny, sizes.SNAT = 65536, 65536, 65536
	d := newDatapath(b, cfg, loader.Options{MapSizes: sizes})
	upsertEndpoints(b, d.Maps, podAEndpoint, podBEndpoint, hostEndpoint)
	e := &lbEnv{f: f, d: d, cfg: cfg}
	l := d.LB
	for _, be := range lbBackends[:2] {
		if err := l.BackendUpsert(be); err != nil {
			b.Fatal(err)
		}
	}
	table := func(ids ...uint32) []uint32 {
		var bs []maglev.Backend
		for _, id := range ids {
			bs = append(bs, maglev.Backend{ID: id, Weight: 1})
		}
		t, err := maglev.Table(bs, int(m), cfg.LbMaglevSeed)
		if err != nil {
			b.Fatal(err)
		}
		return t
	}
	both, only1, only2 := table(1, 2), table(1), table(2)
	mag := maps.ServiceNodePort | maps.ServiceMaglev
	// The measured frontends: a NodePort to pod B (local), one to node 2's backend
	// (SNAT), a ClusterIP; then fillers up to n (ClusterIPs 10.100.x.y:80).
	for _, s := range []struct {
		id     uint32
		fe     netip.AddrPort
		flags  maps.ServiceFlags
		table  []uint32
		slots  []uint32
		filler bool
	}{
		{1, npLocal, mag, only1, []uint32{1}, false},
		{2, npRemote, mag, only2, []uint32{2}, n == 1},
		{3, vipMaglev, maps.ServiceClusterIP | maps.ServiceMaglev, both, []uint32{1, 2}, n == 1},
	} {
		if s.filler {
			continue
		}
		if err := l.MaglevSet(s.id, s.table); err != nil {
			b.Fatal(err)
		}
		e.service(b, s.id, s.fe, maps.ProtoTCP, s.flags, s.slots...)
	}
	// Every update of a map-in-map waits for an RCU grace period (the kernel's
	// maybe_wait_bpf_programs(): ~10 ms here): concurrent MaglevSet calls share them.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 3 + w; i < n; i += 64 {
				id := uint32(100 + i)
				fe := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 100 + byte(i>>16), byte(i >> 8), byte(i)}), 80)
				err := l.MaglevSet(id, both)
				if err == nil {
					err = l.RevNatUpsert(id, fe)
				}
				if err == nil {
					err = l.ServiceUpsert(maps.Service{ServiceKey: maps.ServiceKey{Addr: fe.Addr(), Port: 80, Proto: maps.ProtoTCP},
						ID: id, Flags: maps.ServiceClusterIP | maps.ServiceMaglev, RevNatID: id, Backends: []uint32{1, 2}})
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	b.Logf("%d services programmed in %s", n, time.Since(start).Round(time.Millisecond))
	if list, err := l.ServiceList(); err != nil || (n > 3 && len(list) != n) {
		b.Fatalf("%d services in the map, want %d (%v)", len(list), n, err)
	}

	ctKey := func(src, dst netip.AddrPort, dir maps.CTDir) any { return ctKeyOf(src, dst, 6, dir) }
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	resetLocal := func() error {
		_ = l.CTTCP.Delete(ctKey(clientX, npLocal, maps.CTService))
		_ = l.CTTCP.Delete(ctKey(backendB, clientX, maps.CTReply))
		return nil
	}
	resetRemote := func() error {
		_ = l.CTTCP.Delete(ctKey(clientX, npRemote, maps.CTService))
		_ = l.SNAT.Delete(ctKey(backendR, sp, maps.CTReply))
		return nil
	}
	resetCIP := func() error {
		_ = l.CTTCP.Delete(ctKey(clientA, vipMaglev, maps.CTService))
		_ = l.CTTCP.Delete(ctKey(backendB, clientA, maps.CTReply))
		_ = l.CTTCP.Delete(ctKey(backendR, clientA, maps.CTReply))
		return nil
	}
	for _, bc := range []struct {
		name  string
		prog  *ebpf.Program
		pkt   []byte
		reset func() error // nil: established (conntrack hit after the first run)
		skip  bool
	}{
		{"nodeport-local/new-flow", d.FromNetdev, xFrame.to(npLocal).tcp(synOnly), resetLocal, false},
		{"nodeport-local/established", d.FromNetdev, xFrame.to(npLocal).tcp(ackOnly), nil, false},
		{"nodeport-snat/new-flow", d.FromNetdev, xFrame.to(npRemote).tcp(synOnly), resetRemote, n == 1},
		{"nodeport-snat/established", d.FromNetdev, xFrame.to(npRemote).tcp(ackOnly), nil, n == 1},
		{"clusterip/new-flow", d.FromContainer, podAFrame(clientA, vipMaglev).tcp(synOnly), resetCIP, n == 1},
		{"clusterip/established", d.FromContainer, podAFrame(clientA, vipMaglev).tcp(ackOnly), nil, n == 1},
		{"no-service/local-pod", d.FromNetdev, fromUnderlay(podBIP).tcpSYN(), nil, false},
	} {
		if bc.skip {
			continue
		}
		b.Run(bc.name, func(b *testing.B) { benchRedirect(b, f.path, bc.prog, bc.pkt, bc.reset) })
	}
}

// BenchmarkLBDSR measures the DSR paths (native routing, option dispatch): the
// balancing node on a NodePort SYN (new flow: Maglev, conntrack, DNAT, one route
// lookup for MTU and forwarding, option insertion), on an established flow's packet
// and on a UDP datagram (established, with the option); the backend's node
// reading the option of a SYN (conntrack entry) and translating the backend's reply.
func BenchmarkLBDSR(b *testing.B) {
	cfg := lbConfig(b, lbOpts{Mode: config.LBModeDSR})
	cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
	e := newNodePortEnv(b, "bench-dsr", cfg)
	l := e.d.LB
	svc := netip.MustParseAddrPort("192.168.50.9:30080")
	resetNew := func() error { return l.CTTCP.Delete(ctKeyOf(clientX, npRemote, 6, maps.CTService)) }
	learn := withDSROption(frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: clientX, dst: backendB, ttl: 63}.tcp(synOnly), svc)
	for _, bc := range []struct {
		name  string
		prog  *ebpf.Program
		pkt   []byte
		reset func() error
	}{
		{"balancer/new-flow-syn", e.d.FromNetdev, xFrame.to(npRemote).tcp(synOnly), resetNew},
		{"balancer/established", e.d.FromNetdev, xFrame.to(npRemote).tcp(ackOnly), nil},
		{"balancer/udp-datagram", e.d.FromNetdev, xFrame.to(npUDP).udp(), nil}, // every datagram carries the option
		{"backend-node/syn-with-option", e.d.FromNetdev, learn, nil},
		{"backend-node/reply", e.d.FromContainer, podBFrame(backendB, clientX).tcp(ackOnly), nil},
	} {
		b.Run(bc.name, func(b *testing.B) { benchRedirect(b, e.f.path, bc.prog, bc.pkt, bc.reset) })
	}
}

// benchRedirect benchmarks prog on pkt inside the namespace at nsPath, after checking
// the packet takes the redirect path: a new flow each run when reset (which deletes
// what the previous run created) is given, the established flow otherwise.
func benchRedirect(b *testing.B, nsPath string, prog *ebpf.Program, pkt []byte, reset func() error) {
	testrun.BenchPath(b, nsPath, prog, pkt, testrun.Redirect, reset)
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// TestWatchFIBBumps runs the agent's watcher on a throwaway namespace and changes its
// routes and a neighbour's MAC: after each change the pinned dp_gen's slot 0, read
// through a handle of its own, must have grown within a deadline.
func TestWatchFIBBumps(t *testing.T) {
	testutil.RequireRoot(t)
	pin := testrun.MountBPFFS(t)
	gen, err := maps.OpenGenerations(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer gen.Close()
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(pin, maps.GenerationsPin), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	slot0 := func() uint32 {
		var v uint32
		if err := pinned.Lookup(maps.GenFIB, &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := slot0(); v != 1 {
		t.Fatalf("a new dp_gen starts slot 0 at %d, want 1 (0 would mean: remember nothing)", v)
	}

	name := testrun.NewNetns(t, fmt.Sprintf("ppfibgen%d", os.Getpid()))
	ns, err := netns.GetFromPath(nsutil.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h := testrun.NetlinkAt(t, name)
	dev := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "veth0"}, PeerName: "veth1"}
	if err := h.LinkAdd(dev); err != nil {
		t.Fatal(err)
	}
	link, err := h.LinkByName("veth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := h.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		watchFIB(ctx, &ns, func(string) { _, _ = maps.BumpGeneration(gen, maps.GenFIB) }, slog.Default(), ready)
	}()
	defer func() { cancel(); <-done }()
	select {
	case <-ready:
	case <-time.After(5 * time.Second):
		t.Fatal("watcher not subscribed within 5s")
	}

	// grows applies change and waits (2s) for slot 0 to exceed its value before it.
	grows := func(what string, change func() error) {
		t.Helper()
		time.Sleep(20 * time.Millisecond) // let the previous change's bump land first
		before := slot0()
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		deadline := time.Now().Add(2 * time.Second)
		for slot0() <= before {
			if time.Now().After(deadline) {
				t.Fatalf("%s: dp_gen slot 0 still %d 2s after the change, want > %d", what, slot0(), before)
			}
			time.Sleep(5 * time.Millisecond)
		}
		t.Logf("%s: slot 0 %d -> %d", what, before, slot0())
	}
	dst := &net.IPNet{IP: net.IPv4(198, 51, 100, 0), Mask: net.CIDRMask(24, 32)}
	grows("route add", func() error {
		return h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.IPv4(192, 0, 2, 2), LinkIndex: link.Attrs().Index})
	})
	grows("route replace (other next hop)", func() error {
		return h.RouteReplace(&netlink.Route{Dst: dst, Gw: net.IPv4(192, 0, 2, 3), LinkIndex: link.Attrs().Index})
	})
	grows("route add in table 100", func() error {
		return h.RouteAdd(&netlink.Route{Dst: dst, Gw: net.IPv4(192, 0, 2, 3), LinkIndex: link.Attrs().Index, Table: 100})
	})
	neigh := func(mac string) func() error {
		return func() error {
			hw, _ := net.ParseMAC(mac)
			return h.NeighSet(&netlink.Neigh{LinkIndex: link.Attrs().Index, Family: netlink.FAMILY_V4,
				State: netlink.NUD_REACHABLE, IP: net.IPv4(192, 0, 2, 3), HardwareAddr: hw})
		}
	}
	grows("neighbour add", neigh("02:00:00:00:00:01"))
	grows("neighbour MAC change", neigh("02:00:00:00:00:02"))
	grows("link down", func() error { return h.LinkSetDown(link) })

	// A burst: the last change of it is followed by a bump, so the generation read
	// after the burst settles differs from every one read before its last event.
	var mid uint32
	grows("burst of 64 routes", func() error {
		for i := range 64 {
			if i == 63 {
				mid = slot0()
			}
			r := &netlink.Route{Dst: &net.IPNet{IP: net.IPv4(203, 0, 113, byte(i)), Mask: net.CIDRMask(32, 32)}, Type: 7 /* RTN_BLACKHOLE */}
			if err := h.RouteAdd(r); err != nil {
				return err
			}
		}
		return nil
	})
	deadline := time.Now().Add(2 * time.Second)
	for slot0() <= mid {
		if time.Now().After(deadline) {
			t.Fatalf("no bump after the burst's last route: slot 0 %d, read %d before it", slot0(), mid)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestGenerationsKeepAndWrap: reopening dp_gen keeps its generations (an agent restart
// must not hand out one a flow already remembered), and a bump skips 0.
func TestGenerationsKeepAndWrap(t *testing.T) {
	testutil.RequireRoot(t)
	pin := testrun.MountBPFFS(t)
	g, err := maps.OpenGenerations(pin)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := maps.BumpGeneration(g, maps.GenBackend); err != nil {
			t.Fatal(err)
		}
	}
	g.Close()
	g, err = maps.OpenGenerations(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if v, _ := maps.Generation(g, maps.GenBackend); v != 4 {
		t.Fatalf("after 3 bumps and a reopen slot 1 is %d, want 4", v)
	}
	if v, _ := maps.Generation(g, maps.GenFIB); v != 1 {
		t.Fatalf("untouched slot 0 is %d after a reopen, want 1", v)
	}
	pinned, err := ebpf.LoadPinnedMap(filepath.Join(pin, maps.GenerationsPin), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pinned.Close()
	if err := pinned.Put(maps.GenFIB, ^uint32(0)); err != nil {
		t.Fatal(err)
	}
	if v, err := maps.BumpGeneration(g, maps.GenFIB); err != nil || v != 1 {
		t.Fatalf("bump from 0xffffffff gives %d (%v), want 1: 0 means no cache", v, err)
	}
}

// TestBackendGeneration programs a service's backends into a loaded datapath's
// lb_backends: adding a backend or writing it unchanged keeps dp_gen slot 1 (a
// flow's cached backend is still right), a state change and a deletion bump it.
func TestBackendGeneration(t *testing.T) {
	testutil.RequireRoot(t)
	c := config.Default()
	c.KubeProxyReplacement = config.KPRTrue
	cfg, sizes, err := datapathConfig(c, bpfconfig.Node{ID: 1, IP: netip.MustParseAddr("192.168.77.1"), TunnelMTU: 1450, VXLANIfindex: 12})
	if err != nil {
		t.Fatal(err)
	}
	dp, err := loader.LoadDatapath(cfg, &loader.Options{MapSizes: sizes})
	if err != nil {
		t.Fatal(err)
	}
	defer dp.Close()
	// The loader's dp_gen: maps.LB bumps it itself when a backend changes, so the
	// agent's service paths need no bump of their own.
	gen := dp.LB.Gen
	d := &datapath{dp: dp, gen: gen, log: slog.Default()}
	slot1 := func() uint32 {
		v, err := maps.Generation(gen, maps.GenBackend)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	svc := &Service{Name: "web", Type: "ClusterIP", ClusterIP: netip.MustParseAddr("10.96.0.10"), Port: 80, Protocol: "TCP",
		Backends: []ServiceBackend{{IP: netip.MustParseAddr("10.244.2.10"), Port: 8080}, {IP: netip.MustParseAddr("10.244.2.11"), Port: 8080}}}
	step := func(what string, change func() error, bumps bool) {
		t.Helper()
		before := slot1()
		if err := change(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if after := slot1(); (after != before) != bumps {
			t.Fatalf("%s: dp_gen slot 1 %d -> %d, want a bump: %t", what, before, after, bumps)
		}
	}
	step("add two backends", func() error { return d.programFrontends(svc, c) }, false)
	step("write them unchanged", func() error { return d.programFrontends(svc, c) }, false)
	svc.Backends[1].State = "terminating"
	step("second backend terminating", func() error { return d.programFrontends(svc, c) }, true)
	step("delete the second backend", func() error { return d.deleteBackends([]uint32{backendID(svc, svc.Backends[1])}) }, true)
	svc.Backends = svc.Backends[:1]
	step("remove the service", func() error { return d.unprogramService(svc, nil) }, true)
}

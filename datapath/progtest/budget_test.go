// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfobj"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
)

// The per-packet budget (docs/budget.md): an established NodePort flow's conntrack
// entry caches the route to its backend (bpf_fib_lookup's result) and the backend's
// address and locality, valid while the dp_gen slot they were stored at is
// unchanged. Each fixture changes the kernel or map state under an established
// flow and shows both halves: without a bump the packet still leaves as the cache
// says (the lookup was skipped), and after maps.BumpGeneration of the slot it leaves
// as the new state says. Every fixture runs at tc (from_netdev) and at XDP.

// budgetHook runs one packet through from_netdev or bpf_xdp of e.
type budgetHook struct {
	name string
	fwd  testrun.Verdict // the verdict of a forwarded packet
	run  func(t *testing.T, e *lbEnv, in []byte) testrun.Result
}

var budgetHooks = []budgetHook{
	{"tc", testrun.Redirect, func(t *testing.T, e *lbEnv, in []byte) testrun.Result {
		t.Helper()
		res, _ := e.run(t, e.d.FromNetdev, e.f.eth0, in)
		return res
	}},
	{"xdp", testrun.XDPTx, func(t *testing.T, e *lbEnv, in []byte) testrun.Result {
		t.Helper()
		res := runInNS(t, e.f.path, e.d.XDP, in, &testrun.XdpContext{DataEnd: uint32(len(in)), IngressIfindex: uint32(e.f.eth0)})
		e.drain(t)
		return res
	}},
}

// budgetFlow starts the SNAT flow clientX -> npRemote (backend 2, node 2) on hook h
// and sends one established packet, which stores the caches; it returns the SNAT
// source and the flow's CT_SERVICE entry, whose caches must then be set.
func budgetFlow(t *testing.T, h budgetHook, e *lbEnv) netip.AddrPort {
	t.Helper()
	cfg := lbConfig(t, lbOpts{})
	sp := netip.AddrPortFrom(hostIP, snatPort(cfg, clientX, backendR, 6))
	for _, fl := range []tcpFlags{synOnly, ackOnly} {
		want := budgetOut(gw2MAC, sp, backendR, fl)
		if res := h.run(t, e, xFrame.to(npRemote).tcp(fl)); res.Verdict != h.fwd || !bytes.Equal(res.Out, want) {
			t.Fatalf("%s: flow setup: verdict %v\n%s", h.name, res.Verdict, testrun.Diff(want, res.Out))
		}
	}
	ce, ok := ctFind(t, e.d.LB, "ct_tcp", clientX, npRemote, maps.CTService)
	if !ok || ce.BackendGen == 0 || ce.FIBGen == 0 {
		t.Fatalf("%s: after an established packet the entry caches nothing: %+v (found %v)", h.name, ce, ok)
	}
	return sp
}

// budgetOut is the translated packet as it leaves eth0 towards node 2's router mac.
func budgetOut(mac net.HardwareAddr, src, dst netip.AddrPort, fl tcpFlags) []byte {
	return frame{srcMAC: eth0MAC, dstMAC: mac, src: src, dst: dst, ttl: 63}.tcp(fl)
}

func budgetSend(t *testing.T, h budgetHook, e *lbEnv, step string, want []byte, verdict testrun.Verdict) {
	t.Helper()
	res := h.run(t, e, xFrame.to(npRemote).tcp(ackOnly))
	if res.Verdict != verdict || (want != nil && !bytes.Equal(res.Out, want)) {
		t.Fatalf("%s: %s: verdict %v, want %v\n%s", h.name, step, res.Verdict, verdict, testrun.Diff(want, res.Out))
	}
}

func budgetBump(t *testing.T, e *lbEnv, slot uint32) {
	t.Helper()
	if _, err := maps.BumpGeneration(e.d.LB.Gen, slot); err != nil {
		t.Fatal(err)
	}
}

// Trick 1: the route (egress device, MACs, MTU) in the entry. Node 2's router gets
// a new MAC: until GenFIB is bumped the flow still goes to the old one (no
// bpf_fib_lookup: it would have found the new MAC), after the bump to the new one.
// Then the route is deleted: still forwarded from the cache, and after the bump
// handed to the stack (tc: no route; XDP: XDP_PASS), as without the cache.
func TestBudgetFIBCache(t *testing.T) {
	newMAC := mustMAC("02:00:00:00:50:22")
	for _, h := range budgetHooks {
		t.Run(h.name, func(t *testing.T) {
			e := newNodePortEnv(t, "bfib-"+h.name, lbConfig(t, lbOpts{}))
			sp := budgetFlow(t, h, e)
			nl := testrun.NetlinkAt(t, e.f.name)
			if err := nl.NeighSet(&netlink.Neigh{LinkIndex: e.f.eth0, IP: gw2IP.AsSlice(), HardwareAddr: newMAC,
				State: netlink.NUD_PERMANENT, Family: unix.AF_INET}); err != nil {
				t.Fatal(err)
			}
			budgetSend(t, h, e, "new neighbour MAC, generation unchanged: the cached MAC",
				budgetOut(gw2MAC, sp, backendR, ackOnly), h.fwd)
			budgetBump(t, e, maps.GenFIB)
			budgetSend(t, h, e, "after the FIB bump: the new MAC",
				budgetOut(newMAC, sp, backendR, ackOnly), h.fwd)

			if err := nl.RouteDel(&netlink.Route{Dst: ipnet("10.244.2.0/24"), Gw: gw2IP.AsSlice(), LinkIndex: e.f.eth0}); err != nil {
				t.Fatal(err)
			}
			budgetSend(t, h, e, "route deleted, generation unchanged: still the cached route",
				budgetOut(newMAC, sp, backendR, ackOnly), h.fwd)
			budgetBump(t, e, maps.GenFIB)
			stack := testrun.Next
			if h.name == "xdp" {
				stack = testrun.XDPPass
			}
			budgetSend(t, h, e, "after the FIB bump: no route, the stack's", nil, stack)
		})
	}
}

// Trick 2: the backend's address and port in the entry. lb_backends is rewritten
// behind the load balancer's back (no bump): the flow keeps the cached address
// (no lb_backends lookup); after a GenBackend bump it is re-read by backend id, as
// without the cache. BackendUpsert bumps by itself.
func TestBudgetBackendCache(t *testing.T) {
	moved := netip.AddrPortFrom(netip.MustParseAddr("10.244.2.31"), 8080)
	movedAgain := netip.AddrPortFrom(netip.MustParseAddr("10.244.2.32"), 8081)
	for _, h := range budgetHooks {
		t.Run(h.name, func(t *testing.T) {
			e := newNodePortEnv(t, "bbe-"+h.name, lbConfig(t, lbOpts{}))
			sp := budgetFlow(t, h, e)
			raw := bpfobj.LxcLbBackend{Addr: wire4(moved.Addr()), Port: wire16(moved.Port()), Proto: 6}
			if err := e.d.LB.Backends.Put(uint32(2), raw); err != nil {
				t.Fatal(err)
			}
			budgetSend(t, h, e, "backend rewritten, generation unchanged: the cached address",
				budgetOut(gw2MAC, sp, backendR, ackOnly), h.fwd)
			budgetBump(t, e, maps.GenBackend)
			budgetSend(t, h, e, "after the backend bump: the address lb_backends has",
				budgetOut(gw2MAC, sp, moved, ackOnly), h.fwd)
			if err := e.d.LB.BackendUpsert(maps.Backend{ID: 2, Addr: movedAgain.Addr(), Port: movedAgain.Port(), Proto: maps.ProtoTCP}); err != nil {
				t.Fatal(err)
			}
			budgetSend(t, h, e, "BackendUpsert with a new address bumps by itself",
				budgetOut(gw2MAC, sp, movedAgain, ackOnly), h.fwd)
		})
	}
}

// Trick 3: locality. An established SNAT flow's entry says its backend is remote, so
// tc's lb_forward() makes no endpoint lookup: a pod with the backend's address
// appearing on this node (endpoint written without a bump) does not divert it;
// after a GenBackend bump the locality is checked again and, no longer holding, the
// flow takes the full path, which delivers to the pod (redirect_peer), as without
// the cache. XDP makes no endpoint lookup for established flows in any case: it
// keeps forwarding (as before the budget), which the fixture states too.
func TestBudgetLocality(t *testing.T) {
	for _, h := range budgetHooks {
		t.Run(h.name, func(t *testing.T) {
			e := newNodePortEnv(t, "bloc-"+h.name, lbConfig(t, lbOpts{}))
			sp := budgetFlow(t, h, e)
			ep := maps.Endpoint{IP: backendR.Addr(), Ifindex: 4343, MAC: mustMAC("02:00:00:00:02:1e"), HostMAC: lxcBMAC, Identity: 1001}
			if err := e.d.Maps.EndpointUpsert(ep); err != nil {
				t.Fatal(err)
			}
			budgetSend(t, h, e, "backend now a pod here, generation unchanged: still remote",
				budgetOut(gw2MAC, sp, backendR, ackOnly), h.fwd)
			budgetBump(t, e, maps.GenBackend)
			if h.name == "xdp" {
				budgetSend(t, h, e, "after the bump, XDP (no endpoint lookup, as before)",
					budgetOut(gw2MAC, sp, backendR, ackOnly), h.fwd)
				return
			}
			local := frame{srcMAC: lxcBMAC, dstMAC: ep.MAC, src: sp, dst: backendR, ttl: 63}.tcp(ackOnly)
			budgetSend(t, h, e, "after the bump: delivered to the pod", local, testrun.Redirect)
			if ce, _ := ctFind(t, e.d.LB, "ct_tcp", clientX, npRemote, maps.CTService); ce.BackendGen != 1 {
				t.Fatalf("an entry whose locality no longer holds must not be cached again: %+v", ce)
			}
		})
	}
}

// The replies of a SNATed NodePort flow at XDP: the route back to the client is kept
// in the snat reply entry under the same rule (tc's reply path still looks it up
// each time). The client's router gets a new MAC: the reply still goes to the old
// one until GenFIB is bumped, then to the new one.
func TestBudgetXDPReplyRoute(t *testing.T) {
	h := budgetHooks[1]
	newMAC := mustMAC("02:00:00:00:50:23")
	e := newNodePortEnv(t, "brep", lbConfig(t, lbOpts{}))
	sp := budgetFlow(t, h, e)
	reply := frame{srcMAC: remoteMAC, dstMAC: eth0MAC, src: backendR, dst: sp}.tcp(ackOnly)
	out := func(mac net.HardwareAddr) []byte {
		return frame{srcMAC: eth0MAC, dstMAC: mac, src: npRemote, dst: clientX, ttl: 63}.tcp(ackOnly)
	}
	send := func(step string, want []byte) {
		t.Helper()
		res := h.run(t, e, reply)
		if res.Verdict != testrun.XDPTx || !bytes.Equal(res.Out, want) {
			t.Fatalf("%s: verdict %v\n%s", step, res.Verdict, testrun.Diff(want, res.Out))
		}
	}
	send("first reply: route looked up and stored", out(gw2MAC))
	if ce, ok := ctFind(t, e.d.LB, "snat", backendR, sp, maps.CTReply); !ok || ce.FIBGen == 0 || ce.BackendGen != 0 {
		t.Fatalf("snat reply entry after a reply at XDP: %+v (found %v): want a route cached, no backend", ce, ok)
	}
	if err := testrun.NetlinkAt(t, e.f.name).NeighSet(&netlink.Neigh{LinkIndex: e.f.eth0, IP: gw2IP.AsSlice(), HardwareAddr: newMAC,
		State: netlink.NUD_PERMANENT, Family: unix.AF_INET}); err != nil {
		t.Fatal(err)
	}
	send("new neighbour MAC, generation unchanged: the cached MAC", out(gw2MAC))
	budgetBump(t, e, maps.GenFIB)
	send("after the FIB bump: the new MAC", out(newMAC))
}

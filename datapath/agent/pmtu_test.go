// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"podpath/datapath/config"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
)

// fakePath is a pmtuConn over a modelled underlay: the links on the way to the peer
// (their MTUs), whether routers answer frag-needed, whether the peer answers port
// unreachable; it keeps the kernel's path MTU as a real socket would.
type fakePath struct {
	links      []int // MTU of each link on the way
	silent     bool  // routers drop without ICMP (a black hole)
	peerSilent bool  // the peer does not answer port unreachable
	kernel     int   // the kernel's path MTU (starts at the device MTU)
	pending    error
	sent       []int
}

func (f *fakePath) Send(size int) error {
	if size > f.kernel {
		return unix.EMSGSIZE
	}
	f.sent = append(f.sent, size)
	for _, mtu := range f.links {
		if size > mtu {
			if !f.silent {
				f.kernel, f.pending = mtu, unix.EMSGSIZE
			}
			return nil
		}
	}
	if !f.peerSilent {
		f.pending = unix.ECONNREFUSED
	}
	return nil
}

func (f *fakePath) MTU() (int, error) { return f.kernel, nil }

func (f *fakePath) Pending() error {
	err := f.pending
	f.pending = nil
	return err
}

func TestProbePathMTU(t *testing.T) {
	for _, c := range []struct {
		name     string
		path     fakePath
		start    int
		want     int
		wantSent []int
		howHas   string
		err      string
	}{
		{name: "jumbo to a 1400 leg behind a router", path: fakePath{links: []int{9000, 1400}, kernel: 9000},
			start: 9000, want: 1400, wantSent: []int{9000, 1400}, howHas: "ICMP frag-needed (mtu 1400) for a 9000-byte DF probe; a 1400-byte DF probe reached the peer"},
		{name: "two narrowings on the way", path: fakePath{links: []int{9000, 4000, 1500}, kernel: 9000},
			start: 9000, want: 1500, wantSent: []int{9000, 4000, 1500}, howHas: "frag-needed (mtu 1500) for a 4000-byte"},
		{name: "path as wide as the device", path: fakePath{links: []int{1500, 1500}, kernel: 1500},
			start: 1500, want: 1500, wantSent: []int{1500}, howHas: "the device MTU; a 1500-byte DF probe reached the peer"},
		{name: "the kernel already knows the path MTU", path: fakePath{links: []int{9000, 1400}, kernel: 1400},
			start: 9000, want: 1400, wantSent: []int{1400}, howHas: "the kernel's path MTU 1400"},
		{name: "silent peer: the size stays, unconfirmed", path: fakePath{links: []int{9000, 1400}, kernel: 9000, peerSilent: true},
			start: 9000, want: 1400, wantSent: []int{9000, 1400}, howHas: "(unconfirmed)"},
		{name: "black-hole router: cannot be told, the device MTU stays unconfirmed", path: fakePath{links: []int{9000, 1400}, kernel: 9000, silent: true},
			start: 9000, want: 9000, wantSent: []int{9000}, howHas: "no answer to a 9000-byte DF probe"},
		{name: "more narrowings than tries", path: fakePath{links: []int{9000, 8000, 7000, 6000}, kernel: 9000},
			start: 9000, wantSent: []int{9000, 8000}, err: "not stable after 2 datagrams"},
		{name: "a path below the IPv4 minimum", path: fakePath{links: []int{9000, 500}, kernel: 9000},
			start: 9000, wantSent: []int{9000}, err: "below the minimum 552"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tries := pmtuTries
			if strings.Contains(c.err, "not stable") {
				tries = 2
			}
			res, err := probePathMTU(context.Background(), &c.path, c.start, 20*time.Millisecond, tries)
			switch {
			case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
				t.Fatalf("err %v, want %q", err, c.err)
			case c.err == "" && err != nil:
				t.Fatalf("err %v", err)
			case c.err == "" && res.PathMTU != c.want:
				t.Errorf("path MTU %d, want %d (%s)", res.PathMTU, c.want, res.How)
			case !strings.Contains(res.How, c.howHas):
				t.Errorf("how %q, want it to say %q", res.How, c.howHas)
			}
			if got := c.path.sent; !equalInts(got, c.wantSent) {
				t.Errorf("datagrams %v, want %v", got, c.wantSent)
			}
		})
	}
}

func TestProbePathMTUHonoursItsDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	f := &fakePath{links: []int{9000}, kernel: 9000}
	if _, err := probePathMTU(ctx, f, 9000, time.Second, pmtuTries); !errors.Is(err, context.Canceled) {
		t.Fatalf("err %v, want the context's", err)
	}
	if len(f.sent) != 0 {
		t.Errorf("sent %v after the deadline", f.sent)
	}
}

func TestPlanPeerMTU(t *testing.T) {
	vxlanJumbo := MTUs{Device: 9000, Overhead: 50, Route: 8950}
	for _, c := range []struct {
		name        string
		res         probeResult
		m           MTUs
		path, route int
		mapMTU      uint32
	}{
		{"narrower path: per-peer MTU in the map", probeResult{PathMTU: 1400}, vxlanJumbo, 1400, 1350, 1350},
		{"path as wide as the device: the global MTU (map 0)", probeResult{PathMTU: 9000}, vxlanJumbo, 9000, 8950, 0},
		{"never wider than the device", probeResult{PathMTU: 9216}, vxlanJumbo, 9000, 8950, 0},
		{"geneve with option bytes", probeResult{PathMTU: 1400}, MTUs{Device: 1500, Overhead: 62, Route: 1438}, 1400, 1338, 1338},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p PeerMTU
			planPeerMTU(&p, c.res, c.m)
			if p.PathMTU != c.path || p.RouteMTU != c.route || p.MapMTU != c.mapMTU {
				t.Errorf("path %d route %d map %d, want %d %d %d", p.PathMTU, p.RouteMTU, p.MapMTU, c.path, c.route, c.mapMTU)
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestLearnPeerMTUInNamespaces runs the real probe: node (MTU 9000) -- router -- peer
// over a 1400 link, in namespaces of its own. The router's frag-needed and the peer's
// port unreachable teach the kernel, and so the probe, path MTU 1400.
func TestLearnPeerMTUInNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	name := func(s string) string { return fmt.Sprintf("pptest-pmtu-%d-%s", os.Getpid(), s) }
	node, router, peer := testrun.NewNetns(t, name("node")), testrun.NewNetns(t, name("router")), testrun.NewNetns(t, name("peer"))
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("link", "add", "eth0", "netns", node, "mtu", "9000", "type", "veth", "peer", "name", "eth0", "netns", router, "mtu", "9000")
	ip("link", "add", "eth0", "netns", peer, "mtu", "1400", "type", "veth", "peer", "name", "eth1", "netns", router, "mtu", "1400")
	for _, c := range [][]string{
		{node, "eth0", "10.99.1.2/24"}, {router, "eth0", "10.99.1.1/24"}, {router, "eth1", "10.99.2.1/24"}, {peer, "eth0", "10.99.2.2/24"},
	} {
		ip("-n", c[0], "addr", "add", c[2], "dev", c[1])
		ip("-n", c[0], "link", "set", c[1], "up")
	}
	ip("-n", node, "route", "add", "10.99.2.0/24", "via", "10.99.1.1")
	ip("-n", peer, "route", "add", "10.99.1.0/24", "via", "10.99.2.1")
	if err := nsutil.Do(nsutil.Path(router), func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	var p PeerMTU
	if err := nsutil.Do(nsutil.Path(node), func() error {
		p = learnPeerMTU(Node{Name: "peer", IP: netip.MustParseAddr("10.99.2.2")},
			MTUs{Device: 9000, Overhead: config.TunnelOverhead, Route: 9000 - config.TunnelOverhead}, time.Now)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if p.Error != "" || p.PathMTU != 1400 || p.RouteMTU != 1350 || p.MapMTU != 1350 {
		t.Fatalf("learnt %+v, want path 1400, route and map 1350", p)
	}
	if !strings.Contains(p.How, "frag-needed (mtu 1400)") || !strings.Contains(p.How, "reached the peer") {
		t.Errorf("how %q: want the router's frag-needed and the peer's answer", p.How)
	}
}

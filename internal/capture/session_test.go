// SPDX-License-Identifier: Apache-2.0

package capture

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/internal/nsutil"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces and AF_PACKET sockets")
	}
}

// newNS creates a namespace pptestcap-<pid>-<suffix> removed at cleanup, and returns its path.
func newNS(t *testing.T, suffix string) string {
	t.Helper()
	name := fmt.Sprintf("pptestcap-%d-%s", os.Getpid(), suffix)
	if err := nsutil.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := nsutil.Delete(name); err != nil {
			t.Error(err)
		}
	})
	return nsutil.Path(name)
}

func handleAt(t *testing.T, nsPath string) (*netlink.Handle, netns.NsHandle) {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); ns.Close() })
	return h, ns
}

type side struct {
	member, iface, ns string
	ip                net.IP
}

// vethPair joins two new namespaces with a veth pair addressed 10.250.7.1/24 and
// 10.250.7.2/24. The peer is created directly in the second namespace.
func vethPair(t *testing.T) (a, b side) {
	t.Helper()
	a = side{"a", "veth-a", newNS(t, "a"), net.IPv4(10, 250, 7, 1).To4()}
	b = side{"b", "veth-b", newNS(t, "b"), net.IPv4(10, 250, 7, 2).To4()}
	ha, _ := handleAt(t, a.ns)
	hb, nsB := handleAt(t, b.ns)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a.iface}, PeerName: b.iface, PeerNamespace: netlink.NsFd(nsB)}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for _, s := range []struct {
		h *netlink.Handle
		side
	}{{ha, a}, {hb, b}} {
		link, err := s.h.LinkByName(s.iface)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.h.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: s.ip, Mask: net.CIDRMask(24, 32)}}); err != nil {
			t.Fatalf("address %s: %v", s.iface, err)
		}
		if err := s.h.LinkSetUp(link); err != nil {
			t.Fatalf("up %s: %v", s.iface, err)
		}
	}
	return a, b
}

// runIn runs a command inside the namespace: it is started from a thread in there, so
// the child is born in it.
func runIn(t *testing.T, nsPath string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := nsutil.Do(nsPath, cmd.Start); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out.String())
	}
	return out.String()
}

func echoIDSeq(t *testing.T, p Packet) (uint16, uint16) {
	t.Helper()
	for _, l := range p.Decode().Layers() {
		if icmp, ok := l.(*layers.ICMPv4); ok {
			return icmp.Id, icmp.Seq
		}
	}
	t.Fatalf("no ICMPv4 in %s", p.Summary())
	return 0, 0
}

func TestPingAcrossVeth(t *testing.T) {
	requireRoot(t)
	a, b := vethPair(t)
	dir := t.TempDir()
	s, err := Start(dir,
		Point{Member: a.member, Interface: a.iface, NsPath: a.ns},
		Point{Member: b.member, Interface: b.iface, NsPath: b.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// A waiter blocked before the traffic starts is woken as packets arrive.
	early := make(chan error, 1)
	go func() {
		_, err := s.WaitFor(ctx, a.member, a.iface, ICMPEcho(a.ip, b.ip), 3)
		early <- err
	}()

	runIn(t, a.ns, "ping", "-n", "-c3", "-i0.2", "-W2", b.ip.String())
	if err := <-early; err != nil {
		t.Fatal(err)
	}
	// Stop at once: frames still queued in the sockets must not be lost.
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, p := range s.All(nil) {
		t.Log(p.Summary())
	}
	waits := []struct {
		side     side
		f        Filter
		outgoing bool
	}{
		{a, ICMPEcho(a.ip, b.ip), true},
		{b, ICMPEcho(a.ip, b.ip), false},
		{b, ICMPEchoReply(b.ip, a.ip), true},
		{a, ICMPEchoReply(b.ip, a.ip), false},
	}
	for _, w := range waits {
		got, err := s.WaitFor(ctx, w.side.member, w.side.iface, w.f, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 3 {
			t.Fatalf("%s/%s: %d matches, want 3", w.side.member, w.side.iface, len(got))
		}
		for _, p := range got {
			if p.Outgoing != w.outgoing {
				t.Errorf("want outgoing=%v: %s", w.outgoing, p.Summary())
			}
		}
	}
	if d := s.Dropped(); d != 0 {
		t.Errorf("kernel dropped %d frames", d)
	}

	for _, req := range s.Packets(a.member, a.iface, ICMPEcho(a.ip, b.ip)) {
		id, seq := echoIDSeq(t, req)
		for _, tc := range []struct {
			name string
			f    Filter
			hops []side
		}{
			{"request", ICMPEchoSeq(a.ip, b.ip, id, seq), []side{a, b}},
			{"reply", ICMPEchoReplySeq(b.ip, a.ip, id, seq), []side{b, a}},
		} {
			path := s.Path(tc.f)
			var trace strings.Builder
			for _, p := range path {
				fmt.Fprintf(&trace, "\n  %s", p.Summary())
			}
			if len(path) != len(tc.hops) {
				t.Fatalf("%s seq %d: %d hops, want %d:%s", tc.name, seq, len(path), len(tc.hops), trace.String())
			}
			for i, hop := range tc.hops {
				if path[i].Member != hop.member || path[i].Interface != hop.iface {
					t.Errorf("%s seq %d: hop %d at %s/%s, want %s/%s:%s", tc.name, seq, i, path[i].Member, path[i].Interface, hop.member, hop.iface, trace.String())
				}
				if i > 0 && !path[i-1].Timestamp.Before(path[i].Timestamp) {
					t.Errorf("%s seq %d: hop timestamps not increasing:%s", tc.name, seq, trace.String())
				}
			}
		}
	}
	if all := s.All(Or(ICMPEcho(a.ip, b.ip), ICMPEchoReply(b.ip, a.ip))); len(all) != 12 {
		t.Errorf("All: %d ICMP echo frames, want 12", len(all))
	}

	for _, sd := range []side{a, b} {
		checkPcap(t, s, sd.member, sd.iface)
	}
}

// checkPcap reads a point's pcap back and compares it with the session's packets, then
// has tshark (when installed) parse it.
func checkPcap(t *testing.T, s *Session, member, iface string) {
	t.Helper()
	path := s.PcapPath(member, iface)
	if want := member + "_" + iface + ".pcap"; !strings.HasSuffix(path, want) {
		t.Errorf("pcap path %q, want it named %s", path, want)
	}
	want := s.Packets(member, iface, nil)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(bufio.NewReader(f))
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	if r.LinkType() != layers.LinkTypeEthernet {
		t.Errorf("%s: link type %v", path, r.LinkType())
	}
	n := 0
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s packet %d: %v", path, n, err)
		}
		found := false
		for _, p := range want {
			if p.Timestamp.Equal(ci.Timestamp) && string(p.Data) == string(data) && p.Length == ci.Length {
				found = true
				break
			}
		}
		if !found {
			t.Errorf("%s packet %d (%v, %d bytes) not among the session's packets", path, n, ci.Timestamp, len(data))
		}
		n++
	}
	if n != len(want) || n == 0 {
		t.Errorf("%s holds %d packets, session saw %d", path, n, len(want))
	}

	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Log("tshark not installed: skipping its check")
		return
	}
	cmd := exec.Command(tshark, "-n", "-r", path)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark -r %s: %v\n%s", path, err, stderr.String())
	}
	t.Logf("tshark -r %s:\n%s", path, out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != n {
		t.Errorf("tshark lists %d packets in %s, want %d:\n%s", len(lines), path, n, out)
	}
	if c := strings.Count(string(out), "ICMP"); c < 6 {
		t.Errorf("tshark lists %d ICMP packets in %s, want 6:\n%s", c, path, out)
	}
}

func TestStopIdle(t *testing.T) {
	requireRoot(t)
	ns := newNS(t, "idle")
	before := runtime.NumGoroutine()
	s, err := Start(t.TempDir(), Point{Member: "idle", Interface: "lo", NsPath: ns})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := s.WaitFor(ctx, "idle", "lo", nil, 1); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor on an idle interface: %v, want deadline exceeded", err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Stop took %v", d)
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Stop did not return within 2s")
	}
	if err := s.Stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := s.WaitFor(context.Background(), "idle", "lo", nil, 1); !errors.Is(err, ErrStopped) {
		t.Fatalf("WaitFor after Stop: %v, want ErrStopped", err)
	}
	var after int
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
	}
	t.Errorf("goroutines: %d before Start, %d after Stop", before, after)
}

func TestStartErrors(t *testing.T) {
	tests := []struct {
		name   string
		root   bool
		points []Point
		want   string
	}{
		{"no member", false, []Point{{Interface: "eth0"}}, "needs a member"},
		{"duplicate", false, []Point{{Member: "n", Interface: "eth0"}, {Member: "n", Interface: "eth0"}}, "given twice"},
		{"same file", false, []Point{{Member: "n/1", Interface: "eth0"}, {Member: "n:1", Interface: "eth0"}}, "would share"},
		{"missing interface", true, nil, "nope0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root {
				requireRoot(t)
				tt.points = []Point{{Member: "x", Interface: "nope0", NsPath: newNS(t, "err")}}
			}
			s, err := Start(t.TempDir(), tt.points...)
			if err == nil {
				s.Stop()
				t.Fatal("Start succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q lacks %q", err, tt.want)
			}
		})
	}
}

// Frames queued before an expired deadline are still returned: Stop relies on this to
// keep what arrived before it even when a reader had not been scheduled yet.
func TestSourceDrainsQueuedFramesPastDeadline(t *testing.T) {
	requireRoot(t)
	a, b := vethPair(t)
	src, err := OpenSource(b.ns, b.iface, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	runIn(t, a.ns, "ping", "-c", "3", "-i", "0.01", "-W", "1", b.ip.String())
	if err := src.SetReadDeadline(time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	echoes := 0
	for {
		data, _, err := src.ReadPacketData()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if ICMPEcho(a.ip, b.ip)(gopacket.NewPacket(data, layers.LayerTypeEthernet, gopacket.Default)) {
			echoes++
		}
	}
	if echoes != 3 {
		t.Fatalf("want the 3 queued echo requests read past the deadline, got %d", echoes)
	}
}

// A bulk TCP transfer over a veth travels as GSO super-packets longer than the MTU; their
// segment size brings every frame back within MTU + Ethernet header, as on a real wire.
func TestGSOSuperPacketsFitTheWire(t *testing.T) {
	requireRoot(t)
	a, b := vethPair(t)
	s, err := Start(t.TempDir(), Point{Member: a.member, Interface: a.iface, NsPath: a.ns})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	var ln net.Listener
	if err := nsutil.Do(b.ns, func() (err error) { ln, err = net.Listen("tcp4", b.ip.String()+":5555"); return err }); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	if err := nsutil.Do(a.ns, func() error {
		c, err := net.Dial("tcp4", b.ip.String()+":5555")
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write(make([]byte, 4<<20))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	const mtu = 1500
	super := 0
	for _, p := range s.Packets(a.member, a.iface, TCPPort(5555)) {
		if p.WireFrameLen() > mtu+14 {
			t.Fatalf("frame of %d bytes on the wire (gso %+v, length %d) exceeds MTU %d", p.WireFrameLen(), p.GSO, p.Length, mtu)
		}
		if p.Length > mtu+14 {
			super++
			if p.GSO.Size == 0 {
				t.Fatalf("a %d-byte frame without GSO metadata", p.Length)
			}
		}
	}
	if super == 0 {
		t.Skip("no GSO super-packet seen (TSO/GSO off on this veth?)")
	}
	t.Logf("%d GSO super-packets, all within MTU once segmented", super)
}

// A wait for a packet that never comes ends at its own deadline, even under a context
// without one, and its error names what was awaited and lists what the point saw.
func TestAwaitDeadlineEvidence(t *testing.T) {
	requireRoot(t)
	a, b := vethPair(t)
	s, err := Start("", Point{Member: a.member, Interface: a.iface, NsPath: a.ns})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop() })
	runIn(t, a.ns, "ping", "-n", "-c2", "-i0.2", "-W1", b.ip.String())
	tests := []struct {
		name   string
		within time.Duration
		want   time.Duration
	}{
		{"own deadline", 300 * time.Millisecond, 300 * time.Millisecond},
		{"default, under a context without deadline", 0, DefaultWait},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.within == 0 && testing.Short() {
				t.Skip("waits DefaultWait")
			}
			start := time.Now()
			_, err := s.Await(context.Background(), Wait{Member: a.member, Interface: a.iface, N: 1, Within: tc.within,
				What: "ICMP frag-needed to a", Filter: ICMPEcho(b.ip, a.ip)})
			took := time.Since(start)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Await: %v, want deadline exceeded", err)
			}
			if took < tc.want || took > tc.want+500*time.Millisecond {
				t.Errorf("failed after %v, want %v", took, tc.want)
			}
			for _, want := range []string{"for ICMP frag-needed to a on a/veth-a", "(0 of 1 matched: context deadline exceeded); saw: ", "ICMP"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error lacks %q:\n%v", want, err)
				}
			}
			t.Log(err)
		})
	}
}

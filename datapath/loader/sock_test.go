// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/internal/cgroup2"
	"podpath/internal/nsutil"
	"podpath/internal/sockprobe"
	"podpath/internal/testutil"
)

// sockChildEnv makes the test binary a sockprobe client (TestMain): a process of its
// own, born in the test cgroup, as the harness starts pods' clients.
const sockChildEnv = "PODPATH_SOCKPROBE_CHILD"

func TestMain(m *testing.M) {
	if args := os.Getenv(sockChildEnv); args != "" {
		os.Exit(sockprobe.Main(strings.Split(args, " "), func(s string) { fmt.Println(s) }))
	}
	os.Exit(m.Run())
}

// TestSockProgTestRun records what this kernel says to BPF_PROG_TEST_RUN of a
// cgroup sock_addr program: not supported (ENOTSUPP), which is why the programs are
// proven with real connect() calls (TestSockConnect), not with fixtures.
func TestSockProgTestRun(t *testing.T) {
	testutil.RequireRoot(t)
	d := loadSockDatapath(t, sockOpts{on: true})
	_, err := d.Sock.SockConnect4.Run(&ebpf.RunOptions{Context: make([]byte, 72)})
	if err == nil {
		t.Fatalf("BPF_PROG_TEST_RUN of cgroup/connect4 succeeded: fixtures can replace the real connect() test")
	}
	if !errors.Is(err, ebpf.ErrNotSupported) && !errors.Is(err, syscall.Errno(524)) && !errors.Is(err, unix.EINVAL) {
		t.Fatalf("BPF_PROG_TEST_RUN of cgroup/connect4: %v, want not supported", err)
	}
	t.Logf("BPF_PROG_TEST_RUN of cgroup/connect4 on this kernel: %v", err)
}

type sockOpts struct {
	on, hostnsOnly bool
	nodeNs         string // the node's namespace for hostns-only; empty: the test process's
}

var (
	sockFrontend = netip.MustParseAddrPort("10.96.0.10:80")
	sockBackend  = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 7777)
)

func loadSockDatapath(t *testing.T, o sockOpts) *loader.Datapath {
	t.Helper()
	c := fixtureSettings()
	c.KubeProxyReplacement, c.MaglevTableSize = config.KPRTrue, 251
	c.LBSock, c.LBSockHostnsOnly = o.on, o.hostnsOnly
	// The "node" namespace of the hostns-only case is the test process's own.
	var cookie uint64
	if o.nodeNs == "" {
		cookie = selfNetnsCookie(t)
	} else if err := nsutil.Do(nsutil.Path(o.nodeNs), func() error { cookie = selfNetnsCookie(t); return nil }); err != nil {
		t.Fatal(err)
	}
	cfg, err := bpfconfig.Build(c, bpfconfig.Node{ID: 42, IP: hostIP, NetnsCookie: cookie})
	if err != nil {
		t.Fatal(err)
	}
	d, err := loader.LoadDatapath(cfg, &loader.Options{MapSizes: testSizes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func selfNetnsCookie(t *testing.T) uint64 {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		t.Fatalf("SO_NETNS_COOKIE: %v", err)
	}
	return v
}

// TestSockConnect proves bpf_sock with real sockets: a client process born in a
// cgroup where AttachSock attached the programs, inside a namespace whose echo
// servers listen on the backend only, asks for the frontend. The server names the
// address the connection really reached; the client prints getpeername() and
// recvfrom(). Expected: with socket-LB the backend is reached and the client sees the
// frontend; hostns-only (the node is another namespace) and off: untranslated, so
// the frontend, which nothing serves and no route reaches, fails.
func TestSockConnect(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := cgroup2.Root(); err != nil {
		t.Skipf("socket-LB needs cgroup v2: %v", err)
	}
	ns := nsName("sock")
	if err := nsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(ns) })
	cg, err := cgroup2.Create(fmt.Sprintf("pptest-ld-%d/sock", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cgroup2.Remove(filepath.Dir(cg)) })
	seen := startSockEcho(t, ns)

	for _, tc := range []struct {
		name      string
		o         sockOpts
		proto     string
		translate bool
	}{
		{"tcp connect4 and getpeername4", sockOpts{on: true}, "tcp", true},
		{"udp connected: connect4 and getpeername4", sockOpts{on: true}, "udp", true},
		{"udp sendmsg4 and recvmsg4", sockOpts{on: true}, "udp-sendto", true},
		{"tcp hostns-only from the node's namespace", sockOpts{on: true, hostnsOnly: true, nodeNs: ns}, "tcp", true},
		{"tcp hostns-only from another namespace", sockOpts{on: true, hostnsOnly: true}, "tcp", false},
		{"udp hostns-only from another namespace", sockOpts{on: true, hostnsOnly: true}, "udp-sendto", false},
		{"tcp socket-LB off", sockOpts{}, "tcp", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := loadSockDatapath(t, tc.o)
			programSockService(t, d.LB)
			links, err := d.AttachSock(cg)
			if err != nil {
				t.Fatal(err)
			}
			defer links.Close()
			seen.reset()
			r, out := runSockChild(t, ns, cg, tc.proto, sockFrontend)
			hits := seen.get()
			if !tc.translate {
				if r.Error == "" || len(hits) != 0 {
					t.Fatalf("want no translation (frontend %s unserved, unrouted), got result %+v, backend hits %v; output %s", sockFrontend, r, hits, out)
				}
				return
			}
			if r.Error != "" || !r.Echo {
				t.Fatalf("client: %+v; output %s", r, out)
			}
			if len(hits) != 1 || hits[0] != sockBackend.String() {
				t.Errorf("backend server saw %v, want one exchange at %s", hits, sockBackend)
			}
			peer := r.Peer
			if tc.proto == "udp-sendto" {
				peer = r.From
			}
			if peer != sockFrontend.String() {
				t.Errorf("client sees its peer as %q, want the frontend %s (result %+v)", peer, sockFrontend, r)
			}
		})
	}
}

func programSockService(t *testing.T, lb *maps.LB) {
	t.Helper()
	for _, p := range []maps.Proto{maps.ProtoTCP, maps.ProtoUDP} {
		be := maps.Backend{ID: uint32(p), Addr: sockBackend.Addr(), Port: sockBackend.Port(), Proto: p}
		if err := lb.BackendUpsert(be); err != nil {
			t.Fatal(err)
		}
		svc := maps.Service{ServiceKey: maps.ServiceKey{Addr: sockFrontend.Addr(), Port: sockFrontend.Port(), Proto: p},
			ID: uint32(p), Flags: maps.ServiceClusterIP, RevNatID: uint32(p), Backends: []uint32{be.ID}}
		if err := lb.ServiceUpsert(svc); err != nil {
			t.Fatal(err)
		}
	}
}

// sockHits records the local address (what the client really reached) of every
// exchange the echo servers answered.
type sockHits struct {
	mu   sync.Mutex
	hits []string
}

func (s *sockHits) add(a string) { s.mu.Lock(); s.hits = append(s.hits, a); s.mu.Unlock() }
func (s *sockHits) reset()       { s.mu.Lock(); s.hits = nil; s.mu.Unlock() }
func (s *sockHits) get() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.hits...)
}

func startSockEcho(t *testing.T, ns string) *sockHits {
	t.Helper()
	h := &sockHits{}
	l, err := nsutil.ServeTCP(nsutil.Path(ns), sockBackend.String(), func(c net.Conn) {
		defer c.Close()
		h.add(c.LocalAddr().String())
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		buf := make([]byte, 256)
		n, _ := c.Read(buf)
		_, _ = c.Write(buf[:n])
		_, _ = io.Copy(io.Discard, c)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	u, err := nsutil.ServeUDP(nsutil.Path(ns), sockBackend.String(), func(b []byte, _ net.Addr) []byte {
		h.add(sockBackend.String())
		return b
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return h
}

// runSockChild runs the test binary as a sockprobe client inside ns, born in cgroup
// cg (clone3 CLONE_INTO_CGROUP).
func runSockChild(t *testing.T, ns, cg, proto string, dst netip.AddrPort) (sockprobe.Result, string) {
	t.Helper()
	dir, err := os.Open(cg)
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, os.Args[0])
	cmd.Env = append(os.Environ(), sockChildEnv+"="+proto+" "+dst.String()+" podpath-sock-test")
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	var startErr error
	if err := nsutil.Do(nsutil.Path(ns), func() error { startErr = cmd.Start(); return nil }); err != nil {
		t.Fatal(err)
	}
	if startErr != nil {
		t.Fatal(startErr)
	}
	_ = cmd.Wait()
	r, err := sockprobe.Parse(out.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return r, out.String()
}

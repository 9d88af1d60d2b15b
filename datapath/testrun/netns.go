// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"fmt"
	"os"
	"os/exec"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"podpath/internal/nsutil"
)

// NewNetns creates the named network namespace (`ip netns add NAME`), deleted when
// the test ends, and returns its name.
func NewNetns(tb testing.TB, name string) string {
	tb.Helper()
	if err := nsutil.Create(name); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = nsutil.Delete(name) })
	return name
}

// doIn runs fn inside the network namespace at nsPath, or in the caller's when nsPath
// is empty.
func doIn(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	return nsutil.Do(nsPath, fn)
}

// NetlinkAt is a netlink handle that works inside the named namespace, closed when
// the test ends.
func NetlinkAt(tb testing.TB, name string) *netlink.Handle {
	tb.Helper()
	ns, err := netns.GetFromPath(nsutil.Path(name))
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close() })
	return h
}

// UnnameNetns removes the name of the named namespace (`ip netns delete NAME`) while
// keeping the namespace alive through a file descriptor, closed when the test ends,
// and returns a path that reaches it (/proc/PID/fd/N). A fuzz worker that is killed
// then leaves no namespace behind.
func UnnameNetns(tb testing.TB, name string) string {
	tb.Helper()
	fd, err := netns.GetFromPath(nsutil.Path(name))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { fd.Close() })
	if err := nsutil.Delete(name); err != nil {
		tb.Fatal(err)
	}
	return fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(fd))
}

// MountBPFFS mounts a private bpffs instance on a temporary directory, for pinned
// maps (`mount -t bpf bpf DIR`), unmounted when the test ends.
func MountBPFFS(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		tb.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	tb.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// Ping sends count ICMP echo requests to dst from inside the named namespace
// (`ip netns exec NAME ping -c COUNT -i 0.2 -W 2 DST`) and fails the test unless all
// are answered.
func Ping(tb testing.TB, name, dst string, count int) {
	tb.Helper()
	err := nsutil.Do(nsutil.Path(name), func() error {
		out, err := exec.Command("ping", "-c", fmt.Sprint(count), "-i", "0.2", "-W", "2", dst).CombinedOutput()
		if err != nil {
			return fmt.Errorf("ping %s: %w\n%s", dst, err, out)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package nsutil

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NamedDir is where iproute2 keeps named namespaces (`ip netns add` bind-mounts here).
const NamedDir = "/var/run/netns"

// Path returns the bind-mount path of the named namespace, as `ip netns` uses it.
func Path(name string) string { return filepath.Join(NamedDir, name) }

// Do runs fn on a locked OS thread that has entered the namespace at nsPath, then
// returns the thread to its original namespace. A thread whose namespace could not be
// restored stays locked, so the Go runtime kills it instead of reusing it.
func Do(nsPath string, fn func() error) error {
	target, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	defer target.Close()
	return doIn(target, fn)
}

func doIn(target netns.NsHandle, fn func() error) (err error) {
	runtime.LockOSThread()
	origin, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer origin.Close()
	if err := netns.Set(target); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns: %w", err)
	}
	defer func() {
		if rerr := netns.Set(origin); rerr != nil {
			// Leave the thread locked: it dies with this goroutine.
			err = errors.Join(err, fmt.Errorf("restore netns: %w", rerr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Create makes a new named network namespace (`ip netns add NAME`) without moving the
// calling goroutine into it. Loopback is brought up.
func Create(name string) error {
	if err := os.MkdirAll(NamedDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", NamedDir, err)
	}
	runtime.LockOSThread()
	origin, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("get current netns: %w", err)
	}
	defer origin.Close()
	created, err := netns.NewNamed(name)
	if err != nil {
		// NewNamed may have unshared before failing: restore before anything else.
		if rerr := netns.Set(origin); rerr != nil {
			return errors.Join(fmt.Errorf("create netns %s: %w", name, err), rerr)
		}
		runtime.UnlockOSThread()
		return fmt.Errorf("create netns %s: %w", name, err)
	}
	created.Close()
	if err := netns.Set(origin); err != nil {
		return fmt.Errorf("restore netns after creating %s: %w", name, err)
	}
	runtime.UnlockOSThread()
	return Do(Path(name), func() error {
		return setLinkUp("lo")
	})
}

func setLinkUp(name string) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get flags of %s: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set %s up: %w", name, err)
	}
	return nil
}

// Delete removes a named namespace (`ip netns del NAME`). The namespace itself lives on
// until its last process or open handle is gone. A missing namespace is not an error.
func Delete(name string) error {
	p := Path(name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", p, err)
	}
	return nil
}

// List returns the names of all named namespaces.
func List() ([]string, error) {
	entries, err := os.ReadDir(NamedDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", NamedDir, err)
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

// ListPrefix returns the names of the named namespaces that start with prefix (a run's
// namespaces: what must be gone after its teardown).
func ListPrefix(prefix string) ([]string, error) {
	names, err := List()
	if err != nil {
		return nil, err
	}
	var out []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Inode returns the namespace inode of the file at path (a bind mount or /proc/PID/ns/net),
// used to find processes still running inside a namespace.
func Inode(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// PIDsIn returns the processes whose network namespace is the one at nsPath.
func PIDsIn(nsPath string) ([]int, error) {
	want, err := Inode(nsPath)
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", nsPath, err)
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, p := range procs {
		var pid int
		if _, err := fmt.Sscanf(p.Name(), "%d", &pid); err != nil {
			continue
		}
		ino, err := Inode(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err == nil && ino == want {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

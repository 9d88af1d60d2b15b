// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// Dir is the run's own folder (/run/podpath/<runid>): agents keep their state, logs and
// bpffs mount there, so teardown removes them with the run.
func (t *Topology) Dir() string { return runDir(t.runID) }

// MountBPFFS mounts a bpf filesystem private to the run at <Dir>/bpffs
// (`mount -t bpf bpffs DIR`) and returns its path. Pins made there disappear when
// teardown unmounts it; nothing is pinned under the machine's /sys/fs/bpf.
func (t *Topology) MountBPFFS() (string, error) {
	dir := filepath.Join(t.Dir(), "bpffs")
	if mounted(dir) {
		return dir, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("mount bpffs: %w", err)
	}
	if err := unix.Mount("bpffs", dir, "bpf", 0, "mode=0700"); err != nil {
		return "", fmt.Errorf("mount bpffs at %s: %w", dir, err)
	}
	return dir, nil
}

// unmountUnder detaches every mount at or below dir, deepest first.
func unmountUnder(dir string) error {
	var errs []error
	points := mountsUnder(dir)
	sort.Sort(sort.Reverse(sort.StringSlice(points)))
	for _, p := range points {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			errs = append(errs, fmt.Errorf("unmount %s: %w", p, err))
		}
	}
	return errors.Join(errs...)
}

func mounted(dir string) bool {
	for _, p := range mountsUnder(dir) {
		if p == dir {
			return true
		}
	}
	return false
}

// mountsUnder reads /proc/self/mountinfo for mount points at or below dir.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		p := fields[4]
		if p == dir || strings.HasPrefix(p, dir+"/") {
			out = append(out, p)
		}
	}
	return out
}

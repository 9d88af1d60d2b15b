// SPDX-License-Identifier: Apache-2.0

// Package cgroup2 finds the cgroup v2 hierarchy and makes and removes the per-node
// cgroups socket-LB programs attach to.
package cgroup2

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// ErrNoHierarchy: no cgroup2 file system is mounted.
var ErrNoHierarchy = errors.New("no cgroup2 hierarchy mounted (mount -t cgroup2 none DIR)")

// Root is the mount point of the cgroup v2 hierarchy: /sys/fs/cgroup when it is
// cgroup2, else the first cgroup2 mount in /proc/self/mountinfo (e.g.
// /sys/fs/cgroup/unified on hybrid machines).
func Root() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", fmt.Errorf("find cgroup2: %w", err)
	}
	defer f.Close()
	var first string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS ... - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 0 || sep+1 >= len(fields) || fields[sep+1] != "cgroup2" || len(fields) < 5 {
			continue
		}
		if fields[4] == "/sys/fs/cgroup" {
			return fields[4], nil
		}
		if first == "" {
			first = fields[4]
		}
	}
	if first == "" {
		return "", ErrNoHierarchy
	}
	return first, nil
}

// Create makes the cgroup rel (a path under Root, parents included) and returns its
// absolute path.
func Create(rel string) (string, error) {
	root, err := Root()
	if err != nil {
		return "", err
	}
	p := filepath.Join(root, rel)
	if !strings.HasPrefix(p, root+"/") {
		return "", fmt.Errorf("create cgroup %q: outside %s", rel, root)
	}
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", fmt.Errorf("create cgroup %s: %w", p, err)
	}
	return p, nil
}

// Remove removes the cgroup dir and every cgroup below it (`rmdir`, deepest
// first). A cgroup still holding processes cannot be removed: Remove retries for up
// to a second (processes being reaped), then fails naming it.
func Remove(dir string) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var dirs []string
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	var errs []error
	for i := len(dirs) - 1; i >= 0; i-- {
		var err error
		for try := 0; try < 20; try++ {
			if err = os.Remove(dirs[i]); err == nil || errors.Is(err, os.ErrNotExist) {
				err = nil
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			procs, _ := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs"))
			errs = append(errs, fmt.Errorf("remove cgroup %s (processes %q): %w", dirs[i], strings.Fields(string(procs)), err))
		}
	}
	return errors.Join(errs...)
}

// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"

	"podpath/internal/nsutil"
)

// killTimeout bounds how long teardown waits for killed processes to leave namespaces.
const killTimeout = 5 * time.Second

// Down tears the topology down: it kills the processes started through it and every
// process still inside one of its namespaces, deletes every namespace (the links inside
// go with them) and removes the run's state directory. Calling it again is a no-op.
func (t *Topology) Down(ctx context.Context) error {
	var procs []procRef
	namespaces := make([]string, 0, len(t.order))
	for _, m := range t.Members() {
		namespaces = append(namespaces, m.Netns)
	}
	st, err := readState(t.runID)
	switch {
	case err == nil:
		procs = st.Processes
		namespaces = append(namespaces, st.Namespaces...)
	case !errors.Is(err, fs.ErrNotExist):
		t.progress("state of run %s unreadable, tearing down by namespace prefix: %v", t.runID, err)
	}
	if err := teardown(ctx, t.runID, namespaces, procs, t.progress); err != nil {
		return fmt.Errorf("topology down %s: %w", t.name, err)
	}
	return nil
}

// DownByName tears down a running topology named by its run ID, its full name
// (<spec.name>-<runid>) or, when only one run has it, its spec name.
func DownByName(ctx context.Context, nameOrRunID string) error {
	return downByName(ctx, nameOrRunID, nil)
}

// downByName is DownByName with progress lines (nil: none).
func downByName(ctx context.Context, nameOrRunID string, progress func(string, ...any)) error {
	st, err := findRun(nameOrRunID)
	if err != nil {
		if errors.Is(err, topology.ErrNotFound) && runIDRE.MatchString(nameOrRunID) {
			// No (readable) state: whatever is left under the run's prefix.
			if err := teardown(ctx, nameOrRunID, nil, nil, progress); err != nil {
				return fmt.Errorf("topology down %s: %w", nameOrRunID, err)
			}
			return nil
		}
		return fmt.Errorf("topology down: %w", err)
	}
	if err := teardown(ctx, st.RunID, st.Namespaces, st.Processes, progress); err != nil {
		return fmt.Errorf("topology down %s: %w", st.Name, err)
	}
	return nil
}

// teardown removes everything of run runID: recorded processes, processes inside its
// namespaces, the namespaces (listed ones and any with the run's prefix), the run dir.
func teardown(ctx context.Context, runID string, namespaces []string, procs []procRef, progress func(string, ...any)) error {
	if progress == nil {
		progress = func(string, ...any) {}
	}
	for _, p := range procs {
		if p.alive() && p.PID != os.Getpid() {
			progress("killing %v (pid %d) in %s", p.Argv, p.PID, p.Member)
			_ = syscall.Kill(p.PID, syscall.SIGKILL)
		}
	}
	all, err := nsutil.List()
	if err != nil {
		return err
	}
	prefix := nsPrefix(runID)
	for _, n := range all {
		if strings.HasPrefix(n, prefix) {
			namespaces = append(namespaces, n)
		}
	}
	slices.Sort(namespaces)
	namespaces = slices.Compact(namespaces)
	var present []string
	for _, n := range namespaces {
		if slices.Contains(all, n) {
			present = append(present, n)
		}
	}
	var errs []error
	if err := killInside(ctx, present, progress); err != nil {
		errs = append(errs, err)
	}
	for _, n := range present {
		progress("deleting namespace %s", n)
		if err := nsutil.Delete(n); err != nil {
			errs = append(errs, err)
		}
	}
	if err := removeRunCgroups(runID); err != nil {
		errs = append(errs, err)
	}
	if err := unmountUnder(runDir(runID)); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(runDir(runID)); err != nil {
		errs = append(errs, fmt.Errorf("remove run dir: %w", err))
	}
	return errors.Join(errs...)
}

// killInside SIGKILLs every process inside the namespaces until none is left (zombies
// hold no namespace) or killTimeout passes. The calling process is never killed.
func killInside(ctx context.Context, namespaces []string, progress func(string, ...any)) error {
	if len(namespaces) == 0 {
		return nil
	}
	deadline := time.Now().Add(killTimeout)
	for {
		var left []string
		for _, n := range namespaces {
			pids, err := nsutil.PIDsIn(nsutil.Path(n))
			if err != nil {
				continue // namespace vanished meanwhile
			}
			for _, pid := range pids {
				if pid == os.Getpid() {
					continue
				}
				progress("killing pid %d inside %s", pid, n)
				_ = syscall.Kill(pid, syscall.SIGKILL)
				left = append(left, fmt.Sprintf("%d in %s", pid, n))
			}
		}
		if len(left) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("processes still inside after SIGKILL: %s", strings.Join(left, ", "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

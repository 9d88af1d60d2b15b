// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"time"

	"podpath/internal/nsutil"
)

// stateGrace is how long a run dir without a readable state.json is taken for an Up in
// progress rather than a crash.
const stateGrace = 30 * time.Second

// testNetnsRE matches the namespaces podpath's own tests create: pptest-<what>-<pid>-...
var testNetnsRE = regexp.MustCompile(`^pptest-[a-z]+-([0-9]+)-`)

// testNamespaceOrphaned says whether n is a test namespace whose test process is gone
// (a test killed before its cleanup ran).
func testNamespaceOrphaned(n string) bool {
	m := testNetnsRE.FindStringSubmatch(n)
	if m == nil {
		return false
	}
	_, err := os.Stat("/proc/" + m[1])
	return errors.Is(err, fs.ErrNotExist)
}

// Clean removes the leftovers of crashed runs: every run under StateRoot whose owner
// process is gone (every run when all is true), and every namespace named pp-<6hex>-*
// whose run has no state dir at all, and test namespaces (pptest-<what>-<pid>-*) whose
// test process is gone. Live runs, and detached runs, are left alone unless
// all is true. It returns what it removed: topology names and orphan namespace names.
func Clean(ctx context.Context, all bool) ([]string, error) {
	// Namespaces are listed before the run dirs are looked at: a run creates its dir
	// before its first namespace, so a namespace listed here whose dir is missing
	// afterwards is a true orphan, never a run coming up in parallel.
	namespaces, err := nsutil.List()
	if err != nil {
		return nil, fmt.Errorf("clean: %w", err)
	}
	entries, err := os.ReadDir(StateRoot)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("clean: list runs: %w", err)
	}
	var removed []string
	var errs []error
	for _, e := range entries {
		if ctx.Err() != nil {
			break
		}
		runID := e.Name()
		if !e.IsDir() || !runIDRE.MatchString(runID) {
			continue
		}
		st, err := readState(runID)
		if err != nil {
			info, ierr := e.Info()
			if !all && (ierr != nil || time.Since(info.ModTime()) < stateGrace) {
				continue // probably an Up that has not written its state yet
			}
			if err := teardown(ctx, runID, nil, nil, nil); err != nil {
				errs = append(errs, fmt.Errorf("clean run %s: %w", runID, err))
				continue
			}
			removed = append(removed, runID)
			continue
		}
		if !all && !st.ownerGone() {
			continue
		}
		if err := teardown(ctx, runID, st.Namespaces, st.Processes, nil); err != nil {
			errs = append(errs, fmt.Errorf("clean run %s: %w", st.Name, err))
			continue
		}
		removed = append(removed, st.Name)
	}
	for _, n := range namespaces {
		if ctx.Err() != nil {
			break
		}
		if testNamespaceOrphaned(n) {
			errs = append(errs, killInside(ctx, []string{n}, func(string, ...any) {}), nsutil.Delete(n))
			removed = append(removed, n)
			continue
		}
		m := runNetnsRE.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		if _, err := os.Stat(runDir(m[1])); err == nil || !errors.Is(err, fs.ErrNotExist) {
			continue // the run still has a state dir: handled above (or left alone)
		}
		if _, err := os.Stat(nsutil.Path(n)); errors.Is(err, fs.ErrNotExist) {
			continue // removed with its run above
		}
		if err := killInside(ctx, []string{n}, func(string, ...any) {}); err != nil {
			errs = append(errs, fmt.Errorf("clean namespace %s: %w", n, err))
		}
		if err := nsutil.Delete(n); err != nil {
			errs = append(errs, fmt.Errorf("clean namespace %s: %w", n, err))
			continue
		}
		removed = append(removed, n)
	}
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return removed, errors.Join(errs...)
}

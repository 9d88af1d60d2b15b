// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"podpath/internal/nsutil"
)

// Do runs fn on a locked OS thread inside member's network namespace.
func (t *Topology) Do(member string, fn func() error) error {
	m, err := t.Member(member)
	if err != nil {
		return err
	}
	if err := nsutil.Do(m.NsPath, fn); err != nil {
		return fmt.Errorf("in %s: %w", member, err)
	}
	return nil
}

// Exec runs argv inside member's namespace (`ip netns exec NS argv...`) and returns its
// combined output. A failure names the command, the exit status and the output.
func (t *Topology) Exec(ctx context.Context, member string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("exec in %s: empty command", member)
	}
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := t.startIn(member, cmd); err != nil {
		return nil, fmt.Errorf("exec %q in %s: %w", strings.Join(argv, " "), member, err)
	}
	if err := cmd.Wait(); err != nil {
		return out.Bytes(), fmt.Errorf("exec %q in %s: %w: %s", strings.Join(argv, " "), member, err, strings.TrimSpace(out.String()))
	}
	return out.Bytes(), nil
}

// Start starts a long-running argv inside member's namespace and returns it running; its
// output is discarded (use StartCmd to wire it). Down kills it.
func (t *Topology) Start(ctx context.Context, member string, argv ...string) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("start in %s: empty command", member)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if err := t.StartCmd(member, cmd); err != nil {
		return nil, err
	}
	return cmd, nil
}

// StartCmd starts a prepared, not yet started cmd inside member's namespace and records
// its PID in the run's state, so Down (or Clean) kills it. The caller Waits for it.
func (t *Topology) StartCmd(member string, cmd *exec.Cmd) error {
	if err := t.startIn(member, cmd); err != nil {
		return fmt.Errorf("start %q in %s: %w", strings.Join(cmd.Args, " "), member, err)
	}
	ref := procRef{PID: cmd.Process.Pid, Member: member, Argv: cmd.Args}
	ref.Start, _ = procStart(ref.PID)
	if err := updateState(t.runID, func(st *state) { st.Processes = append(st.Processes, ref) }); err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return fmt.Errorf("start %q in %s: %w", strings.Join(cmd.Args, " "), member, err)
	}
	return nil
}

// startIn forks cmd from a thread inside member's namespace, so the child is born there,
// and, for a node or a pod, inside the node's cgroup (NodeCgroup).
func (t *Topology) startIn(member string, cmd *exec.Cmd) error {
	m, err := t.Member(member)
	if err != nil {
		return err
	}
	if cg := t.cgroupOf(member); cg != "" {
		dir, err := os.Open(cg)
		if err != nil {
			return fmt.Errorf("open cgroup %s: %w", cg, err)
		}
		defer dir.Close()
		if cmd.SysProcAttr == nil {
			cmd.SysProcAttr = &syscall.SysProcAttr{}
		}
		cmd.SysProcAttr.UseCgroupFD, cmd.SysProcAttr.CgroupFD = true, int(dir.Fd())
	}
	var startErr error
	if err := nsutil.Do(m.NsPath, func() error {
		startErr = cmd.Start()
		return nil
	}); err != nil {
		return err
	}
	return startErr
}

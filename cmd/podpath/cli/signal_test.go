// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"podpath/internal/testutil"
)

// When PODPATH_CLI_CHILD is set the test binary is podpath: TestRunSIGTERM runs it as a
// process of its own, to send it a real signal.
func init() {
	if os.Getenv("PODPATH_CLI_CHILD") == "1" {
		os.Exit(Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
}

// podpath run, sent SIGTERM in the middle of a step, tears down its topology (every
// pp-<runid>-* namespace, its agents, its bpffs mount and run folder) and exits with
// status 130 and a line saying it was interrupted.
func TestRunSIGTERM(t *testing.T) {
	testutil.RequireRoot(t)
	if testing.Short() {
		t.Skip("brings up a topology with agents")
	}
	dir := t.TempDir()
	agent := filepath.Join(dir, "podpath-agent")
	if out, err := exec.Command("go", "build", "-o", agent, "podpath/cmd/podpath-agent").CombinedOutput(); err != nil {
		t.Fatalf("build podpath-agent: %v\n%s", err, out)
	}
	file := filepath.Join(dir, "long.yaml")
	if err := os.WriteFile(file, []byte(`name: long
description: a run long enough to be interrupted
stages:
  - topology: l2-two-node-agent
    config: {data: {routing-mode: tunnel, tunnel-protocol: vxlan}}
    steps:
      - check: connectivity
        with: {from: pod1a, to: pod2a}
      - check: mtu-sweep
        with: {from: pod1a, to: pod2a}
        expect: {routeMTU: 1450}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(self, "run", file, "--artifacts", filepath.Join(dir, "artifacts"))
	cmd.Env = append(os.Environ(), "PODPATH_CLI_CHILD=1", "PODPATH_AGENT="+agent)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	// Once the first check is recorded the agents run and mtu-sweep begins.
	var out strings.Builder
	lines := bufio.NewScanner(stdout)
	for lines.Scan() {
		out.WriteString(lines.Text() + "\n")
		if strings.HasPrefix(lines.Text(), "PASS") || strings.HasPrefix(lines.Text(), "FAIL") {
			break
		}
	}
	run := runOf(t, cmd.Process.Pid)
	if run.RunID == "" {
		t.Fatalf("no /run/podpath/*/state.json owned by pid %d; output:\n%s", cmd.Process.Pid, out.String())
	}
	t.Logf("run %s: %d namespaces, %d processes", run.RunID, len(run.Namespaces), len(run.Processes))
	time.Sleep(time.Second) // into the next step
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	go func() {
		for lines.Scan() {
			out.WriteString(lines.Text() + "\n")
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
	select {
	case werr = <-waited:
	case <-time.After(60 * time.Second):
		t.Fatalf("podpath run still running 60s after SIGTERM; stderr:\n%s", stderr.String())
	}
	t.Logf("exited %v after SIGTERM: %v", time.Since(start).Round(time.Millisecond), werr)
	var exit *exec.ExitError
	if !errors.As(werr, &exit) || exit.ExitCode() != exitInterrupted {
		t.Errorf("exit: %v, want status %d", werr, exitInterrupted)
	}
	if !strings.Contains(stderr.String(), "podpath run: interrupted (terminated signal received)") {
		t.Errorf("stderr lacks the interrupted line:\n%s", stderr.String())
	}
	nsList, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(nsList), "pp-"+run.RunID+"-") {
		t.Errorf("namespaces of run %s left:\n%s", run.RunID, nsList)
	}
	if _, err := os.Stat(filepath.Join("/run/podpath", run.RunID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run folder /run/podpath/%s left (%v)", run.RunID, err)
	}
	if mounts, _ := os.ReadFile("/proc/self/mounts"); strings.Contains(string(mounts), "/run/podpath/"+run.RunID) {
		t.Errorf("mounts of run %s left", run.RunID)
	}
	for _, p := range run.Processes {
		if err := syscall.Kill(p.PID, 0); err == nil && procStart(p.PID) == p.Start {
			t.Errorf("process %d %v of the run still runs", p.PID, p.Argv)
		}
	}
	if t.Failed() {
		t.Logf("stdout:\n%s\nstderr:\n%s", out.String(), stderr.String())
	}
}

type runState struct {
	RunID      string   `json:"runID"`
	Namespaces []string `json:"namespaces"`
	Owner      struct {
		PID int `json:"pid"`
	} `json:"owner"`
	Processes []struct {
		PID   int      `json:"pid"`
		Start uint64   `json:"start"`
		Argv  []string `json:"argv"`
	} `json:"processes"`
}

// runOf reads the state of the podpath run pid owns.
func runOf(t *testing.T, pid int) runState {
	t.Helper()
	files, _ := filepath.Glob("/run/podpath/*/state.json")
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var st runState
		if json.Unmarshal(data, &st) == nil && st.Owner.PID == pid {
			return st
		}
	}
	return runState{}
}

// procStart is field 22 of /proc/PID/stat (0 when unreadable).
func procStart(pid int) uint64 {
	data, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(fields[19], 10, 64)
	return v
}

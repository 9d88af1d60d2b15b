// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"podpath/internal/nsutil"
)

// StateRoot holds one directory per run, /run/podpath/<runid>, with its state.json.
const StateRoot = "/run/podpath"

const stateFile = "state.json"

var (
	runIDRE     = regexp.MustCompile(`^[0-9a-f]{6}$`)
	runNetnsRE  = regexp.MustCompile(`^pp-([0-9a-f]{6})-`)
	stateFormat = 1
)

func nsPrefix(runID string) string       { return "pp-" + runID + "-" }
func nsName(runID, member string) string { return nsPrefix(runID) + member }
func nsPathOf(ns string) string          { return nsutil.Path(ns) }
func runDir(runID string) string         { return filepath.Join(StateRoot, runID) }

// procRef identifies a process across PID reuse by its start time (clock ticks since
// boot, field 22 of /proc/PID/stat).
type procRef struct {
	PID    int      `json:"pid"`
	Start  uint64   `json:"start"`
	Member string   `json:"member,omitempty"`
	Argv   []string `json:"argv,omitempty"`
}

// state is what /run/podpath/<runid>/state.json holds.
type state struct {
	Format  int    `json:"format"`
	Name    string `json:"name"`
	RunID   string `json:"runID"`
	Backend string `json:"backend"`
	// Spec is the resolved spec.
	Spec *topology.Spec `json:"spec"`
	// Namespaces are every namespace of the run, written before the first is created.
	Namespaces []string `json:"namespaces"`
	// Owner is the process that brought the run up; PID 0 for a detached run, which only
	// Down or Clean(all) remove.
	Owner procRef `json:"owner"`
	// Processes are the processes started through the topology.
	Processes []procRef `json:"processes,omitempty"`
	// Step is the last step of Up that completed (namespaces, sysctls, ...).
	Step string `json:"step,omitempty"`
	// Complete is set once Up succeeded.
	Complete bool      `json:"complete"`
	Created  time.Time `json:"created"`
}

// newRunID claims a fresh run directory: 6 random hex digits, retried while the
// directory or a namespace with its prefix exists.
func newRunID() (string, error) {
	if err := os.MkdirAll(StateRoot, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", StateRoot, err)
	}
	existing, err := nsutil.List()
	if err != nil {
		return "", err
	}
	for range 100 {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("random run id: %w", err)
		}
		id := hex.EncodeToString(b[:])
		if hasPrefix(existing, nsPrefix(id)) {
			continue
		}
		err := os.Mkdir(runDir(id), 0o755)
		if errors.Is(err, os.ErrExist) {
			continue
		}
		if err != nil {
			return "", fmt.Errorf("create run dir: %w", err)
		}
		return id, nil
	}
	return "", errors.New("create run dir: no free run id after 100 tries")
}

func hasPrefix(list []string, prefix string) bool {
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			return true
		}
	}
	return false
}

// readState loads the state of a run.
func readState(runID string) (*state, error) {
	data, err := os.ReadFile(filepath.Join(runDir(runID), stateFile))
	if err != nil {
		return nil, fmt.Errorf("read state of run %s: %w", runID, err)
	}
	var st state
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("read state of run %s: %w", runID, err)
	}
	return &st, nil
}

// writeState replaces state.json atomically.
func writeState(st *state) error {
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("write state of run %s: %w", st.RunID, err)
	}
	dir := runDir(st.RunID)
	tmp, err := os.CreateTemp(dir, stateFile+".tmp*")
	if err != nil {
		return fmt.Errorf("write state of run %s: %w", st.RunID, err)
	}
	_, werr := tmp.Write(append(data, '\n'))
	cerr := tmp.Close()
	if err := errors.Join(werr, cerr); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write state of run %s: %w", st.RunID, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, stateFile)); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write state of run %s: %w", st.RunID, err)
	}
	return nil
}

// updateState applies fn to the state on disk under an exclusive lock on the run dir,
// so processes sharing a run (the owner, `podpath exec`) do not lose each other's updates.
func updateState(runID string, fn func(*state)) error {
	dir, err := os.Open(runDir(runID))
	if err != nil {
		return fmt.Errorf("update state of run %s: %w", runID, err)
	}
	defer dir.Close()
	if err := unix.Flock(int(dir.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock state of run %s: %w", runID, err)
	}
	defer unix.Flock(int(dir.Fd()), unix.LOCK_UN)
	st, err := readState(runID)
	if err != nil {
		return err
	}
	fn(st)
	return writeState(st)
}

// self returns a reference to the calling process.
func self() procRef {
	pid := os.Getpid()
	start, _ := procStart(pid)
	return procRef{PID: pid, Start: start}
}

// procStart returns the start time of a process (field 22 of /proc/PID/stat).
func procStart(pid int) (uint64, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc/%d/stat: no ')'", pid)
	}
	f := strings.Fields(s[i+1:]) // f[0] is field 3 (state)
	if len(f) < 20 {
		return 0, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether the referenced process still runs (same PID, same start time,
// not a zombie).
func (p procRef) alive() bool {
	if p.PID <= 0 {
		return false
	}
	start, err := procStart(p.PID)
	if err != nil || start != p.Start {
		return false
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(p.PID) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

// ownerGone reports whether the run's owner exited; a detached run (PID 0) has none.
func (st *state) ownerGone() bool {
	return st.Owner.PID != 0 && !st.Owner.alive()
}

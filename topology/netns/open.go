// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
)

// Open reattaches to a running topology by run ID, full name (<spec.name>-<runid>) or,
// when only one run has it, spec name; used by `podpath exec`.
func Open(nameOrRunID string) (*Topology, error) {
	st, err := findRun(nameOrRunID)
	if err != nil {
		return nil, fmt.Errorf("open topology: %w", err)
	}
	if !st.Complete {
		return nil, fmt.Errorf("open topology %s: run is not completely up (still starting, or crashed: see podpath clean)", st.Name)
	}
	if st.Backend != BackendName {
		return nil, fmt.Errorf("open topology %s: backend %q is not supported here (want netns)", st.Name, st.Backend)
	}
	return newTopology(st.RunID, st.Spec), nil
}

// findRun looks a run up in StateRoot.
func findRun(nameOrRunID string) (*state, error) {
	entries, err := os.ReadDir(StateRoot)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	var bySpecName []*state
	for _, e := range entries {
		if !e.IsDir() || !runIDRE.MatchString(e.Name()) {
			continue
		}
		st, err := readState(e.Name())
		if err != nil {
			continue
		}
		if st.RunID == nameOrRunID || st.Name == nameOrRunID {
			return st, nil
		}
		if st.Spec != nil && st.Spec.Name == nameOrRunID {
			bySpecName = append(bySpecName, st)
		}
	}
	switch len(bySpecName) {
	case 0:
		return nil, fmt.Errorf("topology %q: %w (want a run ID, or a name from %s)", nameOrRunID, topology.ErrNotFound, StateRoot)
	case 1:
		return bySpecName[0], nil
	}
	var names []string
	for _, st := range bySpecName {
		names = append(names, st.Name)
	}
	return nil, fmt.Errorf("topology %q is ambiguous: %d runs (want one of %s)", nameOrRunID, len(names), strings.Join(names, ", "))
}

// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"
)

// Claim reserves a run for namespaces made outside a Topology (a benchmark's
// baseline, say), named NetnsName(runID, member) for each member. Before any of them
// exists it records this process as owner and the namespaces to come, so Clean removes
// them once the process is gone, as for any crashed run. Release tears them down.
func Claim(name string, members ...string) (string, error) {
	runID, err := newRunID()
	if err != nil {
		return "", fmt.Errorf("claim run %s: %w", name, err)
	}
	st := &state{Format: stateFormat, Name: name + "-" + runID, RunID: runID, Backend: "claim",
		Owner: self(), Created: time.Now().UTC()}
	for _, m := range members {
		st.Namespaces = append(st.Namespaces, nsName(runID, m))
	}
	if err := writeState(st); err != nil {
		return "", errors.Join(err, teardown(context.Background(), runID, nil, nil, nil))
	}
	return runID, nil
}

// NetnsName is the namespace of member in run runID: pp-<runid>-<member>.
func NetnsName(runID, member string) string { return nsName(runID, member) }

// Release kills every process inside a claimed run's namespaces, deletes them and
// removes the run's state. Releasing it again is a no-op.
func Release(ctx context.Context, runID string) error {
	st, err := readState(runID)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release run %s: %w", runID, err)
	}
	if err := teardown(ctx, runID, st.Namespaces, st.Processes, nil); err != nil {
		return fmt.Errorf("release run %s: %w", runID, err)
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"podpath/topology"
)

// ExecMargin is what a command's deadline adds to the time the command itself waits
// (ping's count, interval and -W): starting it inside its namespace and reading its
// output on a loaded machine.
const ExecMargin = 3 * time.Second

// Exec runs argv in member under a deadline: within, the time the command itself
// waits for what it waits for, plus ExecMargin. On expiry the command is killed and the
// error says what ran, for how long, and what it printed so far.
func Exec(ctx context.Context, t topology.Cluster, within time.Duration, member string, argv ...string) ([]byte, error) {
	limit := within + ExecMargin
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	start := time.Now()
	out, err := t.Exec(ctx, member, argv...)
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return out, fmt.Errorf("%q in %s: no end after %v (deadline %v: %v of waiting + %v margin); printed: %q: %w",
			strings.Join(argv, " "), member, time.Since(start).Round(time.Millisecond), limit, within, ExecMargin,
			strings.TrimSpace(string(out)), context.DeadlineExceeded)
	}
	return out, err
}

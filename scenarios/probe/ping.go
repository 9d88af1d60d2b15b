// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"context"
	"net/netip"
	"strconv"
	"time"

	"podpath/topology"
)

// PingSized sends one ICMP echo request with payload bytes of data from member to dst
// and waits 2 s for the reply: `ping -c1 -W2 -M do|dont -s payload dst`. With df the
// sender may not fragment (an oversized send is refused, naming the path MTU in the
// output); without it the kernel fragments. It returns ping's output for evidence.
func PingSized(ctx context.Context, t topology.Cluster, member string, dst netip.Addr, payload int, df bool) ([]byte, error) {
	mode := "dont"
	if df {
		mode = "do"
	}
	return Exec(ctx, t, 2*time.Second, member, "ping", "-c1", "-W2", "-M", mode, "-s", strconv.Itoa(payload), dst.String())
}

// Tracepath runs `tracepath -n dst` in member: its output names the path MTU
// ("pmtu N"). Its deadline is tracepathWait: a pod-to-pod path ends in a few seconds.
func Tracepath(ctx context.Context, t topology.Cluster, member string, dst netip.Addr) ([]byte, error) {
	return Exec(ctx, t, tracepathWait, member, "tracepath", "-n", dst.String())
}

// tracepathWait is how long tracepath may wait: up to 8 hops (a pod path has at most
// five) of 3 probes with 1 s each for an answer.
const tracepathWait = 8 * 3 * time.Second

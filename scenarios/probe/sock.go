// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"time"

	"podpath/internal/sockprobe"
	"podpath/topology"
)

// sockProbeEnv turns any binary that links this package (podpath, a test binary)
// into the sockprobe client: SockExchange re-executes the running binary with it, so
// the client is a process of its own, born in the member's namespace and, for a node
// or a pod, in the node's cgroup, where socket-LB applies (a goroutine of the
// harness switched into the namespace stays in the harness's cgroup).
const sockProbeEnv = "PODPATH_PROBE_SOCK"

func init() {
	if os.Getenv(sockProbeEnv) == "1" {
		os.Exit(sockprobe.Main(os.Args[1:], func(s string) { fmt.Println(s) }))
	}
}

// SockProto is how SockExchange uses its socket.
type SockProto string

const (
	SockTCP       SockProto = "tcp"        // connect(), getpeername(), write, read
	SockUDP       SockProto = "udp"        // connected UDP: connect(), getpeername(), write, read
	SockUDPSendto SockProto = "udp-sendto" // unconnected UDP: sendto(), recvfrom()
)

// SockExchange runs one echo exchange from member to dst in a process of its own
// and returns what the client's socket saw (getpeername(), recvfrom()'s source, its
// local address) with the client's output.
func SockExchange(ctx context.Context, t topology.Cluster, member string, proto SockProto, dst netip.AddrPort) (sockprobe.Result, string, error) {
	self, err := os.Executable()
	if err != nil {
		return sockprobe.Result{}, "", fmt.Errorf("sock probe: %w", err)
	}
	msg := fmt.Sprintf("podpath-sock-%s-%d", member, time.Now().UnixNano())
	out, err := Exec(ctx, t, 3*time.Second, member, "env", sockProbeEnv+"=1", self, string(proto), dst.String(), msg)
	r, perr := sockprobe.Parse(out)
	if perr != nil {
		if err == nil {
			err = perr
		}
		return r, string(out), fmt.Errorf("sock probe %s %s -> %s: %w", proto, member, dst, err)
	}
	return r, string(out), nil
}

// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"fmt"
	"io"
	"net"
	"podpath/topology"
)

import ()

// startWhoami starts, in pod, a server on port that answers every message with the
// pod's name (TCP: one line per message).
func StartWhoami(t topology.Cluster, proto Protocol, pod string, port uint16) (io.Closer, error) {
	c, err := StartServer(t, proto, pod, port,
		func(c net.Conn) {
			buf := make([]byte, 64)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
				if _, err := c.Write([]byte(pod + "\n")); err != nil {
					return
				}
			}
		},
		func([]byte, net.Addr) []byte { return []byte(pod) })
	if err != nil {
		return nil, fmt.Errorf("whoami %s server in %s: %w", proto, pod, err)
	}
	return c, nil
}

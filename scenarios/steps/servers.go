// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"io"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
	"strings"
)

func init() { scenarios.RegisterServiceServers(startServers) }

// startServers runs, in every backend pod of the services, the server each asks for on
// the backend's port and the service's protocol.
func startServers(t topology.Cluster, services []scenarios.ServiceSpec) (io.Closer, error) {
	type key struct {
		pod, server string
		proto       probe.Protocol
		port        uint16
	}
	started := map[key]bool{}
	var cs probe.Closers
	for _, svc := range services {
		if svc.Server == "none" {
			continue
		}
		proto := probe.Protocol(strings.ToLower(svc.Protocol))
		for _, b := range svc.Backends {
			k := key{string(b.Pod), svc.Server, proto, b.Port}
			if b.Pod == "" || started[k] {
				continue
			}
			started[k] = true
			var c io.Closer
			var err error
			if svc.Server == "whoami" {
				c, err = probe.StartWhoami(t, proto, string(b.Pod), b.Port)
			} else {
				c, err = probe.StartEchoOn(t, proto, string(b.Pod), b.Port)
			}
			if err != nil {
				cs.Close()
				return nil, err
			}
			cs = append(cs, c)
		}
	}
	return cs, nil
}

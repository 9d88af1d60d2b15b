// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"fmt"
	"io"
	"podpath/topology"
)

import ()

// ServiceServers starts, for a stage, the servers its services ask for (ServiceSpec.Server)
// in their backend pods and returns what stops them.
type ServiceServers func(t topology.Cluster, services []ServiceSpec) (io.Closer, error)

var serviceServers ServiceServers

// RegisterServiceServers sets what starts the servers of a stage's services; the step
// package registers it from init beside its step kinds, so that the runner needs no
// traffic code of its own. It panics when set twice.
func RegisterServiceServers(f ServiceServers) {
	if serviceServers != nil {
		panic("scenarios: service servers registered twice")
	}
	serviceServers = f
}

// startServiceServers runs the registered ServiceServers; without one, a stage whose
// services want servers cannot run.
func startServiceServers(t topology.Cluster, services []ServiceSpec) (io.Closer, error) {
	if serviceServers == nil {
		for _, svc := range services {
			if svc.Server != "none" {
				return nil, fmt.Errorf("service %s wants %s servers, and no program part starts them: import podpath/scenarios/steps", svc.Name, svc.Server)
			}
		}
		return io.NopCloser(nil), nil
	}
	return serviceServers(t, services)
}

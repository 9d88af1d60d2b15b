// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"

	"podpath/datapath/config"
	"podpath/topology"
)

// Generic builds the scenario a user gets for their own topology and cilium-config:
// every pod reaches every other pod over ICMP, TCP and UDP, and between the first pods
// of every pair of nodes the path MTU is what the agent planned: DF packets up to the
// route MTU cross, one byte more is refused. configFile may be empty (Cilium's
// defaults); a topology whose pods the harness plumbs (podNetwork: kernel) runs
// without agents.
func Generic(topologyFile, configFile string) (*Scenario, error) {
	spec, err := topology.Load(topologyFile)
	if err != nil {
		return nil, err
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("topology %s: %w", topologyFile, err)
	}
	if configFile != "" {
		abs, err := filepath.Abs(configFile)
		if err != nil {
			return nil, err
		}
		if _, _, err := config.ParseFile(abs); err != nil {
			return nil, fmt.Errorf("config %s: %w", configFile, err)
		}
		configFile = abs
	}
	return &Scenario{
		Name:        spec.Name,
		Description: fmt.Sprintf("generic checks of topology %s with cilium-config %s: connectivity matrix and MTU sweep", topologyFile, orDefault(configFile)),
		Labels:      []string{"generic"},
		Run: func(ctx context.Context, r *Run) error {
			r.Progress("bringing up topology %s", spec.Name)
			t, err := topology.Up(ctx, spec)
			if err != nil {
				return err
			}
			r.Defer(func(ctx context.Context) error {
				if r.Keep {
					r.Progress("kept topology %s up (podpath down %s)", t.Name, t.Name)
					return nil
				}
				return t.Down(ctx)
			})
			var agents *Agents
			if t.Spec.PodNetwork == topology.PodNetworkAgent {
				r.Progress("starting agents with %s", orDefault(configFile))
				if agents, err = StartAgents(ctx, t, configFile); err != nil {
					return err
				}
			}
			connectivityMatrix(ctx, r, t)
			return genericMTU(ctx, r, t, agents)
		},
	}, nil
}

func orDefault(configFile string) string {
	if configFile == "" {
		return "Cilium's defaults"
	}
	return configFile
}

func connectivityMatrix(ctx context.Context, r *Run, t *topology.Topology) {
	pods := t.Pods()
	for _, p := range probeProtocols {
		var errs []error
		pairs := 0
		for _, a := range pods {
			for _, b := range pods {
				if a.Name == b.Name {
					continue
				}
				pairs++
				if err := Exchange(ctx, t, p, a.Name, b.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
		r.Check(fmt.Sprintf("connectivity matrix: %s between all %d ordered pod pairs", p, pairs),
			"the answer of the echo server (or ping) in every destination pod", errors.Join(errs...))
	}
}

// genericMTU sweeps between the first pods of every pair of nodes. The expected MTU is
// the agent's route MTU, or without agents the pod's own interface MTU.
func genericMTU(ctx context.Context, r *Run, t *topology.Topology, agents *Agents) error {
	nodes := t.Nodes()
	for _, na := range nodes {
		for _, nb := range nodes {
			if na.Name == nb.Name || len(na.Pods) == 0 || len(nb.Pods) == 0 {
				continue
			}
			src, dst := na.Pods[0], nb.Pods[0]
			mtu := src.MTU
			if agents != nil {
				st, err := agents.Client(na.Name).Status(ctx)
				if err != nil {
					return err
				}
				mtu = st.MTU.Route
			}
			fits, err := t.Exec(ctx, src.Name, "ping", "-c1", "-W2", "-M", "do", "-s", strconv.Itoa(mtu-28), dst.IP.String())
			var ferr error
			if err != nil {
				ferr = fmt.Errorf("%d-byte DF packet did not cross: %w: %s", mtu, err, fits)
			}
			over, err := t.Exec(ctx, src.Name, "ping", "-c1", "-W2", "-M", "do", "-s", strconv.Itoa(mtu-27), dst.IP.String())
			if err == nil {
				ferr = errors.Join(ferr, fmt.Errorf("%d-byte DF packet crossed a path of MTU %d: %s", mtu+1, mtu, over))
			}
			r.Check(fmt.Sprintf("MTU %s (%s) -> %s (%s): DF packets of %d bytes cross, %d are refused", src.Name, na.Name, dst.Name, nb.Name, mtu, mtu+1),
				"ping -M do -s "+strconv.Itoa(mtu-28)+" and "+strconv.Itoa(mtu-27), ferr)
		}
	}
	return nil
}

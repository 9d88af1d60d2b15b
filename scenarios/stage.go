// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"fmt"

	"podpath/datapath/agent"
	"podpath/datapath/config"
	"podpath/topology"
	"podpath/topology/agentrun"
)

// Stage is one stage of a running scenario file, as its steps see it: the run (Check,
// Progress, VerifyPath, Artifacts...), the topology up, its agents and services.
type Stage struct {
	*Run
	Spec *StageSpec
	T    topology.Cluster
	// Config is the cilium-config the agents run with (nil: Cilium's defaults).
	Config *config.Config
	// Services are the stage's services as the agents have them, by name.
	Services map[string]agent.Service
	// Memo keeps what a step leaves for later steps of the stage (a flow's path, whether
	// the host-stack counters are installed), by keys the step packages choose.
	Memo   map[string]any
	agents *agentrun.Agents
}

// Agents returns the stage's agents; steps registered with Agents: true always have them.
func (s *Stage) Agents() (*agentrun.Agents, error) {
	if s.agents == nil {
		return nil, fmt.Errorf("topology %s runs no agents (podNetwork: kernel)", s.T.Name())
	}
	return s.agents, nil
}

// Label is a step's label for its check names: given, or the stage's name.
func (s *Stage) Label(given string) string {
	if given != "" {
		return given
	}
	return s.Spec.Name
}

// ServiceUpsert programs a service on every agent and remembers it.
func (s *Stage) ServiceUpsert(ctx context.Context, svc agent.Service) error {
	a, err := s.Agents()
	if err != nil {
		return err
	}
	if err := a.ServiceUpsert(ctx, svc); err != nil {
		return err
	}
	s.Services[svc.Name] = svc
	return nil
}

// run runs the scenario file: its stages in order.
func (f *ScenarioFile) run(ctx context.Context, r *Run) error {
	for i := range f.Stages {
		if err := r.runStage(ctx, &f.Stages[i], len(f.Stages)); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted (%v) after %s: %w", context.Cause(ctx), f.Stages[i].Path, err)
		}
	}
	return nil
}

// Scenario is the runtime form of the file, for Execute.
func (f *ScenarioFile) Scenario() *Scenario {
	return &Scenario{Name: f.Name, Description: f.Description, Labels: f.Labels, Run: f.run}
}

// runStage brings the stage's topology up with its agents and services, runs its steps
// and takes the topology down again (unless the run keeps it).
func (r *Run) runStage(ctx context.Context, spec *StageSpec, stages int) error {
	mark := len(r.cleanup)
	defer r.unwind(ctx, mark)
	if stages > 1 {
		what := spec.Path
		if spec.Name != "" {
			what += ": " + spec.Name
		}
		r.Progress("%s", what)
	}
	// The links are made for the stage's cilium-config (the NIC model of accelerated
	// devices) before any agent or step runs.
	t, err := r.upSpec(ctx, spec.Topology.Spec.WithDatapath(spec.Config.Config), spec.Topology.Name)
	if err != nil {
		return err
	}
	s := &Stage{Run: r, Spec: spec, T: t, Config: spec.Config.Config, Services: map[string]agent.Service{}, Memo: map[string]any{}}
	if t.Spec().PodNetwork == topology.PodNetworkAgent {
		cfg, err := spec.Config.Write(t)
		if err != nil {
			return err
		}
		r.Progress("starting agents with cilium-config %s", spec.Config)
		if s.agents, err = agentrun.Start(ctx, t, cfg); err != nil {
			return err
		}
		r.recordAgentWarnings(ctx, stageLabel(spec), spec.Config.String(), t, s.agents)
	}
	for i, svc := range spec.Services {
		as, err := svc.agentService(t)
		if err == nil {
			err = s.ServiceUpsert(ctx, as)
		}
		if err != nil {
			return fmt.Errorf("%s.services[%d] (%s): %w", spec.Path, i, svc.Name, err)
		}
	}
	if err := programObjects(ctx, s, spec.Policies); err != nil {
		return err
	}
	if err := programObjects(ctx, s, spec.EgressGatewayPolicies); err != nil {
		return err
	}
	servers, err := startServiceServers(t, spec.Services)
	if err != nil {
		return err
	}
	defer servers.Close()
	for _, step := range spec.Steps {
		if err := r.runStep(ctx, s, step); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("interrupted (%v) after %s: %w", context.Cause(ctx), step.Path, err)
		}
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[restartWith, none]{
		Name:    "restart-agents",
		Summary: "stop agents (SIGTERM, or SIGKILL: a crash) and start them again, optionally with another cilium-config; the new agents adopt the attached datapath",
		Agents:  true,
		Run:     runRestartAgents,
	})
	scenarios.RegisterStep(scenarios.StepDef[agentStatusWith, agentStatusExpect]{
		Name:    "agent-status",
		Summary: "one check of what a node's agent reports (podpath-agent status): host routing, adoption, problems",
		Agents:  true,
		Run:     runAgentStatus,
	})
	scenarios.RegisterStep(scenarios.StepDef[pingRestartWith, pingRestartExpect]{
		Name:    "ping-during-restart",
		Summary: "a fast ping between two pods while agents are restarted and killed: how many requests went unanswered",
		Agents:  true,
		With:    pingRestartWith{Count: 300, Interval: 10 * time.Millisecond},
		Run:     runPingDuringRestart,
	})
}

type restartWith struct {
	Nodes  []scenarios.NodeRef `json:"nodes" doc:"whose agents (default: every node's)"`
	Config scenarios.ConfigRef `json:"config" doc:"the cilium-config the new agents read (default: the one they had)"`
	Kill   bool                `json:"kill" doc:"SIGKILL, a crash, instead of SIGTERM"`
}

func runRestartAgents(ctx context.Context, s *scenarios.Stage, w restartWith, _ none) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	nodes := w.Nodes
	if len(nodes) == 0 {
		for _, n := range s.T.Nodes() {
			nodes = append(nodes, scenarios.NodeRef(n.Name))
		}
	}
	cfg, err := w.Config.Write(s.T)
	if err != nil {
		return err
	}
	how := "SIGTERM"
	if w.Kill {
		how = "SIGKILL"
	}
	what := "the same cilium-config"
	if w.Config.Data != nil {
		what = "cilium-config " + w.Config.String()
	}
	r := make([]string, len(nodes))
	for i, n := range nodes {
		r[i] = string(n)
	}
	s.Progress("restarting the agents of %s (%s) with %s", strings.Join(r, ", "), how, what)
	for _, n := range nodes {
		if err := agents.Restart(ctx, string(n), cfg, w.Kill); err != nil {
			return err
		}
	}
	if w.Config.Config != nil {
		s.Config = w.Config.Config
	}
	return nil
}

type agentStatusWith struct {
	Node  scenarios.NodeRef `json:"node" required:"true" doc:"whose agent"`
	Title string            `json:"title" doc:"the check's name (default: what is expected)"`
}

type agentStatusExpect struct {
	HostRouting string             `json:"hostRouting" oneOf:"BPF,Legacy" doc:"the host routing in effect"`
	Adopted     *bool              `json:"adopted" doc:"true: the agent found the programs attached and the maps pinned, and adopted them"`
	Problems    []scenarios.Regexp `json:"problems" doc:"regular expressions, each matching one of the problems the agent reports"`
}

func (e *agentStatusExpect) Validate(fe strictyaml.FieldErrors) {
	if e.HostRouting == "" && e.Adopted == nil && len(e.Problems) == 0 {
		fe.Add("", "want at least one of hostRouting, adopted, problems")
	}
}

func runAgentStatus(ctx context.Context, s *scenarios.Stage, w agentStatusWith, e agentStatusExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	st, err := agents.Client(string(w.Node)).Status(ctx)
	var fields, wants []string
	var errs []error
	if e.HostRouting != "" {
		fields, wants = append(fields, "Host Routing"), append(wants, "host routing "+e.HostRouting)
		if err == nil {
			errs = append(errs, expectEqual("host routing", e.HostRouting, st.HostRouting))
		}
	}
	if e.Adopted != nil {
		fields = append(fields, "Adopted")
		wants = append(wants, map[bool]string{true: "adopted the attached programs and pinned maps", false: "attached the programs afresh"}[*e.Adopted])
		if err == nil && st.Adopted != *e.Adopted {
			if st.Adopted {
				errs = append(errs, fmt.Errorf("status says the programs were adopted, want attached afresh: %v", st.Attached))
			} else {
				errs = append(errs, fmt.Errorf("status says the programs were attached afresh, not adopted: %v", st.Attached))
			}
		}
	}
	for _, re := range e.Problems {
		if !slices.Contains(fields, "Problems") {
			fields = append(fields, "Problems")
		}
		wants = append(wants, "a problem matching "+re.String())
		if err != nil {
			continue
		}
		found := false
		for _, p := range st.Problems {
			found = found || re.MatchString(p)
		}
		if !found {
			errs = append(errs, fmt.Errorf("no problem reported matching %q; problems: %q", re.String(), st.Problems))
		}
	}
	title := w.Title
	if title == "" {
		title = fmt.Sprintf("%s's agent: %s", w.Node, strings.Join(wants, "; "))
	}
	s.Check(title, fmt.Sprintf("podpath-agent status of %s: %s", w.Node, strings.Join(fields, ", ")), errors.Join(append([]error{err}, errs...)...))
	return nil
}

type pingRestartWith struct {
	From     scenarios.PodRef    `json:"from" required:"true" doc:"the pod that pings"`
	To       scenarios.PodRef    `json:"to" required:"true" doc:"the pod pinged"`
	Count    int                 `json:"count" range:"1..100000" doc:"echo requests"`
	Interval time.Duration       `json:"interval" doc:"between echo requests (ping -i)"`
	Restart  []scenarios.NodeRef `json:"restart" doc:"nodes whose agent is stopped with SIGTERM and started again"`
	Kill     []scenarios.NodeRef `json:"kill" doc:"nodes whose agent is killed with SIGKILL and started again"`
}

func (w *pingRestartWith) Validate(e strictyaml.FieldErrors) {
	if len(w.Restart) == 0 && len(w.Kill) == 0 {
		e.Add("restart", "want at least one node to restart or kill")
	}
	if w.Interval < time.Millisecond {
		e.Add("interval", "%s is too short (want at least 1ms)", w.Interval)
	}
}

type pingRestartExpect struct {
	MaxLost int `json:"maxLost" range:"0.." doc:"echo requests that may go unanswered"`
}

// runPingDuringRestart pings every interval while the agents are restarted and killed:
// at most maxLost requests may go unanswered.
func runPingDuringRestart(ctx context.Context, s *scenarios.Stage, w pingRestartWith, e pingRestartExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	to, _ := s.T.Pod(string(w.To))
	type result struct {
		lost int
		out  string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		lost, out, err := probe.PingLoss(ctx, s.T, string(w.From), to.IP, w.Count, w.Interval)
		done <- result{lost, out, err}
	}()
	time.Sleep(300 * time.Millisecond)
	var how, verbs []string
	for _, n := range w.Restart {
		how = append(how, string(n)+" (SIGTERM)")
	}
	for _, n := range w.Kill {
		how = append(how, string(n)+" (SIGKILL)")
	}
	s.Progress("restarting the agents of %s during a %s ping", strings.Join(how, " and "), w.Interval)
	var rerr error
	for _, n := range w.Restart {
		rerr = errors.Join(rerr, agents.Restart(ctx, string(n), "", false))
	}
	for _, n := range w.Kill {
		rerr = errors.Join(rerr, agents.Restart(ctx, string(n), "", true))
	}
	res := <-done
	if rerr != nil {
		return rerr
	}
	err = res.err
	if err == nil && res.lost > e.MaxLost {
		err = fmt.Errorf("%d of %d echo requests lost (at most %d may be):\n%s", res.lost, w.Count, e.MaxLost, res.out)
	}
	if len(w.Restart) > 0 {
		verbs = append(verbs, "restarted")
	}
	if len(w.Kill) > 0 {
		verbs = append(verbs, "killed")
	}
	lost := "none lost"
	if e.MaxLost > 0 {
		lost = fmt.Sprintf("at most %d lost", e.MaxLost)
	}
	s.Check(fmt.Sprintf("agents %s: %d pings every %s, %s", strings.Join(verbs, " and "), w.Count, w.Interval, lost),
		fmt.Sprintf("ping -i %g statistics in %s", w.Interval.Seconds(), w.From), err)
	return nil
}

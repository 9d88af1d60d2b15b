// SPDX-License-Identifier: Apache-2.0

package agentrun

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"podpath/datapath/agent"
	"podpath/topology"
)

// Agents are the podpath-agents of a running topology, one per node, each started
// inside its node's namespace with state under the run's folder and a bpffs private
// to the run.
type Agents struct {
	t      topology.Cluster
	bin    string
	config string
	bpffs  string
	procs  map[string]*agentProc
	// extra are further podpath-agent run flags per node (SetArgs).
	extra map[string][]string
}

// SetArgs gives node's agent further `podpath-agent run` flags from its next start
// (e.g. --hubble-socket): Restart applies them.
func (a *Agents) SetArgs(node string, args ...string) {
	if a.extra == nil {
		a.extra = map[string][]string{}
	}
	a.extra[node] = args
}

type agentProc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has been reaped
}

// Binary finds podpath-agent: $PODPATH_AGENT, beside the running executable, or
// on $PATH.
func Binary() (string, error) {
	if p := os.Getenv("PODPATH_AGENT"); p != "" {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "podpath-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	if p, err := exec.LookPath("podpath-agent"); err == nil {
		return p, nil
	}
	return "", errors.New("podpath-agent not found: run `make build` (bin/podpath-agent), or set PODPATH_AGENT")
}

// Start starts an agent on every node with the cilium-config in configFile
// (empty: defaults), then registers every node with every agent and every pod with its
// node's agent, which plumbs it. The topology must use podNetwork: agent.
func Start(ctx context.Context, t topology.Cluster, configFile string) (*Agents, error) {
	if t.Spec().PodNetwork != topology.PodNetworkAgent {
		return nil, fmt.Errorf("start agents on %s: the topology plumbs pods itself (podNetwork: %s); set podNetwork: agent", t.Name(), t.Spec().PodNetwork)
	}
	bin, err := Binary()
	if err != nil {
		return nil, err
	}
	bpffs, err := t.MountBPFFS()
	if err != nil {
		return nil, err
	}
	if err := checkMeshRoutingMode(t.Spec(), configFile); err != nil {
		return nil, err
	}
	a := &Agents{t: t, bin: bin, config: configFile, bpffs: bpffs, procs: map[string]*agentProc{}}
	for _, n := range t.Nodes() {
		if err := a.Start(ctx, n.Name); err != nil {
			return nil, err
		}
	}
	for _, n := range t.Nodes() {
		if err := a.Register(ctx, n.Name); err != nil {
			return nil, err
		}
	}
	return a, nil
}

func (a *Agents) stateDir(node string) string { return filepath.Join(a.t.Dir(), "agents", node) }

// Client returns the API client of node's agent.
func (a *Agents) Client(node string) *agent.Client {
	return agent.NewClient(agent.Socket(a.stateDir(node)))
}

// LogPath is where node's agent writes its log.
func (a *Agents) LogPath(node string) string { return filepath.Join(a.stateDir(node), "agent.log") }

// Start launches node's agent and waits until its API answers. The agent adopts what a
// previous agent of the node left attached and pinned.
func (a *Agents) Start(ctx context.Context, node string) error {
	n, err := a.t.Node(node)
	if err != nil {
		return err
	}
	devs := n.Devices
	if len(devs) == 0 {
		for _, i := range n.Interfaces {
			devs = append(devs, i.Name)
		}
	}
	if err := os.MkdirAll(a.stateDir(node), 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(a.LogPath(node), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer logf.Close()
	args := []string{"run", "--node", node, "--pod-cidr", n.PodCIDR.String(), "--devices", strings.Join(devs, ","),
		"--state-dir", a.stateDir(node), "--bpffs", filepath.Join(a.bpffs, node), "--node-ip", n.InternalIP.String()}
	if n.Zone != "" {
		args = append(args, "--zone", n.Zone)
	}
	if a.config != "" {
		args = append(args, "--config", a.config)
	}
	// The node's cgroup v2 (netns backend), for socket-LB: the agent attaches there.
	if cg, ok := a.t.(interface{ NodeCgroup(string) (string, error) }); ok {
		if p, err := cg.NodeCgroup(node); err == nil {
			args = append(args, "--cgroup", p)
		}
	}
	if f, err := a.writeEtcdConfig(node); err != nil {
		return err
	} else if f != "" {
		args = append(args, "--etcd-config", f)
	}
	mesh, err := a.meshArgs(node)
	if err != nil {
		return err
	}
	args = append(args, mesh...)
	args = append(args, a.extra[node]...)
	cmd := exec.Command(a.bin, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := a.t.StartCmd(node, cmd); err != nil {
		return fmt.Errorf("start agent on %s: %w", node, err)
	}
	p := &agentProc{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.exited) }()
	a.procs[node] = p
	ready, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	go func() {
		select {
		case <-p.exited:
			cancel()
		case <-ready.Done():
		}
	}()
	if _, err := a.Client(node).WaitReady(ready); err != nil {
		return fmt.Errorf("agent on %s: %w; log %s:\n%s", node, err, a.LogPath(node), tail(a.LogPath(node)))
	}
	return nil
}

// Register tells node's agent about every node of the topology (of its own cluster, in
// a mesh: the others' it reads from their etcd) and plumbs its pods.
func (a *Agents) Register(ctx context.Context, node string) error {
	c := a.Client(node)
	for _, n := range a.t.Nodes() {
		if !sameCluster(a.t.Spec(), node, n.Name) {
			continue
		}
		an := agent.Node{Name: n.Name, IP: n.InternalIP, PodCIDR: n.PodCIDR, Labels: NodeLabels(a.t.Spec(), n.Name)}
		if n.Name != node {
			for _, p := range n.Pods {
				an.Pods = append(an.Pods, agent.PodRef{Name: p.Name, IP: p.IP, Labels: PodLabels(a.t.Spec(), p.Name)})
			}
		}
		if err := c.NodeUpsert(ctx, an); err != nil {
			return fmt.Errorf("agent on %s: %w", node, err)
		}
	}
	n, _ := a.t.Node(node)
	for _, p := range n.Pods {
		if err := c.EndpointAdd(ctx, a.Endpoint(p)); err != nil {
			return fmt.Errorf("agent on %s: %w", node, err)
		}
	}
	return nil
}

// EgressGatewayPolicyUpsert programs a CiliumEgressGatewayPolicy on every node's agent.
func (a *Agents) EgressGatewayPolicyUpsert(ctx context.Context, p agent.Policy) error {
	for _, n := range a.t.Nodes() {
		if err := a.Client(n.Name).EgressGatewayPolicyUpsert(ctx, p); err != nil {
			return fmt.Errorf("agent on %s: %w", n.Name, err)
		}
	}
	return nil
}

// PolicyUpsert programs a network policy on every node's agent.
func (a *Agents) PolicyUpsert(ctx context.Context, p agent.Policy) error {
	for _, n := range a.t.Nodes() {
		if err := a.Client(n.Name).PolicyUpsert(ctx, p); err != nil {
			return fmt.Errorf("agent on %s: %w", n.Name, err)
		}
	}
	return nil
}

// PolicyDelete removes a network policy from every node's agent.
func (a *Agents) PolicyDelete(ctx context.Context, name string) error {
	for _, n := range a.t.Nodes() {
		if err := a.Client(n.Name).PolicyDelete(ctx, name); err != nil {
			return fmt.Errorf("agent on %s: %w", n.Name, err)
		}
	}
	return nil
}

// Endpoint is pod as its node's agent takes it (CNI ADD).
func (a *Agents) Endpoint(p topology.Pod) agent.Endpoint {
	m, _ := a.t.Member(p.Name)
	// The MTU is the agent's to decide (route MTU: device MTU less tunnel overhead).
	return agent.Endpoint{Name: p.Name, Netns: m.NsPath, IP: p.IP, HostVeth: p.HostVeth,
		HostMAC: p.HostMAC.String(), PodMAC: p.MAC.String(), Labels: PodLabels(a.t.Spec(), p.Name)}
}

// Stop stops node's agent: SIGTERM, or SIGKILL when kill is set (a crash). Either way
// the datapath stays attached.
func (a *Agents) Stop(node string, kill bool) error {
	p, ok := a.procs[node]
	if !ok {
		return fmt.Errorf("no agent running on %s", node)
	}
	sig := os.Interrupt
	if kill {
		sig = os.Kill
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("stop agent on %s: %w", node, err)
	}
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop agent on %s: still running 5s after %v", node, sig)
	}
	delete(a.procs, node)
	return nil
}

func tail(path string) string {
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	return strings.Join(lines[max(0, len(lines)-15):], "\n")
}

// Restart stops node's agent (SIGTERM, or SIGKILL when kill: a crash) and starts a new
// one with configFile (empty: the current one). The new agent adopts the attached
// programs and pinned maps and reconciles from its saved state.
func (a *Agents) Restart(ctx context.Context, node, configFile string, kill bool) error {
	if err := a.Stop(node, kill); err != nil {
		return err
	}
	if configFile != "" {
		a.config = configFile
	}
	return a.Start(ctx, node)
}

// ServiceUpsert programs a service on every node's agent. In a cluster mesh each
// cluster has its own Service of that name: a node's agent gets the backends that are
// pods of its cluster (and addresses outside every cluster), as its cluster's
// EndpointSlices would list; a global service gets the rest through the mesh.
func (a *Agents) ServiceUpsert(ctx context.Context, s agent.Service) error {
	return a.ServiceUpsertIn(ctx, "", s)
}

// ServiceUpsertIn programs a service on the agents of one mesh cluster ("": every
// node's): that cluster's own Service changes, the others' stay.
func (a *Agents) ServiceUpsertIn(ctx context.Context, cluster string, s agent.Service) error {
	for _, n := range a.t.Nodes() {
		if c := a.t.Spec().ClusterOfNode(n.Name); cluster != "" && (c == nil || c.Name != cluster) {
			continue
		}
		cs := s
		if a.t.Spec().IsMesh() {
			cs.Backends = nil
			for _, b := range s.Backends {
				if owner := a.podNode(b.IP); owner == "" || sameCluster(a.t.Spec(), n.Name, owner) {
					cs.Backends = append(cs.Backends, b)
				}
			}
		}
		if err := a.Client(n.Name).ServiceUpsert(ctx, cs); err != nil {
			return fmt.Errorf("agent on %s: %w", n.Name, err)
		}
	}
	return nil
}

// podNode is the node whose PodCIDR holds ip ("" : none).
func (a *Agents) podNode(ip netip.Addr) string {
	for _, n := range a.t.Nodes() {
		if n.PodCIDR.Contains(ip) {
			return n.Name
		}
	}
	return ""
}

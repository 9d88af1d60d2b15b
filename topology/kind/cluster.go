// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster"

	"podpath/topology"
)

// Cluster is a topology running as a kind cluster: the kind implementation of
// topology.Cluster. Members are node containers and Kubernetes Pods, not network
// namespaces on this machine: Exec works (docker exec, kubectl exec); Do, Start,
// StartCmd and MountBPFFS return errors wrapping topology.ErrNotSupported.
type Cluster struct {
	// Plan is what the cluster was generated from: node mapping, subnets, options.
	Plan *Plan
	// Kubeconfig is the path of the cluster's kubeconfig (in Dir).
	Kubeconfig string
	// Progress, when set, receives one line per teardown step.
	Progress func(string)

	name     string         // kind cluster name
	spec     *topology.Spec // resolved
	dir      string         // kind-config.yaml, manifests.yaml and kubeconfig
	nodes    []topology.Node
	ownDir   bool // Dir was created by Up: Down removes it
	docker   string
	kubectl  string
	provider *cluster.Provider
}

var _ topology.Cluster = (*Cluster)(nil)

// Name is the kind cluster name (`kind get clusters`).
func (c *Cluster) Name() string { return c.name }

// RunID is empty: a kind cluster is no run on this machine.
func (c *Cluster) RunID() string { return "" }

// Backend returns "kind".
func (c *Cluster) Backend() string { return BackendName }

// Spec is the resolved spec the cluster was planned from.
func (c *Cluster) Spec() *topology.Spec { return c.spec }

// Prefix is empty: kind makes no network namespaces named after the run.
func (c *Cluster) Prefix() string { return "" }

// Dir holds kind-config.yaml, manifests.yaml and the kubeconfig.
func (c *Cluster) Dir() string { return c.dir }

// Members returns the podpath nodes, then the pods. Netns and NsPath are empty: they
// live in containers, not in this machine's /var/run/netns.
func (c *Cluster) Members() []topology.Member {
	var out []topology.Member
	for _, n := range c.nodes {
		out = append(out, topology.Member{Name: n.Name, Kind: topology.KindNode})
	}
	for _, p := range c.Pods() {
		out = append(out, topology.Member{Name: p.Name, Kind: topology.KindPod})
	}
	return out
}

// Member returns the node or pod called name (without a namespace, see Members).
func (c *Cluster) Member(name string) (topology.Member, error) {
	for _, m := range c.Members() {
		if m.Name == name {
			return m, nil
		}
	}
	return topology.Member{}, fmt.Errorf("kind cluster %s: member %q: %w", c.name, name, topology.ErrNotFound)
}

// Interfaces returns a node's eth0 on the kind network, or a pod's eth0 (/32).
func (c *Cluster) Interfaces(member string) ([]topology.Interface, error) {
	if n, err := c.Node(member); err == nil {
		return slices.Clone(n.Interfaces), nil
	}
	p, err := c.Pod(member)
	if err != nil {
		return nil, fmt.Errorf("kind cluster %s: member %q: %w", c.name, member, topology.ErrNotFound)
	}
	return []topology.Interface{{Name: "eth0", Address: netip.PrefixFrom(p.IP, 32), MTU: p.MTU}}, nil
}

// Do is not supported: a kind member's namespace is not one this process can enter.
func (c *Cluster) Do(member string, _ func() error) error {
	return c.unsupported("run Go code", member)
}

// Start is not supported: use Exec (docker exec, kubectl exec) for one-shot commands.
func (c *Cluster) Start(_ context.Context, member string, argv ...string) (*exec.Cmd, error) {
	return nil, c.unsupported(fmt.Sprintf("start %q", strings.Join(argv, " ")), member)
}

// StartCmd is not supported, as Start.
func (c *Cluster) StartCmd(member string, cmd *exec.Cmd) error {
	return c.unsupported(fmt.Sprintf("start %q", strings.Join(cmd.Args, " ")), member)
}

// MountBPFFS is not supported: the agents mount their own bpffs inside the nodes.
func (c *Cluster) MountBPFFS() (string, error) {
	return "", fmt.Errorf("kind cluster %s: mount bpffs: the agent DaemonSet pins in its node's /sys/fs/bpf: %w", c.name, topology.ErrNotSupported)
}

func (c *Cluster) unsupported(what, member string) error {
	return fmt.Errorf("kind cluster %s: %s in %s: kind members are containers and Kubernetes pods, not network namespaces on this machine (Exec works): %w",
		c.name, what, member, topology.ErrNotSupported)
}

// Nodes returns the podpath nodes (the kind workers) in spec order. InternalIP and the
// eth0 address are the ones Docker gave the node containers; the pod gateway is the
// first address of the PodCIDR, as the agent configures it. Pod MACs and host veths are
// the agent's to choose and are left empty.
func (c *Cluster) Nodes() []topology.Node { return slices.Clone(c.nodes) }

// Node returns the podpath node called name.
func (c *Cluster) Node(name string) (topology.Node, error) {
	for _, n := range c.nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return topology.Node{}, fmt.Errorf("kind cluster %s: node %q: %w", c.name, name, topology.ErrNotFound)
}

// Pods returns every pod, node by node, in spec order.
func (c *Cluster) Pods() []topology.Pod {
	var out []topology.Pod
	for _, n := range c.nodes {
		out = append(out, n.Pods...)
	}
	return out
}

// Pod returns the pod called name.
func (c *Cluster) Pod(name string) (topology.Pod, error) {
	for _, p := range c.Pods() {
		if p.Name == name {
			return p, nil
		}
	}
	return topology.Pod{}, fmt.Errorf("kind cluster %s: pod %q: %w", c.name, name, topology.ErrNotFound)
}

// KindNode returns the kind node (container and Kubernetes node name) of a podpath node;
// a kind node name is returned as is.
func (c *Cluster) KindNode(name string) (string, error) {
	for _, m := range c.Plan.AllNodes() {
		if name == m.KindNode || (m.Node != "" && name == m.Node) {
			return m.KindNode, nil
		}
	}
	return "", fmt.Errorf("kind cluster %s: node %q: %w", c.name, name, topology.ErrNotFound)
}

// Exec runs argv in a member and returns its combined output: in a node's container
// (`docker exec <kind node> argv...`; a podpath or kind node name) or in a pod
// (`kubectl exec -n <ns> <pod> -- argv...`). A failure names the command, the exit
// status and the output.
func (c *Cluster) Exec(ctx context.Context, member string, argv ...string) ([]byte, error) {
	if len(argv) == 0 {
		return nil, fmt.Errorf("exec in %s: empty command", member)
	}
	if kn, err := c.KindNode(member); err == nil {
		out, err := run(ctx, nil, c.docker, append([]string{"exec", kn}, argv...)...)
		if err != nil {
			return out, fmt.Errorf("exec %q in %s: %w", strings.Join(argv, " "), member, err)
		}
		return out, nil
	}
	if _, err := c.Pod(member); err != nil {
		return nil, fmt.Errorf("exec in %s: %w", member, err)
	}
	out, err := c.Kubectl(ctx, append([]string{"exec", "-n", c.Plan.Options.PodNamespace, member, "--"}, argv...)...)
	if err != nil {
		return out, fmt.Errorf("exec %q in %s: %w", strings.Join(argv, " "), member, err)
	}
	return out, nil
}

// Kubectl runs kubectl with the cluster's kubeconfig and returns its combined output.
func (c *Cluster) Kubectl(ctx context.Context, args ...string) ([]byte, error) {
	return run(ctx, nil, c.kubectl, append([]string{"--kubeconfig", c.Kubeconfig}, args...)...)
}

// Down deletes the kind cluster (`kind delete cluster --name NAME`) and the work
// directory Up created.
func (c *Cluster) Down(ctx context.Context) error {
	c.progress("deleting kind cluster %s", c.name)
	if err := deleteCluster(ctx, c.newProvider(), c.name, c.Kubeconfig); err != nil {
		return err
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil {
			return fmt.Errorf("kind down %s: %w", c.name, err)
		}
	}
	return nil
}

func (c *Cluster) newProvider() *cluster.Provider {
	if c.provider == nil {
		c.provider = cluster.NewProvider(cluster.ProviderWithDocker())
	}
	return c.provider
}

func (c *Cluster) progress(format string, args ...any) {
	if c.Progress != nil {
		c.Progress(fmt.Sprintf(format, args...))
	}
}

// Delete deletes the kind cluster called name, like `kind delete cluster --name NAME`.
// Deleting a cluster that does not exist is not an error (kind's behaviour).
func Delete(ctx context.Context, name string) error {
	if err := CheckDocker(ctx); err != nil {
		return fmt.Errorf("kind delete %s: %w", name, err)
	}
	return deleteCluster(ctx, cluster.NewProvider(cluster.ProviderWithDocker()), name, "")
}

func deleteCluster(ctx context.Context, p *cluster.Provider, name, kubeconfig string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kind delete %s: %w", name, err)
	}
	if err := p.Delete(name, kubeconfig); err != nil {
		return fmt.Errorf("kind delete %s: %w", name, err)
	}
	return nil
}

// nodeAddr is what `docker inspect` tells of a node container's one network.
type nodeAddr struct {
	prefix netip.Prefix
}

// parseInspect reads the output of `docker inspect -f '{{range
// .NetworkSettings.Networks}}{{.IPAddress}}/{{.IPPrefixLen}} {{end}}'`: the first IPv4
// address with its prefix length.
func parseInspect(out string) (nodeAddr, error) {
	for _, f := range strings.Fields(out) {
		if p, err := netip.ParsePrefix(f); err == nil && p.Addr().Is4() {
			return nodeAddr{prefix: p}, nil
		}
	}
	return nodeAddr{}, fmt.Errorf("no IPv4 address in %q", strings.TrimSpace(out))
}

// topologyNodes builds the nodes and pods of a running cluster from the plan and the
// node containers' addresses (by kind node name).
func topologyNodes(p *Plan, addrs map[string]nodeAddr) ([]topology.Node, error) {
	var out []topology.Node
	var errs []error
	for i, n := range p.Spec.Nodes {
		m := p.Nodes[i]
		a, ok := addrs[m.KindNode]
		if !ok {
			errs = append(errs, fmt.Errorf("node %s: kind node %s has no address", n.Name, m.KindNode))
			continue
		}
		gw := m.PodCIDR.Addr().Next()
		node := topology.Node{
			Name: n.Name, InternalIP: a.prefix.Addr(), PodCIDR: m.PodCIDR, Gateway: gw, Zone: n.Zone,
			Interfaces: []topology.Interface{{Name: AgentDevice, Segment: n.Interfaces[0].Segment, Address: a.prefix, MTU: p.Options.NetworkMTU}},
		}
		for _, ps := range n.Pods {
			node.Pods = append(node.Pods, topology.Pod{
				Name: ps.Name, Node: n.Name, IP: netip.MustParseAddr(ps.Address), MTU: ps.MTU, Gateway: gw,
			})
		}
		out = append(out, node)
	}
	return out, errors.Join(errs...)
}

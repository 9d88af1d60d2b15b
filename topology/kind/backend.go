// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"sigs.k8s.io/kind/pkg/cluster"
	"sigs.k8s.io/kind/pkg/cluster/nodes"
	"sigs.k8s.io/kind/pkg/cluster/nodeutils"
	"sigs.k8s.io/kind/pkg/log"

	"podpath/topology"
)

// Backend brings a topology spec up as a kind cluster: Docker containers as nodes,
// Kubernetes without kube-proxy or a default CNI, and the podpath agent as a DaemonSet.
// It is the kind sibling of topology/netns behind topology.Backend.
type Backend struct {
	Options
	// Progress, when set, receives one line per step, never concurrently.
	Progress func(string)

	// docker and kubectl name the executables; empty: "docker", "kubectl" (tests
	// point them at fakes).
	docker, kubectl string
}

// BackendName is the kind backend's name: `podpath up --backend kind`.
const BackendName = "kind"

var _ topology.Backend = (*Backend)(nil)

// Name returns "kind".
func (b *Backend) Name() string { return BackendName }

// Down deletes the kind cluster called name (`kind delete cluster --name NAME`).
func (b *Backend) Down(ctx context.Context, name string) error { return Delete(ctx, name) }

// Up plans spec (an *UnsupportedError lists what kind cannot model), checks that Docker
// is usable (a *DockerUnavailableError quoting `docker info` otherwise) and that kubectl
// is on $PATH, then: writes kind-config.yaml and manifests.yaml to the work directory;
// creates the kind cluster through kind's Go API (kubeconfig in the work directory, not
// ~/.kube/config); loads the agent image into the nodes when the local engine has it;
// sets every Node's spec.podCIDR; applies the manifests with kubectl; waits for the
// podpath-agent DaemonSet; and waits for the scenario Pods to be Ready: podpath-cni has
// handed each to its node's agent, which gave it its annotated address. The agents
// learn the nodes (and Services) from their Kubernetes watchers. An Up that fails after
// creating the cluster deletes it, unless Options.Retain is set.
func (b *Backend) Up(ctx context.Context, spec *topology.Spec) (topology.Cluster, error) {
	c, err := b.up(ctx, spec)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return c, nil
}

// up is Up returning the concrete *Cluster.
func (b *Backend) up(ctx context.Context, spec *topology.Spec) (_ *Cluster, err error) {
	p, err := NewPlan(spec, b.Options)
	if err != nil {
		return nil, fmt.Errorf("kind up: %w", err)
	}
	o := p.Options
	docker, kubectl := orDefault(b.docker, "docker"), orDefault(b.kubectl, "kubectl")
	if err := checkDocker(ctx, docker); err != nil {
		return nil, fmt.Errorf("kind up %s: %w", o.ClusterName, err)
	}
	if _, err := exec.LookPath(kubectl); err != nil {
		return nil, fmt.Errorf("kind up %s: kubectl is needed to apply the manifests: %w", o.ClusterName, err)
	}
	haveImage := imagePresent(ctx, docker, o.AgentImage)
	if !haveImage && o.AgentImage == DefaultAgentImage {
		return nil, fmt.Errorf("kind up %s: agent image %s is not in the local Docker engine: build it at the repository root with `docker build -f deploy/Dockerfile -t %s .`", o.ClusterName, o.AgentImage, o.AgentImage)
	}
	provider := cluster.NewProvider(cluster.ProviderWithDocker(), cluster.ProviderWithLogger(progressLogger{b.progress}))
	existing, err := provider.List()
	if err != nil {
		return nil, fmt.Errorf("kind up %s: list clusters: %w", o.ClusterName, err)
	}
	if slices.Contains(existing, o.ClusterName) {
		return nil, fmt.Errorf("kind up %s: a kind cluster with this name already exists: delete it (`kind delete cluster --name %s`) or choose another name", o.ClusterName, o.ClusterName)
	}

	c := &Cluster{name: o.ClusterName, spec: p.Spec, Plan: p, dir: o.WorkDir,
		Progress: b.Progress, docker: docker, kubectl: kubectl, provider: provider}
	if c.dir == "" {
		if c.dir, err = os.MkdirTemp("", "podpath-kind-"+o.ClusterName+"-"); err != nil {
			return nil, fmt.Errorf("kind up %s: %w", o.ClusterName, err)
		}
		c.ownDir = true
	} else if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, fmt.Errorf("kind up %s: %w", o.ClusterName, err)
	}
	c.Kubeconfig = filepath.Join(c.dir, "kubeconfig")
	created := false
	defer func() {
		switch {
		case err == nil || o.Retain:
		case created:
			b.progress("deleting kind cluster %s after a failed up", o.ClusterName)
			if derr := c.Down(context.WithoutCancel(ctx)); derr != nil {
				err = errors.Join(err, derr)
			}
		case c.ownDir:
			os.RemoveAll(c.dir)
		}
	}()
	cfgPath, manPath, err := writeFiles(p, c.dir)
	if err != nil {
		return nil, fmt.Errorf("kind up %s: %w", o.ClusterName, err)
	}

	b.progress("creating kind cluster %s (config %s)", o.ClusterName, cfgPath)
	opts := []cluster.CreateOption{
		cluster.CreateWithV1Alpha4Config(p.KindConfig()),
		cluster.CreateWithKubeconfigPath(c.Kubeconfig),
		cluster.CreateWithDisplayUsage(false),
		cluster.CreateWithDisplaySalutation(false),
	}
	if o.NodeImage != "" {
		opts = append(opts, cluster.CreateWithNodeImage(o.NodeImage))
	}
	if err := provider.Create(o.ClusterName, opts...); err != nil {
		// kind removes the nodes of a failed create itself (unless told to retain).
		return nil, fmt.Errorf("kind up %s: create cluster: %w", o.ClusterName, err)
	}
	created = true
	if err := c.up(ctx, b, haveImage, manPath); err != nil {
		return nil, fmt.Errorf("kind up %s: %w", o.ClusterName, err)
	}
	return c, nil
}

// up runs the steps after the cluster exists.
func (c *Cluster) up(ctx context.Context, b *Backend, haveImage bool, manifests string) error {
	p, o := c.Plan, c.Plan.Options
	kindNodes, err := c.provider.ListNodes(c.name)
	if err != nil {
		return fmt.Errorf("list nodes: %w", err)
	}
	addrs := map[string]nodeAddr{}
	for _, n := range kindNodes {
		out, err := run(ctx, nil, c.docker, "inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}/{{.IPPrefixLen}} {{end}}", n.String())
		if err != nil {
			return err
		}
		if addrs[n.String()], err = parseInspect(string(out)); err != nil {
			return fmt.Errorf("node %s: %w", n.String(), err)
		}
	}
	if c.nodes, err = topologyNodes(p, addrs); err != nil {
		return err
	}
	if _, ok := addrs[p.ControlPlane.KindNode]; !ok {
		return fmt.Errorf("control-plane node %s not found (kind made: %v)", p.ControlPlane.KindNode, kindNodes)
	}

	if haveImage {
		b.progress("loading image %s into the nodes", o.AgentImage)
		if err := loadImage(ctx, c.docker, o.AgentImage, filepath.Join(c.dir, "agent-image.tar"), kindNodes); err != nil {
			return err
		}
	} else {
		b.progress("image %s is not in the local engine: the nodes will pull it", o.AgentImage)
	}
	for _, m := range p.AllNodes() {
		b.progress("setting podCIDR %s on node %s", m.PodCIDR, m.KindNode)
		patch := fmt.Sprintf(`{"spec":{"podCIDR":%q,"podCIDRs":[%q]}}`, m.PodCIDR, m.PodCIDR)
		if _, err := c.Kubectl(ctx, "patch", "node", m.KindNode, "--type=merge", "-p", patch); err != nil {
			return err
		}
	}
	b.progress("applying %s", manifests)
	if _, err := c.Kubectl(ctx, "apply", "-f", manifests); err != nil {
		return err
	}
	b.progress("waiting for daemonset %s/%s (at most %s)", SystemNamespace, AgentName, o.WaitTimeout)
	if _, err := c.Kubectl(ctx, "rollout", "status", "daemonset/"+AgentName, "-n", SystemNamespace, "--timeout="+o.WaitTimeout.String()); err != nil {
		diag, _ := c.Kubectl(ctx, "get", "pods", "-n", SystemNamespace, "-o", "wide")
		logs, _ := c.Kubectl(ctx, "logs", "-n", SystemNamespace, "-l", LabelName+"="+AgentName, "--all-containers", "--prefix", "--tail=20")
		return fmt.Errorf("%w\n%s\n%s", err, bytes.TrimSpace(diag), bytes.TrimSpace(logs))
	}
	return c.waitPods(ctx, b)
}

// waitPods waits for the scenario Pods to be Ready, which takes a CNI ADD that worked
// on every node; on failure the error carries the pods, their events and the agents'
// logs.
func (c *Cluster) waitPods(ctx context.Context, b *Backend) error {
	o := c.Plan.Options
	if len(c.Plan.pods()) == 0 {
		return nil
	}
	b.progress("waiting for the scenario pods in %s (at most %s)", o.PodNamespace, o.WaitTimeout)
	if _, err := c.Kubectl(ctx, "wait", "pods", "--all", "-n", o.PodNamespace, "--for=condition=Ready", "--timeout="+o.WaitTimeout.String()); err != nil {
		pods, _ := c.Kubectl(ctx, "get", "pods", "-n", o.PodNamespace, "-o", "wide")
		events, _ := c.Kubectl(ctx, "get", "events", "-n", o.PodNamespace, "--sort-by=.lastTimestamp")
		logs, _ := c.Kubectl(ctx, "logs", "-n", SystemNamespace, "-l", LabelName+"="+AgentName, "-c", "agent", "--prefix", "--tail=20")
		return fmt.Errorf("scenario pods not ready: %w\n%s\n%s\n%s", err, bytes.TrimSpace(pods), bytes.TrimSpace(events), bytes.TrimSpace(logs))
	}
	return nil
}

// writeFiles writes the kind config and the manifests into dir.
func writeFiles(p *Plan, dir string) (cfgPath, manPath string, err error) {
	cfg, err := p.KindConfigYAML()
	if err != nil {
		return "", "", err
	}
	man, err := p.Manifests()
	if err != nil {
		return "", "", err
	}
	cfgPath, manPath = filepath.Join(dir, "kind-config.yaml"), filepath.Join(dir, "manifests.yaml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return "", "", err
	}
	if err := os.WriteFile(manPath, man, 0o644); err != nil {
		return "", "", err
	}
	return cfgPath, manPath, nil
}

func imagePresent(ctx context.Context, docker, image string) bool {
	_, err := run(ctx, nil, docker, "image", "inspect", "--format", "{{.Id}}", image)
	return err == nil
}

// loadImage saves image from the local engine and imports it into every node's
// containerd, like `kind load docker-image IMAGE`.
func loadImage(ctx context.Context, docker, image, tarPath string, nodes []nodes.Node) error {
	if _, err := run(ctx, nil, docker, "save", "-o", tarPath, image); err != nil {
		return fmt.Errorf("load image %s: %w", image, err)
	}
	defer os.Remove(tarPath)
	for _, n := range nodes {
		f, err := os.Open(tarPath)
		if err != nil {
			return err
		}
		err = nodeutils.LoadImageArchive(n, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("load image %s into %s: %w", image, n.String(), err)
		}
	}
	return nil
}

func (b *Backend) progress(format string, args ...any) {
	if b.Progress != nil {
		b.Progress(fmt.Sprintf(format, args...))
	}
}

// progressLogger hands kind's user-facing messages (verbosity 0) to Progress.
type progressLogger struct{ fn func(string, ...any) }

var _ log.Logger = progressLogger{}

func (l progressLogger) Warn(msg string)                  { l.fn("kind: warning: %s", msg) }
func (l progressLogger) Warnf(format string, a ...any)    { l.fn("kind: warning: "+format, a...) }
func (l progressLogger) Error(msg string)                 { l.fn("kind: error: %s", msg) }
func (l progressLogger) Errorf(format string, a ...any)   { l.fn("kind: error: "+format, a...) }
func (l progressLogger) V(level log.Level) log.InfoLogger { return infoLogger{l.fn, level == 0} }

type infoLogger struct {
	fn func(string, ...any)
	on bool
}

func (l infoLogger) Info(msg string) {
	if l.on {
		l.fn("kind: %s", strings.TrimSpace(msg))
	}
}

func (l infoLogger) Infof(format string, a ...any) {
	if l.on {
		l.fn("kind: %s", strings.TrimSpace(fmt.Sprintf(format, a...)))
	}
}

func (l infoLogger) Enabled() bool { return l.on }

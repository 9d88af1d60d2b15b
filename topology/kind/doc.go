// SPDX-License-Identifier: Apache-2.0

// Package kind brings a topology spec up as a kind cluster, with the podpath agent as a
// DaemonSet in place of a CNI and kube-proxy: the second topology backend beside netns.
//
// # What it generates
//
// NewPlan maps the spec onto kind; Plan.KindConfig and Plan.Manifests render it.
//
//   - kind config: one control-plane node, then one worker per podpath node in spec
//     order. kind names the containers (which are also the Kubernetes node names)
//     <cluster>-control-plane, <cluster>-worker, <cluster>-worker2, ...; so spec node i
//     (from 0) is <cluster>-worker for i = 0 and <cluster>-worker<i+1> after. Each
//     worker carries the label podpath.io/node=<podpath name>. networking has
//     disableDefaultCNI: true, kubeProxyMode: none, podSubnet and serviceSubnet (default
//     10.96.0.0/16). The cluster name defaults to the topology name.
//   - manifests, in apply order: Namespace podpath-system; ServiceAccount, ClusterRole
//     (get/list/watch nodes, pods, services, endpointslices) and ClusterRoleBinding
//     podpath-agent; ConfigMap cilium-config (the user's data keys, as given);
//     ConfigMap podpath-agent (the agent's files, below); DaemonSet podpath-agent
//     (hostNetwork, privileged, tolerates every taint, mounts /sys/fs/bpf as bpffs with
//     Bidirectional propagation, /run/podpath-agent, /var/run/netns and the node's
//     /proc at /host/proc); Namespace podpath-scenario with one Pod per topology pod
//     (nodeName pinned, image nicolaka/netshoot running `sleep infinity`, label
//     podpath.io/pod, annotation podpath.io/address with the topology address); and
//     one Service per Options.Services entry (none when empty).
//
// # Per-node PodCIDRs
//
// The spec gives every node its PodCIDR, and scenarios check packets against the
// addresses derived from them, so the kind backend keeps them rather than letting
// Kubernetes choose:
//
//   - podSubnet is the smallest prefix covering every node's PodCIDR with room for one
//     more of the first node's size, which the control-plane node gets (it runs an
//     agent too): for 10.244.1.0/24 and 10.244.2.0/24 that is 10.244.0.0/22, and the
//     control plane gets 10.244.0.0/24. Options.PodSubnet overrides it.
//   - The controller-manager's node IPAM is off (a kubeadmConfigPatch sets
//     allocate-node-cidrs: "false"). With it on, kubeadm would carve node PodCIDRs of
//     node-cidr-mask-size out of podSubnet in the order nodes register, which is not
//     the spec's and not even stable from run to run.
//   - After kind creates the cluster, Up sets each Node's spec.podCIDR(s) to the
//     planned one (`kubectl patch node`; the API allows setting it once). Everything
//     that reads Node.spec.podCIDR agrees with the spec.
//   - The agent needs its PodCIDR as --pod-cidr, and the downward API cannot expose
//     Node.spec.podCIDR (only pod fields, e.g. spec.nodeName). So the ConfigMap
//     podpath-agent holds one key pod-cidr.<kind node name> per node, and the agent
//     container's shell looks up pod-cidr.$NODE_NAME (NODE_NAME from spec.nodeName)
//     before exec'ing `podpath-agent run --node $NODE_NAME --pod-cidr ... --devices
//     eth0 --state-dir /run/podpath-agent --bpffs /sys/fs/bpf/podpath [--config ...]`.
//     No API access from the agent, and no kube-proxy, is needed to start it.
//
// # The agent's cilium-config
//
// The agent's --config reads one file: a ConfigMap as kubectl prints it, or its data
// keys. A ConfigMap volume gives one file per key instead, so the ConfigMap
// podpath-agent also carries cilium-config.yaml: the cilium-config ConfigMap object
// itself, rendered from the same value as the applied one. Editing cilium-config in the
// cluster therefore does not reach the agent; re-run Up with the new config (the
// DaemonSet's podpath.io/config-sha256 annotation rolls it when the files change). A
// --config-dir flag reading the per-key layout, as Cilium's agent does, would remove the
// copy. With no keys, --config is left out and the agent runs with Cilium's defaults.
//
// # What is not there yet
//
//   - No CNI plugin: kubelet calls a CNI plugin for every pod that is not
//     hostNetwork, and podpath has none yet. The scenario Pods are applied but stay
//     ContainerCreating ("network plugin not initialized"), and the nodes stay NotReady.
//     The agent side is ready: its API is CNI ADD shaped (agent.Endpoint: name, netns
//     path, IP). The missing piece is a podpath-cni binary that the DaemonSet installs
//     (an init container copying it to /opt/cni/bin and writing
//     /etc/cni/net.d/05-podpath.conflist) and that turns ADD/DEL into
//     PUT/DELETE /v1/endpoints on /run/podpath-agent/agent.sock, taking the address from
//     the pod's podpath.io/address annotation (or host-local IPAM on the node's PodCIDR).
//   - No Kubernetes watcher in the agent: Up registers every node with every agent
//     itself (PUT /v1/nodes/<kind node> through curl in each node container), as the
//     scenarios do for netns. The agents know each other by kind node name.
//   - Services are generated but need the agent's service load-balancing to watch
//     them (kube-proxy is off).
//
// # What kind cannot model
//
// kind nodes are containers on one Docker network: one L2 segment, no routers, the
// network's MTU (kind copies the Docker default bridge's, normally 1500), one interface
// (eth0) per node with a Docker-assigned address. Specs asking for more segments,
// routers, clients, another MTU on a segment or interface, several or renamed node
// interfaces, explicit node addresses, podNetwork: kernel or podRoutes: all get an
// *UnsupportedError naming each field (errors.Is(err, ErrUnsupported)). Segment CIDRs are
// ignored: node addresses come from the Docker network.
//
// # Hosting it behind topology.Backend
//
// topology.Backend's Up returns a *topology.Topology, whose constructor is unexported
// and whose members are namespaces, so this package cannot return one. *Cluster offers
// the accessors both backends share, with the same signatures: Nodes, Node, Pods, Pod,
// Exec and Down. The smallest change in package topology that lets both backends sit
// behind one interface (kind's provider pattern):
//
//	// Running is a topology brought up by a backend.
//	type Running interface {
//		Nodes() []Node
//		Node(name string) (Node, error)
//		Pods() []Pod
//		Pod(name string) (Pod, error)
//		Exec(ctx context.Context, member string, argv ...string) ([]byte, error)
//		Down(ctx context.Context) error
//	}
//
//	type Backend interface {
//		Up(ctx context.Context, spec *Spec) (Running, error)
//		Name() string
//	}
//
// *topology.Topology and *kind.Cluster both satisfy Running today (a test here checks
// it); callers that need namespaces (Member, Do, Start, MountBPFFS) type-assert to
// *topology.Topology. Backend.Up of Netns then returns Running; the package-level
// topology.Up keeps returning *Topology. Package topology must not import this one (it
// imports topology), so the CLI picks the backend: `--backend netns|kind`.
//
// Up needs a Docker engine; it returns a *DockerUnavailableError
// (errors.Is(err, ErrDockerUnavailable)) quoting `docker info` where none answers.
package kind

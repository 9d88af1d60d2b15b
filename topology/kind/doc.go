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
//     Bidirectional propagation, /run/podpath-agent, /var/run/netns, the node's /proc
//     at /host/proc and its /etc/cni/net.d at /host/etc/cni/net.d; init containers
//     mount-bpf-fs and install-cni, which copies podpath-cni into the node's
//     /opt/cni/bin); Namespace podpath-scenario with one Pod per topology pod
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
//     eth0 --state-dir /run/podpath-agent --bpffs /sys/fs/bpf/podpath --k8s --cni-conf
//     /host/etc/cni/net.d/05-podpath.conflist [--config ...]`. The datapath starts
//     without the API server; the watcher (--k8s) only feeds it.
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
// # Pods: podpath-cni and the agent's watcher
//
// kubelet hands every pod that is not hostNetwork to the CNI plugin the node's
// /etc/cni/net.d names, and reports the node NotReady until there is one.
//
//   - install-cni copies the image's podpath-cni to /opt/cni/bin (temporary name,
//     then rename: a runtime never runs half a binary).
//   - The agent runs its Kubernetes watcher (--k8s, in-cluster service account). The
//     DaemonSet sets KUBERNETES_SERVICE_HOST/PORT to <cluster>-control-plane:6443:
//     the kubernetes Service's cluster IP needs the service load balancing that only
//     the agent provides. The watcher registers every Node (InternalIP, spec.podCIDR)
//     with the agent, and every Service with its EndpointSlices; it watches the pods
//     of its node for their podpath.io/address annotation.
//   - Once the agent serves and the watcher has synced, the agent writes
//     05-podpath.conflist (cniVersion 1.1.0: containerd 2.x, as in kindest/node,
//     also asks podpath-cni for STATUS and GC) pointing at its socket; the node turns
//     Ready. A CNI ADD goes to the agent, which gives the pod its annotated address
//     (the scenario pods: their topology addresses) or, for the cluster's own pods
//     (CoreDNS, local-path-provisioner), the next free address of the node's PodCIDR,
//     never one an annotated pod of the node asks for (the watcher has seen the
//     node's pods before the conflist appears). Up waits for the scenario pods to be
//     Ready.
//
// # What is not there (yet)
//
//   - This path has not run against a real cluster where podpath is developed (no
//     Docker engine there): the manifests are golden-tested, the plugin, the agent's
//     attachments and the watcher are tested against agents in network namespaces
//     and a fake API server.
//   - Services are balanced only with kube-proxy-replacement: "true" in the
//     cilium-config; otherwise the agent refuses them (the watcher logs it) and, with
//     kube-proxy off, the cluster has no Service load balancing at all (CoreDNS, for
//     one, reaches the API server through the kubernetes Service).
//   - Pods are IPv4 only, and their namespace must be a path the agent sees
//     (/var/run/netns, where containerd puts them); /proc/PID/ns/net paths are not
//     translated to the agent's /host/proc.
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
// # Behind topology.Backend
//
// *Backend implements topology.Backend and *Cluster topology.Cluster, as siblings of
// topology/netns. Members are node containers and Kubernetes Pods: Nodes, Pods,
// Members, Interfaces and Exec (docker exec, kubectl exec) work; Do, Start, StartCmd
// and MountBPFFS, which need a network namespace on this machine, return errors
// wrapping topology.ErrNotSupported.
//
// Up needs a Docker engine; it returns a *DockerUnavailableError
// (errors.Is(err, ErrDockerUnavailable)) quoting `docker info` where none answers.
package kind

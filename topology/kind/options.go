// SPDX-License-Identifier: Apache-2.0

package kind

import (
	"fmt"
	"time"

	"podpath/datapath/config"
)

// Defaults of Options.
const (
	// DefaultAgentImage is the podpath-agent image the DaemonSet runs; build it with
	// `docker build -f deploy/Dockerfile -t podpath/agent:dev .` at the repository root.
	DefaultAgentImage = "podpath/agent:dev"
	// DefaultPodImage runs in every scenario pod: a network toolbox (ping, curl,
	// iperf3, tcpdump, ip) whose main process only sleeps.
	DefaultPodImage = "nicolaka/netshoot"
	// DefaultServiceSubnet is kubeadm's default service CIDR.
	DefaultServiceSubnet = "10.96.0.0/16"
	// DefaultNetworkMTU is the MTU of the kind Docker network: kind copies the MTU of
	// Docker's default bridge, 1500 unless the engine is configured otherwise.
	DefaultNetworkMTU = 1500
	// DefaultWaitTimeout bounds each wait of Up: for the agent DaemonSet, then for the
	// scenario pods.
	DefaultWaitTimeout = 5 * time.Minute
	// SystemNamespace holds the agent DaemonSet, its ConfigMaps and RBAC.
	SystemNamespace = "podpath-system"
	// DefaultPodNamespace holds the scenario's pods and services.
	DefaultPodNamespace = "podpath-scenario"
)

// Options tune the generated kind config and manifests. The zero value is usable: every
// field has a default.
type Options struct {
	// ClusterName is the kind cluster name; default: the topology name. kind names the
	// node containers <ClusterName>-control-plane, <ClusterName>-worker,
	// <ClusterName>-worker2, ...
	ClusterName string
	// NodeImage is the kindest/node image; default: the one this kind release pins.
	NodeImage string
	// AgentImage runs podpath-agent; default DefaultAgentImage.
	AgentImage string
	// PodImage runs in the scenario pods; default DefaultPodImage.
	PodImage string
	// PodNamespace holds the scenario pods and services; default DefaultPodNamespace.
	PodNamespace string
	// CiliumConfig holds the cilium-config data keys, as given (ReadCiliumConfig reads
	// them from a file). Empty: no keys, the agent runs with Cilium's defaults.
	CiliumConfig map[string]string
	// PodSubnet is the cluster's pod CIDR (kubeadm networking.podSubnet); default: the
	// smallest prefix that covers every node's PodCIDR and leaves one PodCIDR of the
	// same size free for the control-plane node.
	PodSubnet string
	// ServiceSubnet is the cluster's service CIDR; default DefaultServiceSubnet.
	ServiceSubnet string
	// NetworkMTU is the MTU of the kind Docker network; default DefaultNetworkMTU. A
	// spec whose segments or interfaces ask for another MTU is unsupported.
	NetworkMTU int
	// Services are the scenario's Services; none are generated when empty.
	Services []Service
	// WaitTimeout bounds each wait of Up (the agent DaemonSet, the scenario pods);
	// default DefaultWaitTimeout.
	WaitTimeout time.Duration
	// Retain keeps the cluster when Up fails after creating it (for debugging).
	Retain bool
	// WorkDir receives kind-config.yaml, manifests.yaml and kubeconfig; default: a new
	// temporary directory.
	WorkDir string
}

// withDefaults returns a copy of o with every default filled in.
func (o Options) withDefaults(specName string) Options {
	if o.ClusterName == "" {
		o.ClusterName = specName
	}
	if o.AgentImage == "" {
		o.AgentImage = DefaultAgentImage
	}
	if o.PodImage == "" {
		o.PodImage = DefaultPodImage
	}
	if o.PodNamespace == "" {
		o.PodNamespace = DefaultPodNamespace
	}
	if o.ServiceSubnet == "" {
		o.ServiceSubnet = DefaultServiceSubnet
	}
	if o.NetworkMTU == 0 {
		o.NetworkMTU = DefaultNetworkMTU
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = DefaultWaitTimeout
	}
	return o
}

// ReadCiliumConfig reads a cilium-config file in any form datapath/config accepts (a
// ConfigMap, its data keys, a kubectl-edit dump), validates it, and returns its data
// keys as given, for Options.CiliumConfig.
func ReadCiliumConfig(path string) (map[string]string, error) {
	c, _, err := config.ParseFile(path)
	if err != nil {
		return nil, err
	}
	return c.Raw, nil
}

// validateCiliumConfig checks the data keys the way the agent will.
func validateCiliumConfig(data map[string]string) error {
	if _, _, err := config.FromMap(data); err != nil {
		return fmt.Errorf("cilium-config: %w", err)
	}
	return nil
}

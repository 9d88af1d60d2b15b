// SPDX-License-Identifier: Apache-2.0

package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// Names of the plugin and its network.
const (
	// PluginType is the plugin's executable name in CNI_PATH (the conf's "type").
	PluginType = "podpath-cni"
	// NetworkName is the network of the configuration list the agent writes.
	NetworkName = "podpath"
	// DefaultAgentSocket is the API socket of an agent with its default state dir, the
	// one the kind DaemonSet uses: /run/podpath-agent/agent.sock.
	DefaultAgentSocket = "/run/podpath-agent/agent.sock"
	// ConfListVersion is the cniVersion of the configuration list the agent writes:
	// 1.1.0 gives the runtime STATUS (is the agent up?) and GC.
	ConfListVersion = "1.1.0"
)

// NetConf is podpath-cni's network configuration, as the runtime passes it on stdin.
type NetConf struct {
	types.PluginConf
	// AgentSocket is the node agent's API socket; default DefaultAgentSocket.
	AgentSocket string `json:"agentSocket,omitempty"`
	// MTU of the pod's interface; 0: the agent's route MTU (device MTU less tunnel
	// overhead), which is what pods should normally get.
	MTU int `json:"mtu,omitempty"`
	// RuntimeConfig carries the "ips" capability: the address the runtime asks for.
	RuntimeConfig struct {
		IPs []string `json:"ips,omitempty"`
	} `json:"runtimeConfig,omitzero"`
}

// parseConf decodes and checks stdin. Its errors are CNI errors: 6 for what does not
// decode, 7 for values that are wrong, 2 for an ipam section (the agent allocates).
func parseConf(data []byte) (*NetConf, *netip.Addr, error) {
	conf := &NetConf{}
	if err := json.Unmarshal(data, conf); err != nil {
		return nil, nil, types.NewError(types.ErrDecodingFailure, "decode network config", err.Error())
	}
	invalid := func(format string, args ...any) error {
		return types.NewError(types.ErrInvalidNetworkConfig, fmt.Sprintf(format, args...), "")
	}
	if conf.AgentSocket == "" {
		conf.AgentSocket = DefaultAgentSocket
	}
	if !filepath.IsAbs(conf.AgentSocket) {
		return nil, nil, invalid("agentSocket %q: want an absolute path", conf.AgentSocket)
	}
	if conf.MTU != 0 && (conf.MTU < 68 || conf.MTU > 65535) {
		return nil, nil, invalid("mtu %d: want 0 (the agent's route MTU) or 68..65535", conf.MTU)
	}
	if conf.IPAM.Type != "" {
		return nil, nil, types.NewError(types.ErrUnsupportedField,
			fmt.Sprintf("ipam %q: podpath-cni takes no IPAM plugin, the podpath agent allocates pod addresses", conf.IPAM.Type), "")
	}
	var requested *netip.Addr
	for _, s := range conf.RuntimeConfig.IPs {
		a, err := parseIP(s)
		if err != nil || !a.Is4() {
			return nil, nil, invalid("runtimeConfig.ips: %q is not an IPv4 address (podpath pods are IPv4 only)", s)
		}
		if requested != nil && *requested != a {
			return nil, nil, invalid("runtimeConfig.ips: %v: podpath gives a pod one IPv4 address", conf.RuntimeConfig.IPs)
		}
		requested = &a
	}
	if conf.RawPrevResult != nil {
		if err := version.ParsePrevResult(&conf.PluginConf); err != nil {
			return nil, nil, types.NewError(types.ErrDecodingFailure, "decode prevResult", err.Error())
		}
	}
	return conf, requested, nil
}

// parseIP reads an address with or without a prefix length (the "ips" capability
// gives CIDRs, CNI_ARGS IP= a bare address).
func parseIP(s string) (netip.Addr, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Addr(), nil
	}
	return netip.ParseAddr(s)
}

// k8sArgs are the CNI_ARGS podpath-cni reads: the Kubernetes pod (kubelet and the
// runtimes pass it) and IP, the conventional request for an address.
type k8sArgs struct {
	types.CommonArgs
	IP                         types.UnmarshallableString
	K8S_POD_NAMESPACE          types.UnmarshallableString //nolint:revive // the CNI_ARGS key
	K8S_POD_NAME               types.UnmarshallableString //nolint:revive
	K8S_POD_UID                types.UnmarshallableString //nolint:revive
	K8S_POD_INFRA_CONTAINER_ID types.UnmarshallableString //nolint:revive
}

// parseArgs decodes CNI_ARGS (K=V;K=V); unknown keys are an error unless
// IgnoreUnknown=1, as the CNI conventions say. Errors are CNI error 4.
func parseArgs(s string) (*k8sArgs, *netip.Addr, error) {
	a := &k8sArgs{}
	if err := types.LoadArgs(s, a); err != nil {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables, "CNI_ARGS: "+err.Error(), "")
	}
	if a.IP == "" {
		return a, nil, nil
	}
	ip, err := parseIP(string(a.IP))
	if err != nil || !ip.Is4() {
		return nil, nil, types.NewError(types.ErrInvalidEnvironmentVariables, fmt.Sprintf("CNI_ARGS IP=%s is not an IPv4 address", a.IP), "")
	}
	return a, &ip, nil
}

// ConfList is the network configuration list for /etc/cni/net.d that points
// podpath-cni at the agent listening on socket.
func ConfList(socket string) ([]byte, error) {
	type plugin struct {
		Type         string          `json:"type"`
		AgentSocket  string          `json:"agentSocket"`
		Capabilities map[string]bool `json:"capabilities"`
	}
	list := struct {
		CNIVersion string   `json:"cniVersion"`
		Name       string   `json:"name"`
		Plugins    []plugin `json:"plugins"`
	}{ConfListVersion, NetworkName, []plugin{{PluginType, socket, map[string]bool{"ips": true}}}}
	data, err := json.MarshalIndent(list, "", "  ")
	return append(data, '\n'), err
}

// WriteConfList writes ConfList(socket) to path, atomically: the runtime watches the
// folder and must never read half a file. The temporary file's name ends in .tmp,
// which runtimes do not load.
func WriteConfList(path, socket string) error {
	data, err := ConfList(socket)
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write CNI config %s: %w", path, err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return fmt.Errorf("write CNI config %s: %w", path, err)
	}
	_, werr := tmp.Write(data)
	err = errors.Join(werr, tmp.Close(), os.Chmod(tmp.Name(), 0o644))
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write CNI config %s: %w", path, err)
	}
	return nil
}

// ipNet converts for the CNI result types, which use net.IPNet.
func ipNet(a netip.Addr, bits int) net.IPNet {
	return net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}

// SPDX-License-Identifier: Apache-2.0

package agentcli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"podpath/datapath/agent"
	"podpath/datapath/k8swatch"
	"podpath/internal/version"
)

const defaultStateDir = "/run/podpath-agent"

// Main runs podpath-agent and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch args[0] {
	case "run":
		err = run(ctx, args[1:], stderr)
	case "status":
		err = status(ctx, args[1:], stdout)
	case "policy":
		err = policyCmd(ctx, args[1:], stdout)
	case "version":
		fmt.Fprintln(stdout, "podpath-agent", version.String())
	default:
		fmt.Fprintf(stderr, "podpath-agent: unknown command %q (run 'podpath-agent help')\n", args[0])
		return 2
	}
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "podpath-agent %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer) {
	fmt.Fprint(w, `podpath-agent: the per-node podpath datapath agent (run it inside the node's network namespace)

Usage:
  podpath-agent run --node NAME --pod-cidr CIDR --devices eth0[,eth1] [--node-ip IP] [--config cilium-config.yaml]
                    [--state-dir DIR] [--bpffs DIR] [--cgroup DIR] [--k8s [--kubeconfig FILE]] [--cni-conf FILE]
                    [--hubble-socket PATH] [--metrics-addr ADDR]
  podpath-agent status [--state-dir DIR] [--json]
  podpath-agent policy apply -f FILE | delete NAME | list [--state-dir DIR]
  podpath-agent version
`)
}

func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		opts       agent.Options
		podCIDR    string
		devices    string
		nodeIP     string
		watch      bool
		kubeconfig string
		cniConf    string
	)
	fs.StringVar(&opts.Node, "node", "", "this node's name")
	fs.StringVar(&podCIDR, "pod-cidr", "", "this node's PodCIDR")
	fs.StringVar(&nodeIP, "node-ip", "", "the node's IP for node-to-node traffic; its device carries tunnels and sets the MTU (default: first address of the first device)")
	fs.StringVar(&opts.Zone, "zone", "", "the node's topology.kubernetes.io/zone label: with enable-service-topology, services send this node's flows to backends hinted for it")
	fs.StringVar(&devices, "devices", "", "underlay devices, comma-separated (from-netdev/to-netdev go on them)")
	fs.StringVar(&opts.ConfigFile, "config", "", "cilium-config ConfigMap (YAML, data keys, or a kubectl-edit dump); empty: Cilium's defaults")
	fs.StringVar(&opts.EtcdConfig, "etcd-config", "", "with kvstore: etcd, the etcd-config file (endpoints, trusted-ca-file, cert-file, key-file; what kvstore-opt's etcd.config names); empty: the cilium-config's etcd-config key")
	fs.StringVar(&opts.ClusterName, "cluster-name", "", "cluster-name (overrides the config's)")
	fs.Func("cluster-id", "cluster-id, 1-255 (overrides the config's): bits 16-23 of the identities this cluster allocates", func(v string) error {
		n, err := strconv.ParseUint(v, 10, 8)
		if err != nil || n == 0 {
			return fmt.Errorf("want 1..255")
		}
		opts.ClusterID = uint32(n)
		return nil
	})
	fs.StringVar(&opts.ClusterMeshConfig, "clustermesh-config", "", "with kvstore: etcd, Cilium's clustermesh-config directory: one etcd-config file per remote cluster, named after it")
	fs.StringVar(&opts.StateDir, "state-dir", defaultStateDir, "desired state and API socket")
	fs.StringVar(&opts.BPFFS, "bpffs", "/sys/fs/bpf/podpath", "this node's folder on a bpf filesystem")
	fs.StringVar(&opts.Cgroup, "cgroup", "", "with bpf-lb-sock: the node's cgroup v2 directory, holding the node's and its pods' processes, where socket-LB attaches")
	fs.StringVar(&opts.HubbleSocket, "hubble-socket", "", "serve Hubble's Observer API on this unix socket (e.g. STATE-DIR/hubble.sock); the agent then consumes the node's trace ring buffer")
	fs.IntVar(&opts.HubbleBufferCapacity, "hubble-buffer-capacity", 4095, "flows the Hubble server keeps")
	fs.StringVar(&opts.MetricsAddr, "metrics-addr", "", "serve Prometheus metrics at http://ADDR/metrics (in the node's namespace), e.g. 127.0.0.1:9962; consumes the trace ring buffer")
	fs.BoolVar(&watch, "k8s", false, "watch Kubernetes: Nodes and Services (with EndpointSlices) become the agent's nodes and services, and pods of this node get the address of their podpath.io/address annotation")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "with --k8s: kubeconfig file (default: the in-cluster service account)")
	fs.StringVar(&cniConf, "cni-conf", "", "once the agent serves (and with --k8s has synced), write the CNI network config list FILE (e.g. /etc/cni/net.d/05-podpath.conflist) pointing podpath-cni at this agent")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if podCIDR != "" {
		p, err := netip.ParsePrefix(podCIDR)
		if err != nil {
			return fmt.Errorf("--pod-cidr: %w", err)
		}
		opts.PodCIDR = p
	}
	if nodeIP != "" {
		a, err := netip.ParseAddr(nodeIP)
		if err != nil {
			return fmt.Errorf("--node-ip: %w", err)
		}
		opts.NodeIP = a
	}
	if devices != "" {
		opts.Devices = strings.Split(devices, ",")
	}
	if kubeconfig != "" && !watch {
		return errors.New("--kubeconfig: only with --k8s")
	}
	opts.Log = slog.New(slog.NewTextHandler(stderr, nil))
	a, err := agent.New(opts)
	if err != nil {
		return err
	}
	var w *k8swatch.Watcher
	if watch {
		if w, err = newWatcher(a, opts, kubeconfig); err != nil {
			return err
		}
	}
	return serve(ctx, a, w, opts, cniConf)
}

func status(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	stateDir := fs.String("state-dir", defaultStateDir, "the agent's state dir (holds agent.sock)")
	asJSON := fs.Bool("json", false, "print as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := agent.NewClient(agent.Socket(*stateDir)).Status(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(s)
	}
	s.Print(stdout)
	return nil
}

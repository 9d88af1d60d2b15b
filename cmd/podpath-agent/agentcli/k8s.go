// SPDX-License-Identifier: Apache-2.0

package agentcli

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"podpath/datapath/agent"
	"podpath/datapath/cni"
	"podpath/datapath/k8swatch"
)

// newWatcher connects to the API server (kubeconfig, or the pod's service account:
// KUBERNETES_SERVICE_HOST/PORT, which the kind DaemonSet points at the control plane
// since no service load balancing exists before the agent) and makes the agent answer
// CNI ADD with the addresses pods ask for.
func newWatcher(a *agent.Agent, opts agent.Options, kubeconfig string) (*k8swatch.Watcher, error) {
	var cfg *rest.Config
	var err error
	if kubeconfig != "" {
		cfg, err = clientcmd.BuildConfigFromFlags("", kubeconfig)
	} else {
		cfg, err = rest.InClusterConfig()
	}
	if err != nil {
		return nil, fmt.Errorf("--k8s: %w", err)
	}
	cfg.UserAgent = "podpath-agent/" + opts.Node
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("--k8s: %w", err)
	}
	w, err := k8swatch.New(k8swatch.Options{Client: cs, Node: opts.Node, Target: a, Log: opts.Log})
	if err != nil {
		return nil, err
	}
	a.SetPodAddresses(w)
	return w, nil
}

// serve runs the agent; once its API answers it starts the watcher (if any), and once
// that has synced writes the CNI config list (if asked): the runtime then sends pods
// only to an agent that can attach them. A failure to write it stops the agent.
func serve(ctx context.Context, a *agent.Agent, w *k8swatch.Watcher, opts agent.Options, cniConf string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	socket, err := filepath.Abs(agent.Socket(opts.StateDir))
	if err != nil {
		return err
	}
	runErr, confErr := make(chan error, 1), make(chan error, 1)
	go func() { runErr <- a.Run(ctx) }()
	go func() {
		if _, err := agent.NewClient(socket).WaitReady(ctx); err != nil {
			return // the agent stopped: Run says why
		}
		if w != nil {
			go func() {
				if err := w.Run(ctx); err != nil {
					opts.Log.Error("k8s watcher", "err", err)
				}
			}()
			select {
			case <-w.Synced():
			case <-ctx.Done():
				return
			}
		}
		if cniConf == "" {
			return
		}
		if err := cni.WriteConfList(cniConf, socket); err != nil {
			confErr <- fmt.Errorf("--cni-conf: %w", err)
			return
		}
		opts.Log.Info("wrote CNI config", "file", cniConf, "socket", socket)
	}()
	select {
	case err := <-runErr:
		return err
	case err := <-confErr:
		cancel()
		return errors.Join(err, <-runErr)
	}
}

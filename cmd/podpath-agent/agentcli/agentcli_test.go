// SPDX-License-Identifier: Apache-2.0

package agentcli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"podpath/datapath/agent"
	"podpath/datapath/cni"
	"podpath/internal/testutil"
	"podpath/topology/topotest"
)

func TestRunFlags(t *testing.T) {
	var out, errb bytes.Buffer
	if code := Main([]string{"run", "--kubeconfig", "/x"}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "--kubeconfig: only with --k8s") {
		t.Errorf("--kubeconfig without --k8s: exit %d, %q", code, errb.String())
	}
	out.Reset()
	Main([]string{"help"}, &out, &errb)
	for _, f := range []string{"--k8s", "--kubeconfig", "--cni-conf"} {
		if !strings.Contains(out.String(), f) {
			t.Errorf("usage lacks %s:\n%s", f, out.String())
		}
	}
}

// TestRunCNIConf starts podpath-agent in two nodes: with --cni-conf alone it writes the
// conflist, pointing at its socket, once it serves; with --k8s and an API server that
// does not answer it serves but writes none, so the runtime sends it no pod it could
// not give its annotated address.
func TestRunCNIConf(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	bin := topotest.Build(t, "podpath/cmd/podpath-agent")
	topo := topotest.Up(t, "l2-two-node-agent", "agentcli", false)
	ctx := t.Context()
	bpffs, err := topo.MountBPFFS()
	if err != nil {
		t.Fatal(err)
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	// Nothing listens on port 1 of the node's loopback.
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1", insecure-skip-tls-verify: true}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(node string, extra ...string) (socket, conf string) {
		n, err := topo.Node(node)
		if err != nil {
			t.Fatal(err)
		}
		state := filepath.Join(dir, node)
		conf = filepath.Join(dir, node+"-net.d", "05-podpath.conflist")
		args := append([]string{"run", "--node", node, "--pod-cidr", n.PodCIDR.String(), "--devices", "eth0",
			"--state-dir", state, "--bpffs", filepath.Join(bpffs, node), "--cni-conf", conf}, extra...)
		cmd := exec.Command(bin, args...)
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := topo.StartCmd(node, cmd); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
			if t.Failed() {
				t.Logf("agent on %s:\n%s", node, log.String())
			}
		})
		socket = agent.Socket(state)
		wait, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if _, err := agent.NewClient(socket).WaitReady(wait); err != nil {
			t.Fatalf("agent on %s: %v", node, err)
		}
		return socket, conf
	}

	socket, conf := start("node1")
	want, err := cni.ConfList(socket)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := os.ReadFile(conf)
		if err == nil && bytes.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("conflist %s: %v\n%s\nwant\n%s", conf, err, got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}

	_, conf2 := start("node2", "--k8s", "--kubeconfig", kubeconfig)
	time.Sleep(2 * time.Second)
	if _, err := os.Stat(conf2); !os.IsNotExist(err) {
		t.Errorf("agent without an API server wrote %s (%v): its watcher has not synced", conf2, err)
	}
}

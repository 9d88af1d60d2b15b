// SPDX-License-Identifier: Apache-2.0

package cnitest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// Binary returns $PODPATH_CNI, or podpath-cni built from this tree.
func Binary(t *testing.T) string {
	if p := os.Getenv("PODPATH_CNI"); p != "" {
		return p
	}
	return testutil.Build(t, "podpath/cmd/podpath-cni")
}

// Call is one run of the plugin, as a runtime makes it: CNI_* variables and the
// network config on stdin.
type Call struct {
	Command, ContainerID, Netns, IfName, Args string
	Conf                                      string
	// In is the path of the network namespace to run the plugin in (a node's, as a
	// runtime runs it in the host's); empty: the test's own.
	In string
}

// Run executes the plugin bin and returns its stdout, or the CNI error it printed.
// An IfName left empty is eth0 for the commands that take one.
func Run(t *testing.T, bin string, c Call) ([]byte, *types.Error) {
	t.Helper()
	if c.IfName == "" && c.Command != "VERSION" && c.Command != "GC" && c.Command != "STATUS" {
		c.IfName = "eth0"
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{"CNI_COMMAND=" + c.Command, "CNI_CONTAINERID=" + c.ContainerID, "CNI_NETNS=" + c.Netns,
		"CNI_IFNAME=" + c.IfName, "CNI_ARGS=" + c.Args, "CNI_PATH=" + filepath.Dir(bin)}
	cmd.Stdin = bytes.NewReader([]byte(c.Conf))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := cmd.Start
	if c.In != "" {
		start = func() error { return nsutil.Do(c.In, cmd.Start) }
	}
	if err := start(); err != nil {
		t.Fatalf("start podpath-cni %s: %v", c.Command, err)
	}
	if err := cmd.Wait(); err != nil {
		var ce types.Error
		if jerr := json.Unmarshal(stdout.Bytes(), &ce); jerr != nil || ce.Code == 0 {
			t.Fatalf("podpath-cni %s: %v without a CNI error on stdout: %q (stderr %q)", c.Command, err, stdout.String(), stderr.String())
		}
		return nil, &ce
	}
	return stdout.Bytes(), nil
}

// Conf is a network config for the plugin with cniVersion v, the agent at socket and
// the extra top-level fields in extra (JSON members, without braces).
func Conf(v, socket, extra string) string {
	s := fmt.Sprintf(`{"cniVersion":%q,"name":"podpath","type":"podpath-cni","agentSocket":%q`, v, socket)
	if extra != "" {
		s += "," + extra
	}
	return s + "}"
}

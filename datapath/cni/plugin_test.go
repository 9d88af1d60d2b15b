// SPDX-License-Identifier: Apache-2.0

package cni_test

import (
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"podpath/datapath/cni"
	"podpath/datapath/cni/cnitest"
)

// TestPluginWithoutAgent runs the plugin binary where no agent answers: every command
// must fail with the CNI error code a runtime acts on, printed as CNI error JSON.
func TestPluginWithoutAgent(t *testing.T) {
	bin := cnitest.Binary(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	// A socket file nobody listens on: what an agent that crashed leaves behind.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	netns := "/var/run/netns/pptest-cni-none"
	add := func(c cnitest.Call) cnitest.Call {
		c.Command, c.ContainerID, c.Netns = "ADD", "c1", netns
		return c
	}
	tests := []struct {
		name string
		call cnitest.Call
		code uint
		msg  string
	}{
		{"ADD, no socket", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", missing, "")}), types.ErrTryAgainLater, "podpath agent at " + missing + " is not available"},
		{"ADD, stale socket", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", stale, "")}), types.ErrTryAgainLater, "is not available"},
		{"DEL, no socket", cnitest.Call{Command: "DEL", ContainerID: "c1", Conf: cnitest.Conf("1.0.0", missing, "")}, types.ErrTryAgainLater, "DEL: podpath agent"},
		{"STATUS", cnitest.Call{Command: "STATUS", Conf: cnitest.Conf("1.1.0", missing, "")}, types.ErrPluginNotAvailable, "does not answer"},
		{"GC, no socket", cnitest.Call{Command: "GC", Conf: cnitest.Conf("1.1.0", missing, "")}, types.ErrTryAgainLater, "GC: podpath agent"},
		{"GC needs 1.1.0", cnitest.Call{Command: "GC", Conf: cnitest.Conf("1.0.0", missing, "")}, types.ErrIncompatibleCNIVersion, "does not allow GC"},
		{"CHECK without prevResult", cnitest.Call{Command: "CHECK", ContainerID: "c1", Netns: netns, Conf: cnitest.Conf("1.0.0", missing, "")}, types.ErrInvalidNetworkConfig, "prevResult"},
		{"unknown version", add(cnitest.Call{Conf: cnitest.Conf("9.9.9", missing, "")}), types.ErrIncompatibleCNIVersion, "incompatible CNI versions"},
		{"not JSON", add(cnitest.Call{Conf: "{"}), types.ErrDecodingFailure, ""},
		{"no name", add(cnitest.Call{Conf: `{"cniVersion":"1.0.0","type":"podpath-cni"}`}), types.ErrInvalidNetworkConfig, "missing network name"},
		{"relative socket", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", "agent.sock", "")}), types.ErrInvalidNetworkConfig, "agentSocket"},
		{"bad mtu", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", missing, `"mtu":20`)}), types.ErrInvalidNetworkConfig, "mtu 20"},
		{"IPAM plugin", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", missing, `"ipam":{"type":"host-local"}`)}), types.ErrUnsupportedField, "the podpath agent allocates"},
		{"unknown CNI_ARGS", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", missing, ""), Args: "FOO=bar"}), types.ErrInvalidEnvironmentVariables, "unknown args"},
		{"CNI_ARGS IP not IPv4", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", missing, ""), Args: "IgnoreUnknown=1;IP=fd00::7"}), types.ErrInvalidEnvironmentVariables, "IP=fd00::7"},
		{"two requests", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", missing, `"runtimeConfig":{"ips":["10.244.1.7/24"]}`), Args: "IP=10.244.1.8"}), types.ErrInvalidNetworkConfig, "asks for 10.244.1.7"},
		{"other ifname", add(cnitest.Call{Conf: cnitest.Conf("1.0.0", missing, ""), IfName: "net1"}), types.ErrInvalidEnvironmentVariables, `CNI_IFNAME "net1"`},
		{"no CNI_NETNS", cnitest.Call{Command: "ADD", ContainerID: "c1", Conf: cnitest.Conf("1.0.0", missing, "")}, types.ErrInvalidEnvironmentVariables, "CNI_NETNS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, cerr := cnitest.Run(t, bin, tt.call)
			if cerr == nil {
				t.Fatalf("succeeded: %s", out)
			}
			if cerr.Code != tt.code || !strings.Contains(cerr.Msg, tt.msg) {
				t.Errorf("error %d %q (%s), want %d with %q", cerr.Code, cerr.Msg, cerr.Details, tt.code, tt.msg)
			}
		})
	}

	out, cerr := cnitest.Run(t, bin, cnitest.Call{Command: "VERSION"})
	if cerr != nil {
		t.Fatal(cerr)
	}
	var v struct {
		CNIVersion        string   `json:"cniVersion"`
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := json.Unmarshal(out, &v); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0.4.0", "1.0.0", "1.1.0"} {
		if !slices.Contains(v.SupportedVersions, want) {
			t.Errorf("VERSION %s lacks %s", out, want)
		}
	}
	if !slices.Equal(v.SupportedVersions, cni.SupportedVersions.SupportedVersions()) {
		t.Errorf("VERSION %v, want %v", v.SupportedVersions, cni.SupportedVersions.SupportedVersions())
	}
}

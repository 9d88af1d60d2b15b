// SPDX-License-Identifier: Apache-2.0

package cni

import (
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"podpath/datapath/agent"
)

func TestParseConf(t *testing.T) {
	tests := []struct {
		name, conf string
		code       uint // 0: valid
		socket     string
		requested  string
	}{
		{"defaults", `{"cniVersion":"1.0.0","name":"podpath","type":"podpath-cni"}`, 0, DefaultAgentSocket, ""},
		{"socket and ips", `{"cniVersion":"1.1.0","name":"podpath","type":"podpath-cni","agentSocket":"/x/a.sock","runtimeConfig":{"ips":["10.244.1.7/24"]}}`, 0, "/x/a.sock", "10.244.1.7"},
		{"not JSON", `{"cniVersion":`, types.ErrDecodingFailure, "", ""},
		{"relative socket", `{"name":"p","agentSocket":"agent.sock"}`, types.ErrInvalidNetworkConfig, "", ""},
		{"mtu too small", `{"name":"p","mtu":40}`, types.ErrInvalidNetworkConfig, "", ""},
		{"ipam plugin", `{"name":"p","ipam":{"type":"host-local"}}`, types.ErrUnsupportedField, "", ""},
		{"IPv6 ips", `{"name":"p","runtimeConfig":{"ips":["fd00::5/64"]}}`, types.ErrInvalidNetworkConfig, "", ""},
		{"two ips", `{"name":"p","runtimeConfig":{"ips":["10.0.0.5","10.0.0.6"]}}`, types.ErrInvalidNetworkConfig, "", ""},
		{"bad prevResult", `{"cniVersion":"1.0.0","name":"p","prevResult":{"ips":[{"address":"nope"}]}}`, types.ErrDecodingFailure, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conf, req, err := parseConf([]byte(tt.conf))
			if tt.code != 0 {
				var ce *types.Error
				if !errors.As(err, &ce) || ce.Code != tt.code {
					t.Fatalf("err = %#v, want CNI error %d", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if conf.AgentSocket != tt.socket {
				t.Errorf("socket = %q, want %q", conf.AgentSocket, tt.socket)
			}
			if (req == nil) != (tt.requested == "") || (req != nil && req.String() != tt.requested) {
				t.Errorf("requested = %v, want %q", req, tt.requested)
			}
		})
	}
}

func TestParseArgs(t *testing.T) {
	a, ip, err := parseArgs("IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_UID=u1;K8S_POD_INFRA_CONTAINER_ID=c1;IP=10.244.1.9;OTHER=x")
	if err != nil || a.K8S_POD_NAME != "web-0" || a.K8S_POD_NAMESPACE != "default" || a.K8S_POD_UID != "u1" || ip == nil || *ip != netip.MustParseAddr("10.244.1.9") {
		t.Fatalf("parseArgs = %+v, %v, %v", a, ip, err)
	}
	if _, ip, err := parseArgs(""); err != nil || ip != nil {
		t.Errorf("empty CNI_ARGS: %v %v", ip, err)
	}
	for _, bad := range []string{"OTHER=x", "IP=fd00::1", "IP=nope", "K8S_POD_NAME"} {
		var ce *types.Error
		if _, _, err := parseArgs(bad); !errors.As(err, &ce) || ce.Code != types.ErrInvalidEnvironmentVariables {
			t.Errorf("parseArgs(%q) = %v, want CNI error 4", bad, err)
		}
	}
}

// TestConfList: the file the agent writes is a configuration list libcni (what
// containerd and CRI-O use) loads, naming this plugin and the agent's socket.
func TestConfList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "net.d", "05-podpath.conflist")
	if err := WriteConfList(path, "/run/podpath-agent/agent.sock"); err != nil {
		t.Fatal(err)
	}
	if err := WriteConfList(path, "/run/podpath-agent/agent.sock"); err != nil {
		t.Fatalf("rewrite: %v", err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "net.d", "*"))
	if len(left) != 1 {
		t.Errorf("files in net.d: %v, want only the conflist", left)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o644 {
		t.Errorf("mode: %v %v", st, err)
	}
	list, err := libcni.ConfListFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if list.Name != NetworkName || list.CNIVersion != ConfListVersion || len(list.Plugins) != 1 {
		t.Fatalf("conflist = %+v", list)
	}
	p := list.Plugins[0]
	var conf NetConf
	if err := json.Unmarshal(p.Bytes, &conf); err != nil {
		t.Fatal(err)
	}
	if p.Network.Type != PluginType || conf.AgentSocket != "/run/podpath-agent/agent.sock" || !p.Network.Capabilities["ips"] {
		t.Errorf("plugin = %s", p.Bytes)
	}
	if DefaultAgentSocket != agent.Socket("/run/podpath-agent") {
		t.Errorf("DefaultAgentSocket %s is not the socket of an agent with the default state dir", DefaultAgentSocket)
	}
}

func TestResultVersions(t *testing.T) {
	r := agent.AttachmentResult{
		Attachment: agent.Attachment{PodSandbox: agent.PodSandbox{ContainerID: "c1", IfName: "eth0", Netns: "/var/run/netns/p"},
			IP: netip.MustParseAddr("10.244.1.5")},
		Gateway: netip.MustParseAddr("10.244.1.1"), HostVeth: "lxc1234", HostMAC: "02:00:00:00:00:01", PodMAC: "02:00:00:00:00:02",
		MTU: 1450, RouteMTU: 1450,
	}
	for _, v := range []string{"0.3.1", "0.4.0", "1.0.0", "1.1.0"} {
		t.Run(v, func(t *testing.T) {
			res, err := result(r, v).GetAsVersion(v)
			if err != nil {
				t.Fatal(err)
			}
			data, err := json.Marshal(res)
			if err != nil {
				t.Fatal(err)
			}
			s := string(data)
			for _, want := range []string{`"cniVersion":"` + v + `"`, `"name":"eth0"`, `"mac":"02:00:00:00:00:02"`, `"sandbox":"/var/run/netns/p"`, `"name":"lxc1234"`,
				`"address":"10.244.1.5/32"`, `"gateway":"10.244.1.1"`, `"interface":1`, `"dst":"0.0.0.0/0","gw":"10.244.1.1"`} {
				if !strings.Contains(s, want) {
					t.Errorf("result lacks %s:\n%s", want, s)
				}
			}
			if hasMTU := strings.Contains(s, `"mtu":1450`); hasMTU != (v == "1.1.0") {
				t.Errorf("mtu fields present %v for %s:\n%s", hasMTU, v, s)
			}
		})
	}
}

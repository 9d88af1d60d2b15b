// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/agent"
	"podpath/datapath/cni"
	"podpath/datapath/cni/cnitest"
	"podpath/datapath/config/configs"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
	"podpath/topology"
	"podpath/topology/agentrun"
	"podpath/topology/topotest"
)

// cluster is the catalog's two-node L2 topology without its pods, an agent on each
// node (native routing) and the plugin: pods come only through CNI.
type cluster struct {
	topo   topology.Cluster
	agents *agentrun.Agents
	bin    string
}

func upCluster(t *testing.T) *cluster {
	t.Helper()
	testutil.RequireRoot(t)
	topotest.UseAgent(t)
	bin := cnitest.Binary(t)
	topo := topotest.Up(t, "l2-two-node-agent", "cni", false)
	cfg, err := configs.Write(topo.Dir(), "native-routing")
	if err != nil {
		t.Fatal(err)
	}
	agents, err := agentrun.Start(t.Context(), topo, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{topo: topo, agents: agents, bin: bin}
}

// nodeNs is the path of node's namespace, where the plugin runs as a runtime runs it.
func (c *cluster) nodeNs(t *testing.T, node string) string {
	m, err := c.topo.Member(node)
	if err != nil {
		t.Fatal(err)
	}
	return m.NsPath
}

// pod creates an empty pod namespace pptest-cni-<pid>-<name>, as a runtime does before
// ADD; the test's cleanup deletes it if the test has not.
func newPodNs(t *testing.T, name string) string {
	ns := fmt.Sprintf("pptest-cni-%d-%s", os.Getpid(), name)
	if err := nsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(ns) })
	return nsutil.Path(ns)
}

// cni runs the plugin on node with the node agent's socket in the config.
func (c *cluster) cni(t *testing.T, node string, cl cnitest.Call, version, extra string) ([]byte, *types.Error) {
	t.Helper()
	cl.In = c.nodeNs(t, node)
	cl.Conf = cnitest.Conf(version, c.agents.Client(node).Socket, extra)
	return cnitest.Run(t, c.bin, cl)
}

// add runs ADD and returns the result, converted to the current version, and as
// printed.
func (c *cluster) add(t *testing.T, node, id, netnsPath, args, version, extra string) (*current.Result, []byte) {
	t.Helper()
	out, cerr := c.cni(t, node, cnitest.Call{Command: "ADD", ContainerID: id, Netns: netnsPath, Args: args}, version, extra)
	if cerr != nil {
		t.Fatalf("ADD %s on %s: CNI error %d: %s (%s)", id, node, cerr.Code, cerr.Msg, cerr.Details)
	}
	var v struct {
		CNIVersion string `json:"cniVersion"`
	}
	if err := json.Unmarshal(out, &v); err != nil || v.CNIVersion != version {
		t.Fatalf("ADD %s: result cniVersion %q (%v), want the request's %s:\n%s", id, v.CNIVersion, err, version, out)
	}
	raw, err := cniversion.NewResult(version, out)
	if err != nil {
		t.Fatalf("ADD %s: result: %v\n%s", id, err, out)
	}
	res, err := current.GetResult(raw)
	if err != nil {
		t.Fatal(err)
	}
	return res, out
}

// inNs runs argv inside the namespace at nsPath and returns its combined output.
func inNs(t *testing.T, nsPath string, argv ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := nsutil.Do(nsPath, cmd.Start); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	return out.String(), err
}

func ping(t *testing.T, from, to string) {
	t.Helper()
	if out, err := inNs(t, from, "ping", "-c1", "-W2", to); err != nil {
		t.Errorf("ping %s from %s: %v\n%s", to, from, err, out)
	}
}

func handleAt(t *testing.T, nsPath string) *netlink.Handle {
	t.Helper()
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// checkAttached compares the result with the two namespaces: the host veth (on node)
// and the pod's eth0 with its /32 address and default route.
func (c *cluster) checkAttached(t *testing.T, node, podNs string, res *current.Result, ip string) {
	t.Helper()
	gw := netip.MustParsePrefix(ip + "/24").Masked().Addr().Next()
	if len(res.Interfaces) != 2 || len(res.IPs) != 1 || len(res.Routes) != 1 {
		t.Fatalf("result: %d interfaces, %d ips, %d routes, want 2, 1, 1: %+v", len(res.Interfaces), len(res.IPs), len(res.Routes), res)
	}
	hostIf, podIf, ipc, def := res.Interfaces[0], res.Interfaces[1], res.IPs[0], res.Routes[0]
	if hostIf.Sandbox != "" || podIf.Name != "eth0" || podIf.Sandbox != podNs {
		t.Errorf("interfaces: host %+v, pod %+v", hostIf, podIf)
	}
	if ipc.Interface == nil || *ipc.Interface != 1 || ipc.Address.String() != ip+"/32" || ipc.Gateway.String() != gw.String() {
		t.Errorf("ips[0] = %+v, want %s/32 via %s on interface 1", ipc, ip, gw)
	}
	if def.Dst.String() != "0.0.0.0/0" || def.GW.String() != gw.String() {
		t.Errorf("routes[0] = %+v, want default via %s", def, gw)
	}

	host, err := handleAt(t, c.nodeNs(t, node)).LinkByName(hostIf.Name)
	if err != nil || host.Attrs().HardwareAddr.String() != hostIf.Mac {
		t.Errorf("host veth %s on %s: %v (MAC %v, result %s)", hostIf.Name, node, err, host, hostIf.Mac)
	}
	ph := handleAt(t, podNs)
	eth0, err := ph.LinkByName("eth0")
	if err != nil {
		t.Fatalf("pod eth0: %v", err)
	}
	if eth0.Attrs().HardwareAddr.String() != podIf.Mac || eth0.Attrs().OperState != netlink.OperUp {
		t.Errorf("pod eth0: MAC %s state %s, result MAC %s", eth0.Attrs().HardwareAddr, eth0.Attrs().OperState, podIf.Mac)
	}
	if podIf.Mtu != 0 && eth0.Attrs().MTU != podIf.Mtu {
		t.Errorf("pod eth0 MTU %d, result %d", eth0.Attrs().MTU, podIf.Mtu)
	}
	addrs, _ := ph.AddrList(eth0, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != ip+"/32" {
		t.Errorf("pod eth0 addresses %v, want %s/32", addrs, ip)
	}
	routes, _ := ph.RouteList(eth0, netlink.FAMILY_V4)
	found := false
	for _, r := range routes {
		if (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == gw.String() {
			found = true
			if def.MTU != 0 && r.MTU != def.MTU {
				t.Errorf("pod default route MTU %d, result %d", r.MTU, def.MTU)
			}
		}
	}
	if !found {
		t.Errorf("pod routes %v: no default via %s", routes, gw)
	}
}

func k8sArgs(pod string) string {
	return "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=" + pod + ";K8S_POD_INFRA_CONTAINER_ID=ctr-" + pod
}

// TestPluginWithAgents runs the plugin binary, as a runtime would, against real agents
// in a two-node topology: ADD (an address from CNI_ARGS, from runtimeConfig, from the
// pool; results in 1.1.0, 1.0.0 and 0.4.0), pods pinging across nodes, CHECK, the
// agent's refusals, GC, and DEL twice and after the pod's namespace is gone.
func TestPluginWithAgents(t *testing.T) {
	c := upCluster(t)
	ctx := t.Context()
	nsA, nsB, nsC := newPodNs(t, "a"), newPodNs(t, "b"), newPodNs(t, "c")

	resA, rawA := c.add(t, "node1", "ctr-a", nsA, k8sArgs("pod-a")+";IP=10.244.1.50", "1.1.0", "")
	c.checkAttached(t, "node1", nsA, resA, "10.244.1.50")
	if resA.Interfaces[1].Mtu == 0 || resA.Routes[0].MTU == 0 {
		t.Errorf("1.1.0 result without interface and route MTU: %s", rawA)
	}
	again, _ := c.add(t, "node1", "ctr-a", nsA, k8sArgs("pod-a"), "1.1.0", "")
	if again.IPs[0].Address.String() != "10.244.1.50/32" || again.Interfaces[0].Mac != resA.Interfaces[0].Mac {
		t.Errorf("repeated ADD: %+v, want the first ADD's attachment", again)
	}
	resB, _ := c.add(t, "node2", "ctr-b", nsB, k8sArgs("pod-b"), "1.0.0", "")
	c.checkAttached(t, "node2", nsB, resB, "10.244.2.2") // the pool's first address
	resC, _ := c.add(t, "node1", "ctr-c", nsC, "", "0.4.0", `"runtimeConfig":{"ips":["10.244.1.60/24"]}`)
	c.checkAttached(t, "node1", nsC, resC, "10.244.1.60")

	ping(t, nsA, "10.244.2.2")  // across nodes
	ping(t, nsB, "10.244.1.50") // and back
	ping(t, nsC, "10.244.1.50") // same node

	atts, err := c.agents.Client("node1").AttachmentList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(atts) != 2 || atts[0].ContainerID != "ctr-a" || atts[0].Pod != "pod-a" || atts[0].AddressSource != agent.AddressRequested ||
		!strings.HasPrefix(atts[0].Endpoint, "pod-a-") || !strings.HasPrefix(atts[1].Endpoint, "cni-") {
		t.Errorf("node1 attachments = %+v", atts)
	}
	if atts, _ := c.agents.Client("node2").AttachmentList(ctx); len(atts) != 1 || atts[0].AddressSource != agent.AddressPool {
		t.Errorf("node2 attachments = %+v", atts)
	}

	check := func(node, id, netnsPath string, prev []byte) *types.Error {
		_, cerr := c.cni(t, node, cnitest.Call{Command: "CHECK", ContainerID: id, Netns: netnsPath}, "1.1.0", `"prevResult":`+string(prev))
		return cerr
	}
	if cerr := check("node1", "ctr-a", nsA, rawA); cerr != nil {
		t.Errorf("CHECK pod a: %d %s (%s)", cerr.Code, cerr.Msg, cerr.Details)
	}
	if cerr := check("node1", "ctr-x", nsA, rawA); cerr == nil || cerr.Code != types.ErrUnknownContainer {
		t.Errorf("CHECK unknown container: %+v, want code 3", cerr)
	}
	if cerr := check("node2", "ctr-a", nsA, rawA); cerr == nil || cerr.Code != types.ErrUnknownContainer {
		t.Errorf("CHECK on the wrong node: %+v, want code 3", cerr)
	}
	if out, cerr := c.cni(t, "node1", cnitest.Call{Command: "STATUS"}, "1.1.0", ""); cerr != nil {
		t.Errorf("STATUS: %+v %s", cerr, out)
	}

	// The agent refuses addresses that are taken or not its own; nothing is left behind.
	nsD := newPodNs(t, "d")
	for args, want := range map[string]string{
		"IP=10.244.1.50": "requested address 10.244.1.50 is in use by attachment ctr-a/eth0",
		"IP=10.244.2.9":  "outside this node's PodCIDR 10.244.1.0/24",
		"IP=10.244.1.1":  "gateway",
	} {
		_, cerr := c.cni(t, "node1", cnitest.Call{Command: "ADD", ContainerID: "ctr-d", Netns: nsD, Args: args}, "1.0.0", "")
		if cerr == nil || cerr.Code != cni.ErrAgentRefused || !strings.Contains(cerr.Msg, want) {
			t.Errorf("ADD %s: %+v, want code %d with %q", args, cerr, cni.ErrAgentRefused, want)
		}
	}
	if atts, _ := c.agents.Client("node1").AttachmentList(ctx); len(atts) != 2 {
		t.Errorf("refused ADDs left attachments: %+v", atts)
	}
	if l, err := handleAt(t, nsD).LinkByName("eth0"); err == nil {
		t.Errorf("refused ADD left %s in the pod", l.Attrs().Name)
	}

	// CHECK sees a pod whose route went missing.
	if err := handleAt(t, nsA).RouteDel(&netlink.Route{LinkIndex: linkIndex(t, nsA, "eth0"), Gw: net.ParseIP("10.244.1.1")}); err != nil {
		t.Fatal(err)
	}
	if cerr := check("node1", "ctr-a", nsA, rawA); cerr == nil || cerr.Code != cni.ErrCheckFailed || !strings.Contains(cerr.Msg, "no route 0.0.0.0/0 via 10.244.1.1") {
		t.Errorf("CHECK without the default route: %+v, want code %d", cerr, cni.ErrCheckFailed)
	}

	// GC on node2 with no valid attachment detaches pod b; on node1 keeping a and c, nothing.
	gc := func(node, valid string) {
		t.Helper()
		if out, cerr := c.cni(t, node, cnitest.Call{Command: "GC"}, "1.1.0", `"cni.dev/valid-attachments":[`+valid+`]`); cerr != nil {
			t.Fatalf("GC on %s: %+v %s", node, cerr, out)
		}
	}
	gc("node2", "")
	gc("node1", `{"containerID":"ctr-a","ifname":"eth0"},{"containerID":"ctr-c","ifname":"eth0"}`)
	if atts, _ := c.agents.Client("node2").AttachmentList(ctx); len(atts) != 0 {
		t.Errorf("node2 attachments after GC: %+v", atts)
	}
	if _, err := handleAt(t, c.nodeNs(t, "node2")).LinkByName(resB.Interfaces[0].Name); err == nil {
		t.Errorf("host veth %s of pod b survived GC", resB.Interfaces[0].Name)
	}
	if atts, _ := c.agents.Client("node1").AttachmentList(ctx); len(atts) != 2 {
		t.Errorf("node1 attachments after GC keeping both: %+v", atts)
	}

	// DEL twice, DEL of what was never added, DEL after the pod's namespace is gone.
	del := func(id, netnsPath string) {
		t.Helper()
		if out, cerr := c.cni(t, "node1", cnitest.Call{Command: "DEL", ContainerID: id, Netns: netnsPath}, "1.0.0", ""); cerr != nil {
			t.Errorf("DEL %s: %d %s (%s) %s", id, cerr.Code, cerr.Msg, cerr.Details, out)
		}
	}
	del("ctr-a", nsA)
	del("ctr-a", nsA)
	del("ctr-never", nsA)
	if err := nsutil.Delete(filepathBase(nsC)); err != nil {
		t.Fatal(err)
	}
	del("ctr-c", nsC)
	del("ctr-c", "")
	for _, name := range []string{resA.Interfaces[0].Name, resC.Interfaces[0].Name} {
		if _, err := handleAt(t, c.nodeNs(t, "node1")).LinkByName(name); err == nil {
			t.Errorf("host veth %s survived DEL", name)
		}
	}
	atts, _ = c.agents.Client("node1").AttachmentList(ctx)
	eps, _ := c.agents.Client("node1").EndpointList(ctx)
	if len(atts) != 0 || len(eps) != 0 {
		t.Errorf("after DEL: attachments %+v, endpoints %+v", atts, eps)
	}
	if st, err := c.agents.Client("node1").Status(ctx); err != nil || len(st.Problems) != 0 {
		t.Errorf("agent status after DEL: %+v, %v", st.Problems, err)
	}
	// The addresses are free again: a new pod may ask for a's.
	resE, _ := c.add(t, "node1", "ctr-e", newPodNs(t, "e"), "IP=10.244.1.50", "1.0.0", "")
	if !slices.ContainsFunc(resE.IPs, func(i *current.IPConfig) bool { return i.Address.IP.String() == "10.244.1.50" }) {
		t.Errorf("address of a deleted pod not reusable: %+v", resE.IPs)
	}
}

func linkIndex(t *testing.T, nsPath, name string) int {
	l, err := handleAt(t, nsPath).LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func filepathBase(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

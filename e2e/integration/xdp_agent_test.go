// SPDX-License-Identifier: Apache-2.0

package integration

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"podpath/datapath/agent"
	"podpath/datapath/config"
	"podpath/datapath/config/configs"
	"podpath/internal/nicmodel"
	"podpath/internal/testutil"
	"podpath/topology"
	"podpath/topology/agentrun"
	"podpath/topology/catalog"
	"podpath/topology/netns"
	"podpath/topology/topotest"
)

// xdpConfig writes catalog config xdp-snat with bpf-lb-acceleration set to mode into
// dir and returns its path and what the agents make of it.
func xdpConfig(t *testing.T, dir string, mode config.LBAcceleration) (string, *config.Config) {
	t.Helper()
	data, err := configs.Read("xdp-snat")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(data), "\n  bpf-lb-acceleration: native", "\n  bpf-lb-acceleration: "+string(mode), 1)
	if !strings.Contains(text, "bpf-lb-acceleration: "+string(mode)) {
		t.Fatalf("xdp-snat has no bpf-lb-acceleration: native line to change:\n%s", data)
	}
	c, _, err := config.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "cilium-config-xdp-"+string(mode)+".yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p, c
}

// upServices brings l2-services-agent up for cilium-config c (the NIC model with
// acceleration), its segment at mtu (0: the catalog's), until the test ends.
func upServices(t *testing.T, name string, c *config.Config, mtu int) topology.Cluster {
	t.Helper()
	spec, err := catalog.Topology("l2-services-agent")
	if err != nil {
		t.Fatal(err)
	}
	spec.Name = name
	if mtu != 0 {
		for i := range spec.Segments {
			spec.Segments[i].MTU = mtu
		}
	}
	topo, err := netns.Up(context.Background(), spec.WithDatapath(c))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := topo.Down(context.Background()); err != nil {
			t.Errorf("down %s: %v", topo.Name(), err)
		}
	})
	return topo
}

// xdpProgID is the XDP program on member's ifname as the kernel's link attributes say.
func xdpProgID(t *testing.T, topo topology.Cluster, member, ifname string) uint32 {
	t.Helper()
	m, err := topo.Member(member)
	if err != nil {
		t.Fatal(err)
	}
	id, err := nicmodel.XDPProgID(m.NsPath, ifname)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// webNodePort programs NodePort 30080 -> pod2a:8080 on every agent, with an echo
// server behind it.
func webNodePort(t *testing.T, topo topology.Cluster, agents *agentrun.Agents) netip.AddrPort {
	t.Helper()
	pod, err := topo.Pod("pod2a")
	if err != nil {
		t.Fatal(err)
	}
	echoServer(t, topo, "pod2a", 8080)
	if err := agents.ServiceUpsert(t.Context(), agent.Service{Name: "web", Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.0.30"),
		Port: 80, Protocol: "TCP", NodePort: 30080, Backends: []agent.ServiceBackend{{IP: pod.IP, Port: 8080}}}); err != nil {
		t.Fatal(err)
	}
	n1, _ := topo.Node("node1")
	return netip.AddrPortFrom(n1.InternalIP, 30080)
}

// TestXDPBestEffortAndNativeOnJumbo: on a 9000-byte segment a veth refuses bpf_xdp
// (single-buffer) in native mode with ERANGE. best-effort: every agent starts, its
// status names each device left without XDP and why, the device has no XDP program
// (kernel link attributes), and a NodePort request from outside is still answered,
// by the tc path. native: the agent refuses to start, naming the device.
func TestXDPBestEffortAndNativeOnJumbo(t *testing.T) {
	testutil.RequireRoot(t)
	topotest.UseAgent(t)
	ctx := t.Context()
	dir := t.TempDir()
	bePath, be := xdpConfig(t, dir, config.LBAccelerationBestEffort)
	nativePath, _ := xdpConfig(t, dir, config.LBAccelerationNative)
	topo := upServices(t, "xdp-jumbo", be, 9000)
	agents, err := agentrun.Start(ctx, topo, bePath)
	if err != nil {
		t.Fatalf("best-effort: agents do not start: %v", err)
	}
	for _, node := range []string{"node1", "node2"} {
		st, err := agents.Client(node).Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s status XDP acceleration: %s", node, st.XDPAcceleration)
		want := "best-effort, XDP on [], off on [eth0 ("
		if !strings.HasPrefix(st.XDPAcceleration, want) || !strings.Contains(st.XDPAcceleration, "MTU is too large") ||
			!strings.Contains(st.XDPAcceleration, "numerical result out of range") {
			t.Errorf("%s: status XDP acceleration %q: want %q... naming eth0, the MTU and ERANGE", node, st.XDPAcceleration, want)
		}
		if id := xdpProgID(t, topo, node, "eth0"); id != 0 {
			t.Errorf("%s/eth0: XDP program %d attached, the status says none", node, id)
		}
	}
	addr := webNodePort(t, topo, agents)
	for i := range 3 {
		who, err := dial(topo, "ext", addr)
		if err != nil || who != "pod2a" {
			t.Errorf("ext -> %s #%d (tc path, no XDP on node1): answered by %q, %v; want pod2a", addr, i, who, err)
		}
	}

	err = agents.Restart(ctx, "node1", nativePath, false)
	if err == nil {
		t.Fatal("native on a jumbo veth: the agent started")
	}
	t.Logf("native: %v", err)
	for _, want := range []string{"bpf-lb-acceleration native: eth0:", "MTU is too large", "numerical result out of range"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("native: error does not say %q", want)
		}
	}
}

// xdpLinksOf lists the IDs of every XDP bpf link whose program is prog (program IDs
// are global, so this picks the device's links out of every namespace's).
func xdpLinksOf(t *testing.T, prog uint32) []link.ID {
	t.Helper()
	var ids []link.ID
	var it link.Iterator
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err == nil && info.Type == link.XDPType && uint32(info.Program) == prog {
			ids = append(ids, it.ID)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return ids
}

// TestXDPLinkAdoptedAcrossRestart: node1's agent runs with XDP on and is killed (a
// crash: no teardown) and started again. While this happens a watcher reads eth0's
// XDP program from the kernel every millisecond: it never sees none. After the
// restart the device is served by one XDP link, the very one pinned before (same
// link ID; the new agent updated its program in place), and traffic is answered.
// Switching acceleration off (the agent's teardown of XDP) detaches the program and
// removes the pin.
func TestXDPLinkAdoptedAcrossRestart(t *testing.T) {
	testutil.RequireRoot(t)
	topotest.UseAgent(t)
	ctx := t.Context()
	dir := t.TempDir()
	nativePath, native := xdpConfig(t, dir, config.LBAccelerationNative)
	topo := upServices(t, "xdp-restart", native, 0)
	agents, err := agentrun.Start(ctx, topo, nativePath)
	if err != nil {
		t.Fatal(err)
	}
	addr := webNodePort(t, topo, agents)
	if who, err := dial(topo, "ext", addr); err != nil || who != "pod2a" {
		t.Fatalf("before the restart: ext -> %s answered by %q, %v", addr, who, err)
	}
	bpffs, err := topo.MountBPFFS()
	if err != nil {
		t.Fatal(err)
	}
	pin := filepath.Join(bpffs, "node1", "links", "eth0@xdp")
	pinnedID := func() link.ID {
		l, err := link.LoadPinnedLink(pin, nil)
		if err != nil {
			pins, _ := filepath.Glob(filepath.Join(bpffs, "node1", "links", "*"))
			t.Fatalf("pinned XDP link %s: %v; pinned links of node1: %v", pin, err, pins)
		}
		defer l.Close()
		info, err := l.Info()
		if err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	prog1 := xdpProgID(t, topo, "node1", "eth0")
	link1 := pinnedID()
	if prog1 == 0 {
		t.Fatal("node1/eth0: no XDP program with bpf-lb-acceleration native")
	}
	if links := xdpLinksOf(t, prog1); len(links) != 1 || links[0] != link1 {
		t.Fatalf("before: XDP links of program %d: %v, want only the pinned %d", prog1, links, link1)
	}

	// The watcher: every read of eth0's XDP program while the agent is killed and
	// restarted.
	m1, _ := topo.Member("node1")
	var samples, gaps atomic.Int64
	var firstErr error
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			id, err := nicmodel.XDPProgID(m1.NsPath, "eth0")
			if err != nil && firstErr == nil {
				firstErr = err
			}
			samples.Add(1)
			if id == 0 {
				gaps.Add(1)
			}
			time.Sleep(time.Millisecond)
		}
	})
	restartErr := agents.Restart(ctx, "node1", "", true)
	time.Sleep(50 * time.Millisecond) // a detach right after ready would show too
	close(stop)
	wg.Wait()
	if restartErr != nil {
		t.Fatal(restartErr)
	}
	if firstErr != nil {
		t.Fatal(firstErr)
	}
	t.Logf("watcher: %d reads of node1/eth0's XDP program during kill + start, %d without one", samples.Load(), gaps.Load())
	if gaps.Load() != 0 || samples.Load() < 10 {
		t.Errorf("node1/eth0 had no XDP program in %d of %d reads during the restart (want 0 of at least 10)", gaps.Load(), samples.Load())
	}
	prog2 := xdpProgID(t, topo, "node1", "eth0")
	link2 := pinnedID()
	t.Logf("XDP program %d -> %d, pinned link %d -> %d", prog1, prog2, link1, link2)
	if link2 != link1 {
		t.Errorf("pinned XDP link %d after the restart, %d before: want the same link adopted", link2, link1)
	}
	if links := xdpLinksOf(t, prog2); len(links) != 1 || links[0] != link1 {
		t.Errorf("after: XDP links of program %d: %v, want only %d", prog2, links, link1)
	}
	if prog2 != prog1 {
		if links := xdpLinksOf(t, prog1); len(links) != 0 {
			t.Errorf("the old program %d still has XDP links %v", prog1, links)
		}
		if p, err := ebpf.NewProgramFromID(ebpf.ProgramID(prog1)); err == nil {
			p.Close()
			t.Logf("old program %d still loaded (held by a pin or map), not attached", prog1)
		}
	}
	if who, err := dial(topo, "ext", addr); err != nil || who != "pod2a" {
		t.Errorf("after the restart: ext -> %s answered by %q, %v", addr, who, err)
	}

	// Teardown of XDP: the agent with acceleration off removes the pinned link.
	offPath, err := configs.Write(dir, "services-snat")
	if err != nil {
		t.Fatal(err)
	}
	if err := agents.Restart(ctx, "node1", offPath, false); err != nil {
		t.Fatal(err)
	}
	if id := xdpProgID(t, topo, "node1", "eth0"); id != 0 {
		t.Errorf("acceleration off: node1/eth0 still has XDP program %d", id)
	}
	if _, err := os.Stat(pin); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("acceleration off: pin %s still there (%v)", pin, err)
	}
	if links := xdpLinksOf(t, prog2); len(links) != 0 {
		t.Errorf("acceleration off: XDP links %v of program %d remain", links, prog2)
	}
	if who, err := dial(topo, "ext", addr); err != nil || who != "pod2a" {
		t.Errorf("acceleration off: ext -> %s answered by %q, %v", addr, who, err)
	}
}

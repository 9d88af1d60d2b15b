// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"

	"podpath/datapath/agent"
	"podpath/scenarios/capture"
)

// vtepPodCIDR is the address range behind the plain VTEP, registered as a node.
var vtepPodCIDR = netip.MustParsePrefix("10.244.9.0/24")

// vxlanInterop proves the VXLAN encapsulation is the standard one: a plain Linux vxlan
// device (no BPF) decapsulates what podpath sends, and podpath delivers what it sends.
func vxlanInterop(ctx context.Context, r *Run) error {
	t, agents, err := r.UpWithAgents(ctx, "l2-vtep-agent", "vxlan")
	if err != nil {
		return err
	}
	n1, _ := t.Node("node1")
	pod1a, _ := t.Pod("pod1a")
	ifs, _ := t.Interfaces("vtep")
	vtepIP := ifs[0].Address.Addr()
	vtepAddr := vtepPodCIDR.Addr().Next().Next() // .2 ... any host address of the range
	if err := agents.Client("node1").NodeUpsert(ctx, agent.Node{Name: "vtep", IP: vtepIP, PodCIDR: vtepPodCIDR}); err != nil {
		return err
	}
	eps, err := agents.Client("node1").EndpointList(ctx)
	if err != nil {
		return err
	}
	var vni uint32
	for _, ep := range eps {
		if ep.Name == "pod1a" {
			vni = ep.Identity
		}
	}
	// The VNI both ways is pod1a's identity: the plain device has one fixed VNI, and
	// podpath puts the source identity in it. The device takes the MAC pod1a's frames
	// are addressed to (its gateway), as podpath leaves the inner Ethernet as sent.
	for _, cmd := range [][]string{
		{"ip", "link", "add", "vx0", "address", pod1a.HostMAC.String(), "type", "vxlan", "id", strconv.FormatUint(uint64(vni), 10),
			"dstport", "8472", "remote", n1.InternalIP.String(), "local", vtepIP.String(), "dev", "eth0"},
		{"ip", "addr", "add", netip.PrefixFrom(vtepAddr, vtepPodCIDR.Bits()).String(), "dev", "vx0"},
		{"ip", "link", "set", "vx0", "up"},
		{"ip", "route", "add", n1.PodCIDR.String(), "dev", "vx0"},
		{"ip", "neigh", "add", pod1a.IP.String(), "lladdr", pod1a.MAC.String(), "dev", "vx0", "nud", "permanent"},
	} {
		if out, err := t.Exec(ctx, "vtep", cmd...); err != nil {
			return fmt.Errorf("plain VTEP: %w: %s", err, out)
		}
	}
	mv, _ := t.Member("vtep")
	mp, _ := t.Member("pod1a")
	session, err := capture.Start(filepath.Join(r.Artifacts, "vxlan-interop"),
		capture.Point{Member: "vtep", Interface: "vx0", NsPath: mv.NsPath},
		capture.Point{Member: "pod1a", Interface: "eth0", NsPath: mp.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	out1, err1 := t.Exec(ctx, "pod1a", "ping", "-c1", "-W2", vtepAddr.String())
	out2, err2 := t.Exec(ctx, "vtep", "ping", "-c1", "-W2", "-I", vtepAddr.String(), pod1a.IP.String())
	if err := session.Stop(); err != nil {
		return err
	}
	var e1 error
	if len(session.Packets("vtep", "vx0", capture.ICMPEcho(ip(pod1a.IP), ip(vtepAddr)))) == 0 {
		e1 = fmt.Errorf("no echo request from pod1a on the plain device vx0 (ping: %v %s)", err1, out1)
	}
	r.Check("vxlan interop: a plain Linux vxlan device decapsulates what podpath's node1 encapsulates",
		"vtep/vx0 capture: pod1a's echo request after the kernel's decapsulation; ping reply in pod1a", errors.Join(e1, err1))
	var e2 error
	if len(session.Packets("pod1a", "eth0", capture.ICMPEcho(ip(vtepAddr), ip(pod1a.IP)))) == 0 {
		e2 = fmt.Errorf("no echo request from the VTEP reached pod1a (ping: %v %s)", err2, out2)
	}
	r.Check("vxlan interop: podpath's node1 delivers what the plain vxlan device encapsulates",
		"pod1a/eth0 capture: the VTEP's echo request; ping reply on the VTEP", errors.Join(e2, err2))
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"

	"podpath/datapath/agent"
	"podpath/internal/capture"
	"podpath/scenarios"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[vxlanInteropWith, none]{
		Name: "vxlan-interop",
		Summary: "a plain Linux vxlan device (no BPF) in a client decapsulates what a node sends, and the node " +
			"delivers what the device sends: the encapsulation is the standard one",
		Agents: true,
		Run:    runVXLANInterop,
	})
}

type vxlanInteropWith struct {
	VTEP    scenarios.MemberRef `json:"vtep" required:"true" doc:"the client that plays a plain VTEP (its first interface on the underlay)"`
	Pod     scenarios.PodRef    `json:"pod" required:"true" doc:"the pod that exchanges pings with the VTEP"`
	PodCIDR netip.Prefix        `json:"podCIDR" required:"true" doc:"the address range behind the VTEP, registered with the pod's agent as a node"`
}

// runVXLANInterop proves the VXLAN encapsulation is the standard one: a plain Linux
// vxlan device (no BPF) decapsulates what podpath sends, and podpath delivers what it
// sends.
func runVXLANInterop(ctx context.Context, s *scenarios.Stage, w vxlanInteropWith, _ none) error {
	t := s.T
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	vtep, vtepPodCIDR := string(w.VTEP), w.PodCIDR
	pod, err := t.Pod(string(w.Pod))
	if err != nil {
		return err
	}
	node, _ := t.Node(pod.Node)
	ifs, err := t.Interfaces(vtep)
	if err != nil || len(ifs) == 0 {
		return fmt.Errorf("vtep %s: no interface (%v)", vtep, err)
	}
	vtepIP := ifs[0].Address.Addr()
	vtepAddr := vtepPodCIDR.Addr().Next().Next() // .2 ... any host address of the range
	if err := agents.Client(node.Name).NodeUpsert(ctx, agent.Node{Name: vtep, IP: vtepIP, PodCIDR: vtepPodCIDR}); err != nil {
		return err
	}
	eps, err := agents.Client(node.Name).EndpointList(ctx)
	if err != nil {
		return err
	}
	var vni uint32
	for _, ep := range eps {
		if ep.Name == pod.Name {
			vni = ep.Identity
		}
	}
	// The VNI both ways is the pod's identity: the plain device has one fixed VNI, and
	// podpath puts the source identity in it. The device takes the MAC the pod's frames
	// are addressed to (its gateway), as podpath leaves the inner Ethernet as sent.
	for _, cmd := range [][]string{
		{"ip", "link", "add", "vx0", "address", pod.HostMAC.String(), "type", "vxlan", "id", strconv.FormatUint(uint64(vni), 10),
			"dstport", "8472", "remote", node.InternalIP.String(), "local", vtepIP.String(), "dev", ifs[0].Name},
		{"ip", "addr", "add", netip.PrefixFrom(vtepAddr, vtepPodCIDR.Bits()).String(), "dev", "vx0"},
		{"ip", "link", "set", "vx0", "up"},
		{"ip", "route", "add", node.PodCIDR.String(), "dev", "vx0"},
		{"ip", "neigh", "add", pod.IP.String(), "lladdr", pod.MAC.String(), "dev", "vx0", "nud", "permanent"},
	} {
		if out, err := t.Exec(ctx, vtep, cmd...); err != nil {
			return fmt.Errorf("plain VTEP: %w: %s", err, out)
		}
	}
	mv, _ := t.Member(vtep)
	mp, _ := t.Member(pod.Name)
	session, err := capture.Start(filepath.Join(s.Artifacts, "vxlan-interop"),
		capture.Point{Member: vtep, Interface: "vx0", NsPath: mv.NsPath},
		capture.Point{Member: pod.Name, Interface: "eth0", NsPath: mp.NsPath})
	if err != nil {
		return err
	}
	defer session.Stop()
	out1, err1 := t.Exec(ctx, pod.Name, "ping", "-c1", "-W2", vtepAddr.String())
	out2, err2 := t.Exec(ctx, vtep, "ping", "-c1", "-W2", "-I", vtepAddr.String(), pod.IP.String())
	if err := session.Stop(); err != nil {
		return err
	}
	var e1 error
	if len(session.Packets(vtep, "vx0", capture.ICMPEcho(ip(pod.IP), ip(vtepAddr)))) == 0 {
		e1 = fmt.Errorf("no echo request from %s on the plain device vx0 (ping: %v %s)", pod.Name, err1, out1)
	}
	s.Check("vxlan interop: a plain Linux vxlan device decapsulates what podpath's "+node.Name+" encapsulates",
		fmt.Sprintf("%s/vx0 capture: %s's echo request after the kernel's decapsulation; ping reply in %s", vtep, pod.Name, pod.Name), errors.Join(e1, err1))
	var e2 error
	if len(session.Packets(pod.Name, "eth0", capture.ICMPEcho(ip(vtepAddr), ip(pod.IP)))) == 0 {
		e2 = fmt.Errorf("no echo request from the VTEP reached %s (ping: %v %s)", pod.Name, err2, out2)
	}
	s.Check("vxlan interop: podpath's "+node.Name+" delivers what the plain vxlan device encapsulates",
		pod.Name+"/eth0 capture: the VTEP's echo request; ping reply on the VTEP", errors.Join(e2, err2))
	return nil
}

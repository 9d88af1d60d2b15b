// SPDX-License-Identifier: Apache-2.0

// Package hopstest fabricates packet paths as captures would show them (native routing,
// VXLAN), for the tests of flow records and of the reports that draw them.
package hopstest

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/internal/capture"
	"podpath/scenarios/hops"
	"podpath/topology"
)

// frame describes one fabricated Ethernet/IPv4/ICMP echo frame, optionally inside an
// outer Ethernet/IPv4/UDP/VXLAN envelope.
type frame struct {
	src, dst     string // MACs
	ipSrc, ipDst string
	ttl          uint8
	outer        *frame // non-nil: encapsulate in VXLAN with this outer header
	vni          uint32
}

func (f frame) layers(t testing.TB) []gopacket.SerializableLayer {
	t.Helper()
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	inner := []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: mac(f.src), DstMAC: mac(f.dst), EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TTL: f.ttl, Id: 4242, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.ParseIP(f.ipSrc).To4(), DstIP: net.ParseIP(f.ipDst).To4()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload(bytes.Repeat([]byte{0xab}, 56)),
	}
	if f.outer == nil {
		return inner
	}
	o := f.outer
	udp := &layers.UDP{SrcPort: 51234, DstPort: capture.VXLANPortLinux}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: o.ttl, Id: 1, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(o.ipSrc).To4(), DstIP: net.ParseIP(o.ipDst).To4()}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return append([]gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: mac(o.src), DstMAC: mac(o.dst), EthernetType: layers.EthernetTypeIPv4},
		ip, udp, &layers.VXLAN{ValidIDFlag: true, VNI: f.vni},
	}, inner...)
}

func (f frame) packet(t testing.TB, member, iface string, outgoing bool, at time.Time) capture.Packet {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, f.layers(t)...); err != nil {
		t.Fatal(err)
	}
	return capture.Packet{Member: member, Interface: iface, Outgoing: outgoing, Timestamp: at,
		Data: buf.Bytes(), Length: len(buf.Bytes())}
}

const (
	macPod1a = "02:00:0a:f4:01:0a"
	macLxc1a = "02:00:0a:f4:01:fe"
	macN1    = "02:00:c0:a8:00:01"
	macN2    = "02:00:c0:a8:00:02"
	macLxc2a = "02:00:0a:f4:02:fe"
	macPod2a = "02:00:0a:f4:02:0a"
)

var testKinds = map[string]topology.Kind{"pod1a": topology.KindPod, "pod2a": topology.KindPod,
	"node1": topology.KindNode, "node2": topology.KindNode, "underlay": topology.KindSegment}

// Kind is the kind of the fabricated flows' members, for hops.FlowOptions.
func Kind(m string) topology.Kind { return testKinds[m] }

// hop is a hop without a MAC check, as the fabricated frames carry made-up ones.
func hop(member, iface string, out bool, ttl uint8) hops.Hop {
	return hops.Hop{Member: member, Interface: iface, Outgoing: out, TTL: ttl}
}

// NativeFlow fabricates the path of an ICMP echo request pod1a -> pod2a over native
// routing (7 hops), seen up to hop upto, failed with err when not nil; each hop's pcap
// lies under native-routing/cross-node-L2/.
func NativeFlow(t testing.TB, name string, err error, upto int) hops.FlowRecord {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	plan := []hops.Hop{
		hop("pod1a", "eth0", true, 64), hop("node1", "lxc-pod1a", false, 64),
		hop("node1", "eth1", true, 63), hop("underlay", "node1-eth1", false, 63),
		hop("underlay", "node2-eth1", true, 63), hop("node2", "eth1", false, 63),
		hop("pod2a", "eth0", false, 62),
	}
	const a, b = "10.244.1.10", "10.244.2.10"
	frames := []frame{
		{src: macPod1a, dst: macLxc1a, ipSrc: a, ipDst: b, ttl: 64},
		{src: macPod1a, dst: macLxc1a, ipSrc: a, ipDst: b, ttl: 64},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macLxc2a, dst: macPod2a, ipSrc: a, ipDst: b, ttl: 62},
	}
	var seen []capture.Packet
	for i, h := range plan[:upto] {
		seen = append(seen, frames[i].packet(t, h.Member, h.Interface, h.Outgoing, t0.Add(time.Duration(i)*7300*time.Nanosecond)))
	}
	return hops.NewFlowRecord(name, plan, seen, err, hops.FlowOptions{Kind: Kind,
		Pcap: func(h hops.Hop) string {
			return "native-routing/cross-node-L2/" + h.Member + "_" + h.Interface + ".pcap"
		}})
}

// VXLANFlow fabricates the path pod1a -> node1 underlay -> node2 -> pod2a of an ICMP echo
// request over VXLAN (VNI 12345), seen at every hop.
func VXLANFlow(t testing.TB) hops.FlowRecord {
	t0 := time.Date(2025, 1, 1, 12, 0, 1, 0, time.UTC)
	const a, b = "10.244.1.10", "10.244.2.10"
	plan := []hops.Hop{hop("pod1a", "eth0", true, 64), hop("node1", "eth1", true, 63),
		hop("node2", "cilium_vxlan", false, 63), hop("pod2a", "eth0", false, 62)}
	outer := &frame{src: macN1, dst: macN2, ipSrc: "192.168.0.1", ipDst: "192.168.0.2", ttl: 64}
	frames := []frame{
		{src: macPod1a, dst: macLxc1a, ipSrc: a, ipDst: b, ttl: 64},
		{src: macLxc1a, dst: macLxc2a, ipSrc: a, ipDst: b, ttl: 63, outer: outer, vni: 12345},
		{src: macLxc1a, dst: macLxc2a, ipSrc: a, ipDst: b, ttl: 63},
		{src: macLxc2a, dst: macPod2a, ipSrc: a, ipDst: b, ttl: 62},
	}
	var seen []capture.Packet
	for i, h := range plan {
		seen = append(seen, frames[i].packet(t, h.Member, h.Interface, h.Outgoing, t0.Add(time.Duration(i)*11*time.Microsecond)))
	}
	return hops.NewFlowRecord("vxlan: ICMP echo request pod1a -> pod2a", plan, seen, nil, hops.FlowOptions{Kind: Kind})
}

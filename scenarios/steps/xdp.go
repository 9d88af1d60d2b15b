// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/trace"
	"podpath/internal/capture"
	"podpath/internal/nicmodel"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[xdpWith, xdpExpect]{
		Name: "xdp-nodeport",
		Summary: "TCP and UDP exchanges from a client to a node's NodePort (backends on another node) with " +
			"bpf-lb-acceleration: the requests are served at XDP (trace point xdp, no from-netdev translation), " +
			"an AF_PACKET capture on the entry node's NIC sees none of them while the backend's node does, and what " +
			"arrives there is what the tc path sends (MACs, TTL - 1, ID, payload, valid checksums); optionally a DF " +
			"datagram too big is answered with frag-needed from XDP",
		Agents: true,
		Run:    runXDPNodePort,
	})
}

type xdpWith struct {
	Client      scenarios.MemberRef    `json:"client" required:"true" doc:"the client outside the cluster"`
	Node        scenarios.NodeRef      `json:"node" required:"true" doc:"the entry node whose NodePort the client dials (XDP on its NIC)"`
	BackendNode scenarios.NodeRef      `json:"backendNode" required:"true" doc:"the node of every backend"`
	Services    []scenarios.ServiceRef `json:"services" required:"true" doc:"NodePort services of the stage with echo servers, backends on backendNode only"`
}

type xdpExpect struct {
	// FragNeeded is the MTU a 1500-byte DF datagram is answered with at XDP (DSR
	// modes: the option makes it too big); 0: not sent.
	FragNeeded int `json:"fragNeeded" range:"0..65535" doc:"the next-hop MTU of the frag-needed answer XDP gives a 1500-byte DF datagram (0: not checked)"`
	// Geneve: requests reach the backend's node in Geneve (tunnel mode).
	Geneve bool `json:"geneve" doc:"requests reach the backend's node encapsulated in Geneve"`
}

func (w *xdpWith) Validate(e strictyaml.FieldErrors) {
	if w.Node == w.BackendNode {
		e.Add("backendNode", "%q is the entry node: want another", w.BackendNode)
	}
	for i, name := range w.Services {
		svc := scenarios.DecodingStage(e).Service(name)
		if svc != nil && svc.NodePort == 0 {
			e.Add(fmt.Sprintf("services[%d]", i), "service %s: want a nodePort", name)
		}
	}
}

func runXDPNodePort(ctx context.Context, s *scenarios.Stage, w xdpWith, e xdpExpect) error {
	t := s.T
	n1, err := t.Node(string(w.Node))
	if err != nil {
		return err
	}
	n2, err := t.Node(string(w.BackendNode))
	if err != nil {
		return err
	}
	client := string(w.Client)
	ifs, err := t.Interfaces(client)
	if err != nil || len(ifs) == 0 {
		return fmt.Errorf("client %s: no interface (%v)", client, err)
	}
	nic1, nic2 := internalIface(n1), internalIface(n2)
	// The wire is NIC-like (NAPI on nic1's bridge port, complete checksums from every
	// member of the segment) since the topology came up: the stage's config turns
	// acceleration on (topology.Spec.WithDatapath), so nothing is changed here.
	// Checked, not assumed: without NAPI on the far end XDP_TX frames vanish.
	seg, err := t.Member(nic1.Segment)
	if err != nil {
		return err
	}
	if id, err := nicmodel.XDPProgID(seg.NsPath, nic1.Peer); err != nil || id == 0 {
		return fmt.Errorf("%s's NIC %s: its bridge port %s in segment %s has no XDP program (err %v): the topology lacks the NIC model (topology.Spec.WithDatapath)", n1.Name, nic1.Name, nic1.Peer, nic1.Segment, err)
	}
	mc, _ := t.Member(client)
	m1, _ := t.Member(n1.Name)
	m2, _ := t.Member(n2.Name)

	var services []netip.AddrPort
	backends := map[netip.AddrPort]bool{}
	for _, name := range w.Services {
		svc := s.Services[string(name)]
		services = append(services, netip.AddrPortFrom(n1.InternalIP, svc.NodePort))
		for _, b := range svc.Backends {
			backends[netip.AddrPortFrom(b.IP, b.Port)] = true
		}
	}
	protoOf := map[string]probe.Protocol{"TCP": probe.TCP, "UDP": probe.UDP}
	exchange := func() error {
		var errs []error
		for _, name := range w.Services {
			svc := s.Services[string(name)]
			for range 4 {
				errs = append(errs, probe.ExchangeAddr(ctx, t, client, protoOf[svc.Protocol], netip.AddrPortFrom(n1.InternalIP, svc.NodePort)))
			}
		}
		return errors.Join(errs...)
	}
	// Warm-up: neighbours on every side are known, as on a running cluster; a FIB
	// lookup that finds none hands the packet to tc (redirect_neigh), by design.
	_ = exchange()

	traces, err := s.OpenTraces(t, n1.Name)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Collect(); err != nil { // the warm-up's records are not this check's
		return err
	}
	traces.Reset()
	sess, err := capture.Start(filepath.Join(s.Artifacts, "xdp"),
		capture.Point{Member: client, Interface: ifs[0].Name, NsPath: mc.NsPath},
		capture.Point{Member: n1.Name, Interface: nic1.Name, NsPath: m1.NsPath},
		capture.Point{Member: n2.Name, Interface: nic2.Name, NsPath: m2.NsPath})
	if err != nil {
		return err
	}
	defer sess.Stop()
	s.Progress("traffic: 4 exchanges per service %s -> %v", client, services)
	s.Check(fmt.Sprintf("%s -> NodePorts %v on %s answered by backends on %s (4 exchanges each)", client, services, n1.Name, n2.Name),
		"the echo "+client+"'s socket read back", exchange())
	learned, dfErr := 0, error(nil)
	if e.FragNeeded != 0 {
		dfErr = errors.New("no UDP service to send the DF datagram to")
		for _, name := range w.Services {
			if svc := s.Services[string(name)]; svc.Protocol == "UDP" {
				learned, dfErr = probe.DFDatagram(ctx, t, client, netip.AddrPortFrom(n1.InternalIP, svc.NodePort), 1500)
				break
			}
		}
	}
	if err := sess.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}

	isService := func(a netip.AddrPort) bool {
		for _, svc := range services {
			if a == svc {
				return true
			}
		}
		return false
	}
	clientIP, _ := netip.AddrFromSlice(ifs[0].Address.Addr().AsSlice())
	names := traces.Names()
	xdpRecs := traces.Find(n1.Name, func(r trace.Record) bool {
		return names.ObsPoint(r.ObsPoint) == "OBS_XDP" && isService(r.LB.OrigDst)
	})
	tcRecs := traces.Find(n1.Name, func(r trace.Record) bool {
		return names.ObsPoint(r.ObsPoint) == "OBS_FROM_NETDEV" && isService(r.LB.OrigDst)
	})
	// The requests the client sent to the services (its capture, outgoing).
	var requests []capture.Packet
	for _, p := range sess.Packets(client, ifs[0].Name, nil) {
		// The DF datagram XDP answers with frag-needed is not forwarded.
		if ip, l4 := ipv4Ports(p.Decode()); ip != nil && p.Outgoing && isService(l4.dst(ip)) &&
			!(e.FragNeeded != 0 && ip.Length == 1500) {
			requests = append(requests, p)
		}
	}
	var xErr error
	switch {
	case len(requests) == 0:
		xErr = errors.New("the client sent no request to the services")
	case len(xdpRecs) < len(requests):
		xErr = fmt.Errorf("%d xdp records translate a request, the client sent %d; records on %s:\n%s", len(xdpRecs), len(requests), n1.Name, traces.Dump(n1.Name))
	}
	s.Check(fmt.Sprintf("every request (%d) is translated at XDP on %s (trace point xdp)", len(requests), n1.Name),
		n1.Name+" trace ring buffer: OBS_XDP records whose original destination is a service, against the client's capture", xErr)
	var tcErr error
	if len(tcRecs) > 0 {
		tcErr = fmt.Errorf("%d from-netdev records translate requests, e.g. %s", len(tcRecs), names.Format(tcRecs[0]))
	}
	s.Check("no request is translated by from-netdev (tc)", n1.Name+" trace ring buffer: OBS_FROM_NETDEV records with a service as original destination", tcErr)

	// AF_PACKET on the entry node's NIC: XDP runs before the taps, and XDP_TX never
	// passes the transmit taps: neither the request nor the forwarded packet shows.
	var seen []capture.Packet
	for _, p := range sess.Packets(n1.Name, nic1.Name, nil) {
		ip, l4 := ipv4Ports(p.Decode())
		if ip == nil {
			continue
		}
		if (!p.Outgoing && isService(l4.dst(ip))) || (p.Outgoing && backends[l4.dst(ip)]) {
			seen = append(seen, p)
		}
	}
	var capErr error
	if len(seen) > 0 {
		capErr = fmt.Errorf("%d request packets seen, e.g. %s (pcap %s)", len(seen), seen[0].Summary(), sess.PcapPath(n1.Name, nic1.Name))
	}
	s.Check(fmt.Sprintf("an AF_PACKET capture on %s/%s sees none of the requests, in or forwarded", n1.Name, nic1.Name),
		n1.Name+"/"+nic1.Name+" capture: packets to a service or to a backend", capErr)

	// What reaches the backend's node: the request as the tc path sends it.
	var arrived []gopacket.Packet
	for _, p := range sess.Packets(n2.Name, nic2.Name, nil) {
		if p.Outgoing {
			continue
		}
		pkt := p.Decode()
		if e.Geneve {
			if g := pkt.Layer(layers.LayerTypeGeneve); g != nil {
				pkt = gopacket.NewPacket(g.LayerPayload(), layers.LayerTypeEthernet, gopacket.Default)
			} else {
				continue
			}
		}
		if ip, l4 := ipv4Ports(pkt); ip != nil && backends[l4.dst(ip)] {
			arrived = append(arrived, pkt)
		}
	}
	s.Check(fmt.Sprintf("%s/%s receives the forwarded requests (%d of %d)", n2.Name, nic2.Name, len(arrived), len(requests)),
		n2.Name+"/"+nic2.Name+" capture: incoming packets to a backend", atLeast(len(arrived), len(requests)))
	s.Check("forwarded requests are what the tc path sends: MACs "+n1.Name+" -> "+n2.Name+", TTL one less than sent, same IPv4 ID and payload, valid IPv4 and TCP/UDP checksums",
		n2.Name+"/"+nic2.Name+" capture against "+client+"'s, matched by IPv4 ID and client port",
		sameAsTC(requests, arrived, nic1.MAC, nic2.MAC, clientIP, e.Geneve))

	if e.FragNeeded != 0 {
		frag := traces.Find(n1.Name, func(r trace.Record) bool {
			return names.ObsPoint(r.ObsPoint) == "OBS_XDP" && r.LB.Action == fragNeededAction(names)
		})
		var fErr error
		if len(frag) == 0 {
			fErr = fmt.Errorf("no OBS_XDP frag-needed record on %s:\n%s", n1.Name, traces.Dump(n1.Name))
		}
		s.Check(fmt.Sprintf("a 1500-byte DF datagram is answered with frag-needed at XDP and the client learns %d", e.FragNeeded),
			n1.Name+" trace ring buffer (OBS_XDP, TRACE_LB_FRAG_NEEDED) and IP_MTU of "+client+"'s socket",
			errors.Join(fErr, dfErr, expectInt("learned path MTU", learned, e.FragNeeded)))
	}
	return nil
}

func fragNeededAction(n *trace.Names) uint8 {
	for a := range 256 {
		if n.LBAction(uint8(a)) == "TRACE_LB_FRAG_NEEDED" {
			return uint8(a)
		}
	}
	return 0xff
}

func atLeast(got, want int) error {
	if got < want {
		return fmt.Errorf("%d, want at least %d", got, want)
	}
	return nil
}

type l4Ports struct{ sport, dport uint16 }

func (l l4Ports) dst(ip *layers.IPv4) netip.AddrPort {
	a, _ := netip.AddrFromSlice(ip.DstIP.To4())
	return netip.AddrPortFrom(a, l.dport)
}

// ipv4Ports is the packet's IPv4 header and TCP/UDP ports (nil: neither).
func ipv4Ports(pkt gopacket.Packet) (*layers.IPv4, l4Ports) {
	ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		return nil, l4Ports{}
	}
	switch l := pkt.TransportLayer().(type) {
	case *layers.TCP:
		return ip, l4Ports{uint16(l.SrcPort), uint16(l.DstPort)}
	case *layers.UDP:
		return ip, l4Ports{uint16(l.SrcPort), uint16(l.DstPort)}
	}
	return nil, l4Ports{}
}

// sameAsTC matches each forwarded request with the client's packet (IPv4 ID and, for
// DSR, the client's port; SNAT changes the port, so the ID and payload) and checks
// what the tc path's fib_forward() makes of it: the entry node's MAC to the backend
// node's (Geneve: the inner frame keeps the client's), TTL - 1, same ID and payload,
// and checksums that verify. The byte-for-byte equality with from_netdev's output
// for the same input is the XDP fixtures' (datapath/progtest xdp_nodeport_test.go).
func sameAsTC(requests []capture.Packet, arrived []gopacket.Packet, n1MAC, n2MAC net.HardwareAddr, client netip.Addr, geneve bool) error {
	type key struct {
		proto layers.IPProtocol
		id    uint16
	}
	byID := map[key]gopacket.Packet{}
	for _, r := range requests {
		if ip, _ := ipv4Ports(r.Decode()); ip != nil {
			byID[key{ip.Protocol, ip.Id}] = r.Decode()
		}
	}
	matched := 0
	for _, pkt := range arrived {
		ip, _ := ipv4Ports(pkt)
		sentPkt, ok := byID[key{ip.Protocol, ip.Id}]
		if !ok || string(sentPkt.TransportLayer().LayerPayload()) != string(pkt.TransportLayer().LayerPayload()) {
			continue
		}
		sent, _ := ipv4Ports(sentPkt)
		matched++
		eth, _ := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		if !geneve && (eth == nil || eth.SrcMAC.String() != n1MAC.String() || eth.DstMAC.String() != n2MAC.String()) {
			return fmt.Errorf("ID %#x: MACs %s -> %s, want %s -> %s", ip.Id, eth.SrcMAC, eth.DstMAC, n1MAC, n2MAC)
		}
		if ip.TTL != sent.TTL-1 {
			return fmt.Errorf("ID %#x: TTL %d, sent with %d: want one less", ip.Id, ip.TTL, sent.TTL)
		}
		if err := checksumsValid(ip); err != nil {
			return fmt.Errorf("ID %#x: %w", ip.Id, err)
		}
	}
	if matched == 0 {
		return fmt.Errorf("no forwarded request matched a request of the client (%d forwarded, %d sent)", len(arrived), len(requests))
	}
	return nil
}

// checksumsValid recomputes the IPv4 header checksum and the TCP/UDP checksum (UDP 0:
// none) of ip's packet.
func checksumsValid(ip *layers.IPv4) error {
	hdr := ip.Contents
	if csumFold(hdr) != 0 {
		return fmt.Errorf("IPv4 header checksum %#04x does not verify", ip.Checksum)
	}
	seg := ip.LayerPayload()
	if len(seg) < 8 {
		return nil
	}
	if ip.Protocol == layers.IPProtocolUDP && seg[6] == 0 && seg[7] == 0 {
		return nil
	}
	pseudo := append(append(append([]byte{}, ip.SrcIP.To4()...), ip.DstIP.To4()...), 0, byte(ip.Protocol), byte(len(seg)>>8), byte(len(seg)))
	if csumFold(append(pseudo, seg...)) != 0 {
		return fmt.Errorf("%s checksum does not verify", ip.Protocol)
	}
	return nil
}

func csumFold(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

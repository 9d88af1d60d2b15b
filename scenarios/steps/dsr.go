// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/hops"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[dsrWith, dsrExpect]{
		Name: "dsr-nodeport",
		Summary: "TCP and UDP exchanges, a 1 MiB TCP echo and DF datagrams from a client to a node's NodePort whose " +
			"backends are on another node: the requests reach that node with the DSR option (IPv4 or Geneve) on the " +
			"first packet only, replies go from it straight to the client with the service as source (or, for " +
			"SNATed UDP, back through the entry node), and a DF datagram the option makes too big gets frag-needed",
		Agents: true,
		With:   dsrWith{Dispatch: "opt"},
		Expect: dsrExpect{UDP: "dsr"},
		Run:    runDSRNodePort,
	})
}

type dsrWith struct {
	Client      scenarios.MemberRef    `json:"client" required:"true" doc:"the client outside the cluster"`
	Node        scenarios.NodeRef      `json:"node" required:"true" doc:"the node whose NodePort the client dials: it balances the flows"`
	BackendNode scenarios.NodeRef      `json:"backendNode" required:"true" doc:"the node of every backend: where the option is checked and the replies leave"`
	Services    []scenarios.ServiceRef `json:"services" required:"true" doc:"a TCP and a UDP NodePort service of the stage on the same nodePort, echo servers, backends on backendNode only"`
	Dispatch    string                 `json:"dispatch" oneOf:"opt,geneve" doc:"where the service travels: an IPv4 option, or a Geneve option (tunnel mode)"`
}

type dsrExpect struct {
	UDP string `json:"udp" oneOf:"dsr,snat" doc:"what UDP flows get: dsr, or snat (hybrid mode)"`
	// UDPPathMTU is what the client learns from the frag-needed answer to a 1500-byte
	// DF datagram carrying the option: 1500 - 8, or the tunnel MTU less 12.
	UDPPathMTU int `json:"udpPathMTU" range:"0..65535" doc:"the path MTU a 1500-byte DF datagram with the option teaches the client (0: not checked)"`
}

func (w *dsrWith) Validate(e strictyaml.FieldErrors) {
	if w.Node == w.BackendNode {
		e.Add("backendNode", "%q is the entry node: want another", w.BackendNode)
	}
	protos := map[string]bool{}
	for i, name := range w.Services {
		svc := scenarios.DecodingStage(e).Service(name)
		if svc == nil {
			continue
		}
		protos[svc.Protocol] = true
		if svc.NodePort == 0 || (svc.Server != "" && svc.Server != "echo") {
			e.Add(fmt.Sprintf("services[%d]", i), "service %s: want a nodePort and echo servers", name)
		}
	}
	if len(w.Services) != 2 || !protos["TCP"] || !protos["UDP"] {
		e.Add("services", "want two services: one TCP, one UDP")
	}
}

// dsrWire is what the captures of one DSR run show, with the names of where they
// were taken for the checks' "looked at".
type dsrWire struct {
	s                  *capture.Session
	client, node, back string // member names
	ext, n1, n2        string // interface names
	extIP, n1IP        net.IP
	n1MAC, n2MAC       net.HardwareAddr
	service            netip.AddrPort
	geneve             bool
	backends           []netip.Addr
	backendPort        map[uint16]bool
	icmpMTUs           []int // frag-needed MTUs the client received from the service address
	optSYN, optLater   []capture.Packet
	plainSYN           []capture.Packet
	toBackendSrc       map[layers.IPProtocol][]net.IP
	replies            map[layers.IPProtocol][]capture.Packet // at the client, from the service port
	n1Replies, n2Reply map[layers.IPProtocol]int              // replies leaving node / backendNode towards the client
}

func runDSRNodePort(ctx context.Context, s *scenarios.Stage, w dsrWith, e dsrExpect) error {
	t := s.T
	n1, err := t.Node(string(w.Node))
	if err != nil {
		return err
	}
	n2, err := t.Node(string(w.BackendNode))
	if err != nil {
		return err
	}
	wire := &dsrWire{client: string(w.Client), node: n1.Name, back: n2.Name, geneve: w.Dispatch == "geneve",
		backendPort: map[uint16]bool{}}
	var port uint16
	for _, name := range w.Services {
		svc := s.Services[string(name)]
		port = svc.NodePort
		for _, b := range svc.Backends {
			wire.backends = append(wire.backends, b.IP)
			wire.backendPort[b.Port] = true
		}
	}
	for _, b := range wire.backends {
		if p, ok := podByIP(t, b); !ok || p.Node != n2.Name {
			return fmt.Errorf("backend %s is not a pod of %s", b, n2.Name)
		}
	}
	service := netip.AddrPortFrom(n1.InternalIP, port)
	ifs, err := t.Interfaces(wire.client)
	if err != nil || len(ifs) == 0 {
		return fmt.Errorf("client %s: no interface (%v)", wire.client, err)
	}
	mc, _ := t.Member(wire.client)
	m1, _ := t.Member(n1.Name)
	m2, _ := t.Member(n2.Name)
	wire.ext, wire.n1, wire.n2 = ifs[0].Name, internalIface(n1).Name, internalIface(n2).Name
	wire.extIP, wire.n1IP = ifs[0].Address.Addr().AsSlice(), n1.InternalIP.AsSlice()
	wire.n1MAC, wire.n2MAC, wire.service = internalIface(n1).MAC, internalIface(n2).MAC, service
	wire.s, err = capture.Start(filepath.Join(s.Artifacts, "dsr"),
		capture.Point{Member: wire.client, Interface: wire.ext, NsPath: mc.NsPath},
		capture.Point{Member: n1.Name, Interface: wire.n1, NsPath: m1.NsPath},
		capture.Point{Member: n2.Name, Interface: wire.n2, NsPath: m2.NsPath})
	if err != nil {
		return err
	}
	defer wire.s.Stop()

	s.Progress("traffic: 4 TCP and 4 UDP exchanges %s -> %s, a 1 MiB TCP echo, DF datagrams of 1500 bytes", wire.client, service)
	for _, p := range []probe.Protocol{probe.TCP, probe.UDP} {
		var errs []error
		for range 4 {
			errs = append(errs, probe.ExchangeAddr(ctx, t, wire.client, p, service))
		}
		s.Check(fmt.Sprintf("%s %s -> NodePort %s answered by a backend on %s (4 exchanges)", p, wire.client, service, n2.Name),
			"the echo "+wire.client+"'s socket read back", errors.Join(errs...))
	}
	s.Check("TCP: a 1 MiB echo through the NodePort completes, full-size segments included",
		"bytes "+wire.client+"'s socket read back, compared with what it sent", probe.TCPEchoBulk(ctx, t, wire.client, service, 1<<20))
	var learned int
	var dfErr error
	if e.UDPPathMTU != 0 {
		learned, dfErr = probe.DFDatagram(ctx, t, wire.client, service, 1500)
	}
	if err := wire.s.Stop(); err != nil {
		return err
	}
	wire.collect()

	if e.UDPPathMTU != 0 {
		s.Check(fmt.Sprintf("MTU: a 1500-byte DF datagram that carries the option is answered with ICMP frag-needed %d", e.UDPPathMTU),
			wire.where(wire.client, wire.ext)+" capture: ICMP type 3 code 4 from "+service.Addr().String()+" and its next-hop MTU",
			wire.expectFragNeeded(e.UDPPathMTU))
		s.Check(fmt.Sprintf("MTU: the client's socket learns path MTU %d and a datagram of that size is answered", e.UDPPathMTU),
			"IP_MTU of "+wire.client+"'s connected UDP socket, then the echo of a DF datagram of that size",
			errors.Join(dfErr, expectInt("learned path MTU", learned, e.UDPPathMTU)))
	}
	wire.checkRequests(s.Run, e.UDP == "snat")
	wire.checkReplies(s.Run, e.UDP == "snat")
	wire.recordFlow(s.Run)
	return checkDSRFields(ctx, s, wire, e.UDPPathMTU != 0, e.UDP == "snat")
}

// recordFlow puts the first TCP handshake's path into the report: the SYN from the
// client through the balancing node (DNAT, the option added) to the backend's node,
// and the SYN-ACK from there straight back to the client. Packets are matched by the
// client's port and the sequence numbers, which no translation changes.
func (w *dsrWire) recordFlow(r *scenarios.Run) {
	if len(w.optSYN) == 0 {
		return
	}
	first := w.optSYN[0].Decode().Layer(layers.LayerTypeTCP).(*layers.TCP)
	match := func(member, iface string, outgoing, synAck bool) (capture.Packet, bool) {
		for _, p := range w.s.Packets(member, iface, nil) {
			tcp, ok := p.Decode().Layer(layers.LayerTypeTCP).(*layers.TCP)
			if !ok || p.Outgoing != outgoing || !tcp.SYN || tcp.ACK != synAck {
				continue
			}
			if (!synAck && tcp.SrcPort == first.SrcPort && tcp.Seq == first.Seq) ||
				(synAck && tcp.DstPort == first.SrcPort && tcp.Ack == first.Seq+1) {
				return p, true
			}
		}
		return capture.Packet{}, false
	}
	plan := []hops.Hop{
		{Member: w.client, Interface: w.ext, Outgoing: true, TTL: hops.DefaultTTL},
		{Member: w.node, Interface: w.n1, Outgoing: false, TTL: hops.DefaultTTL},
		{Member: w.node, Interface: w.n1, Outgoing: true, TTL: hops.DefaultTTL - 1, MAC: w.n1MAC},
		{Member: w.back, Interface: w.n2, Outgoing: false, TTL: hops.DefaultTTL - 1},
		{Member: w.back, Interface: w.n2, Outgoing: true, TTL: hops.DefaultTTL - 1, MAC: w.n2MAC},
		{Member: w.client, Interface: w.ext, Outgoing: false, TTL: hops.DefaultTTL - 1},
	}
	var seen []capture.Packet
	var err error
	for i, h := range plan {
		p, ok := match(h.Member, h.Interface, h.Outgoing, i >= 4)
		if !ok {
			err = fmt.Errorf("hop %d (%s/%s): the handshake packet was not there", i+1, h.Member, h.Interface)
			break
		}
		seen = append(seen, p)
	}
	r.RecordFlow(fmt.Sprintf("TCP SYN %s -> %s, DSR to %s, and the SYN-ACK straight back", w.client, w.service, w.back),
		w.s, plan, seen, err)
}

// podByIP finds the topology's pod with address a.
func podByIP(t topology.Cluster, a netip.Addr) (topology.Pod, bool) {
	for _, p := range t.Pods() {
		if p.IP == a {
			return p, true
		}
	}
	return topology.Pod{}, false
}

// collect sorts the captured packets into what the checks look at.
func (w *dsrWire) collect() {
	w.toBackendSrc = map[layers.IPProtocol][]net.IP{}
	w.replies = map[layers.IPProtocol][]capture.Packet{}
	w.n1Replies = map[layers.IPProtocol]int{}
	w.n2Reply = map[layers.IPProtocol]int{}
	for _, p := range w.s.Packets(w.back, w.n2, nil) {
		if p.Outgoing {
			if proto, ok := w.serviceReply(p.Decode(), false); ok {
				w.n2Reply[proto]++
			}
			continue
		}
		ip, l4 := w.toBackend(p.Decode())
		if ip == nil {
			continue
		}
		w.toBackendSrc[ip.Protocol] = append(w.toBackendSrc[ip.Protocol], ip.SrcIP)
		if ip.Protocol != layers.IPProtocolTCP {
			continue
		}
		syn := l4.(*layers.TCP).SYN
		switch {
		case syn && w.hasOption(p.Decode(), ip):
			w.optSYN = append(w.optSYN, p)
		case syn:
			w.plainSYN = append(w.plainSYN, p)
		case w.hasOption(p.Decode(), ip):
			w.optLater = append(w.optLater, p)
		}
	}
	for _, p := range w.s.Packets(w.node, w.n1, nil) {
		if proto, ok := w.serviceReply(p.Decode(), false); ok && p.Outgoing {
			w.n1Replies[proto]++
		}
	}
	for _, p := range w.s.Packets(w.client, w.ext, nil) {
		if p.Outgoing {
			continue
		}
		if proto, ok := w.serviceReply(p.Decode(), true); ok {
			w.replies[proto] = append(w.replies[proto], p)
		}
		if icmp, ok := p.Decode().Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok &&
			icmp.TypeCode == layers.CreateICMPv4TypeCode(3, 4) {
			ip := p.Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			if ip.SrcIP.Equal(w.n1IP) {
				w.icmpMTUs = append(w.icmpMTUs, int(icmp.Seq))
			}
		}
	}
}

// toBackend returns the (inner, for Geneve) IPv4 header and L4 layer of a request to
// a backend pod on the backend port, nil otherwise.
func (w *dsrWire) toBackend(pkt gopacket.Packet) (*layers.IPv4, gopacket.Layer) {
	var found *layers.IPv4
	var l4 gopacket.Layer
	for _, l := range pkt.Layers() {
		switch h := l.(type) {
		case *layers.IPv4:
			found = h
		case *layers.TCP:
			if w.backendPort[uint16(h.DstPort)] {
				l4 = h
			}
		case *layers.UDP:
			if w.backendPort[uint16(h.DstPort)] {
				l4 = h
			}
		}
	}
	if found == nil || l4 == nil {
		return nil, nil
	}
	for _, b := range w.backends {
		if found.DstIP.Equal(b.AsSlice()) {
			return found, l4
		}
	}
	return nil, nil
}

// serviceReply reports whether pkt is a reply of the service to ext: the service
// address and port as source, ext's address as destination, not encapsulated.
func (w *dsrWire) serviceReply(pkt gopacket.Packet, atExt bool) (layers.IPProtocol, bool) {
	ip, ok := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if !ok || !ip.SrcIP.Equal(w.n1IP) || !ip.DstIP.Equal(w.extIP) {
		return 0, false
	}
	switch h := pkt.TransportLayer().(type) {
	case *layers.TCP:
		return layers.IPProtocolTCP, uint16(h.SrcPort) == w.service.Port()
	case *layers.UDP:
		return layers.IPProtocolUDP, uint16(h.SrcPort) == w.service.Port()
	}
	return 0, false
}

// hasOption reports whether the request carries the DSR option naming the service:
// an IPv4 option 0x9a, or Cilium's Geneve option (class 0x014B, type 1) around it.
func (w *dsrWire) hasOption(pkt gopacket.Packet, inner *layers.IPv4) bool {
	addr := w.service.Addr().AsSlice()
	port := []byte{byte(w.service.Port() >> 8), byte(w.service.Port())}
	if w.geneve {
		g, ok := pkt.Layer(layers.LayerTypeGeneve).(*layers.Geneve)
		if !ok {
			return false
		}
		for _, o := range g.Options {
			if o.Class == 0x014B && o.Type == 1 && len(o.Data) >= 6 && bytes.Equal(o.Data[:4], addr) && bytes.Equal(o.Data[4:6], port) {
				return true
			}
		}
		return false
	}
	for _, o := range inner.Options {
		if o.OptionType == 0x9a && o.OptionLength == 8 && len(o.OptionData) == 6 &&
			bytes.Equal(o.OptionData[:2], port) && bytes.Equal(o.OptionData[2:], addr) {
			return true
		}
	}
	return false
}

func (w *dsrWire) where(member, iface string) string { return member + "/" + iface }

func (w *dsrWire) checkRequests(r *scenarios.Run, udpSNAT bool) {
	at := w.where(w.back, w.n2) + " capture (incoming)"
	how := "IPv4 option 0x9a"
	if w.geneve {
		how = "Geneve option class 0x014B type 1, inner IPv4"
	}
	var synErr error
	switch {
	case len(w.optSYN) == 0:
		synErr = fmt.Errorf("no SYN with the DSR option naming %s reached %s (%d SYNs without it)", w.service, w.back, len(w.plainSYN))
	case len(w.plainSYN) > 0:
		synErr = fmt.Errorf("%d SYNs without the option, e.g. %s", len(w.plainSYN), w.plainSYN[0].Summary())
	}
	r.Check(fmt.Sprintf("every TCP SYN reaches %s carrying the DSR option with the service %s (%d SYNs)", w.back, w.service, len(w.optSYN)),
		at+": "+how, synErr)
	var laterErr error
	if len(w.optLater) > 0 {
		laterErr = fmt.Errorf("%d TCP packets after the SYN carry the option, e.g. %s", len(w.optLater), w.optLater[0].Summary())
	}
	r.Check("only the first packet of a TCP flow carries the option", at+": "+how+" on non-SYN TCP packets to the backend port", laterErr)
	if w.geneve {
		var encErr error
		for _, p := range w.s.Packets(w.back, w.n2, nil) {
			if ip, _ := w.toBackend(p.Decode()); ip != nil && !p.Outgoing && p.Decode().Layer(layers.LayerTypeGeneve) == nil {
				encErr = fmt.Errorf("a request reached %s outside Geneve: %s", w.back, p.Summary())
				break
			}
		}
		r.Check("requests reach "+w.back+" encapsulated in Geneve (UDP 6081)", at+": outer UDP/Geneve around every request", encErr)
	}
	for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP} {
		want, who := w.extIP, "the client's address (no SNAT)"
		if proto == layers.IPProtocolUDP && udpSNAT {
			want, who = w.n1IP, w.node+"'s address (SNAT)"
		}
		srcs := w.toBackendSrc[proto]
		var err error
		if len(srcs) == 0 {
			err = fmt.Errorf("no %s request to a backend seen", proto)
		}
		for _, s := range srcs {
			if !s.Equal(want) {
				err = fmt.Errorf("a %s request from %s, want %s", proto, s, want)
				break
			}
		}
		r.Check(fmt.Sprintf("%s: the backend sees %s as source", proto, who), at+": (inner) IPv4 source of requests", err)
	}
}

func (w *dsrWire) checkReplies(r *scenarios.Run, udpSNAT bool) {
	for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP} {
		dsr := !(proto == layers.IPProtocolUDP && udpSNAT)
		sender, senderMAC, other := w.back, w.n2MAC, w.n1Replies[proto]
		if !dsr {
			sender, senderMAC, other = w.node, w.n1MAC, w.n2Reply[proto]
		}
		var err error
		replies := w.replies[proto]
		if len(replies) == 0 {
			err = fmt.Errorf("%s received no %s reply from %s", w.client, proto, w.service)
		}
		for _, p := range replies {
			eth := p.Decode().Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			if !bytes.Equal(eth.SrcMAC, senderMAC) {
				err = fmt.Errorf("reply sent by MAC %s, want %s's %s: %s", eth.SrcMAC, sender, senderMAC, p.Summary())
				break
			}
		}
		name := fmt.Sprintf("%s replies (%d) reach the client from %s, sent by %s", proto, len(replies), w.service, sender)
		if dsr {
			name += " (direct server return)"
		}
		r.Check(name, w.where(w.client, w.ext)+" capture: source address, port and Ethernet source of incoming replies", err)
		var crossErr error
		if other > 0 {
			crossErr = fmt.Errorf("%d %s replies left the other node", other, proto)
		}
		if dsr {
			r.Check(fmt.Sprintf("%s replies never cross %s, the node that balanced the flow", proto, w.node),
				w.where(w.node, w.n1)+" capture: outgoing packets from "+w.service.String()+" to "+w.client, crossErr)
		} else {
			r.Check(fmt.Sprintf("%s replies return through %s (SNAT), never directly from %s", proto, w.node, w.back),
				w.where(w.back, w.n2)+" capture: outgoing packets from "+w.service.String()+" to "+w.client, crossErr)
		}
	}
}

func (w *dsrWire) expectFragNeeded(mtu int) error {
	if len(w.icmpMTUs) == 0 {
		return errors.New("no ICMP fragmentation-needed from the service address reached " + w.client)
	}
	for _, m := range w.icmpMTUs {
		if m != mtu {
			return fmt.Errorf("frag-needed with MTU %d, want %d (all: %v)", m, mtu, w.icmpMTUs)
		}
	}
	return nil
}

func expectInt(what string, got, want int) error {
	if got != want {
		return fmt.Errorf("%s %d, want %d", what, got, want)
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"podpath/datapath/agent"
	"podpath/scenarios/capture"
	"podpath/topology"
)

// dsrVariant is one way of returning NodePort replies directly from the backend.
type dsrVariant struct {
	name, config string
	geneve       bool // dispatch in a Geneve option (tunnel mode), else the IPv4 option
	udpSNAT      bool // hybrid: UDP flows are SNATed, TCP flows get DSR
	// udpPathMTU is what a client learns from the frag-needed answer to a 1500-byte
	// DF datagram that carries the option: 1500 - 8 (IPv4 option), or the tunnel MTU
	// 1450 less the 12-byte Geneve option.
	udpPathMTU int
}

var dsrVariants = []dsrVariant{
	{name: "dsr", config: "dsr", udpPathMTU: 1492},
	{name: "dsr-geneve", config: "dsr-geneve", geneve: true, udpPathMTU: 1438},
	{name: "hybrid", config: "hybrid", udpSNAT: true},
}

func init() {
	descriptions := map[string]string{
		"dsr": "direct server return with native routing: the SYN to a NodePort on node1 reaches the backend " +
			"on node2 with the service in an IPv4 option, replies go from node2 straight to the client with " +
			"the service as source; a DF datagram the option makes too big gets ICMP frag-needed 1492",
		"dsr-geneve": "direct server return in Geneve tunnel mode: the request travels in Geneve with Cilium's " +
			"DSR option (class 0x014B) on the SYN only, replies leave node2 natively from the service; " +
			"frag-needed 1438 for a DF datagram that no longer fits",
		"hybrid": "hybrid load balancing in one run: TCP to the NodePort gets DSR (option on the SYN, replies " +
			"straight from node2), UDP gets SNAT (the backend sees node1, replies return through node1)",
	}
	labels := map[string][]string{
		"dsr":        {"services", "dsr", "native-routing", "mtu"},
		"dsr-geneve": {"services", "dsr", "geneve", "mtu"},
		"hybrid":     {"services", "dsr", "snat", "hybrid"},
	}
	for _, v := range dsrVariants {
		register(&Scenario{Name: v.name, Description: descriptions[v.name], Labels: labels[v.name],
			Run: func(ctx context.Context, r *Run) error { return runDSR(ctx, r, v) }})
	}
}

const dsrNodePort = 30080

// dsrService balances over node2's pods only, so every flow entering node1 goes to a
// remote backend.
func dsrService(t *topology.Topology, proto string) agent.Service {
	s := agent.Service{Name: "dsr-" + strings.ToLower(proto), Type: "NodePort", ClusterIP: netip.MustParseAddr("10.96.0.30"),
		Port: 80, Protocol: proto, NodePort: dsrNodePort}
	for _, p := range t.Pods() {
		if p.Node == "node2" {
			s.Backends = append(s.Backends, agent.ServiceBackend{IP: p.IP, Port: probePort})
		}
	}
	return s
}

// dsrWire is what the captures of one DSR run show, with the names of where they
// were taken for the checks' "looked at".
type dsrWire struct {
	s                  *capture.Session
	ext, n1, n2        string // interface names
	extIP, n1IP        net.IP
	n1MAC, n2MAC       net.HardwareAddr
	service            netip.AddrPort
	geneve             bool
	backends           []netip.Addr
	icmpMTUs           []int // frag-needed MTUs ext received from the service address
	optSYN, optLater   []capture.Packet
	plainSYN           []capture.Packet
	toBackendSrc       map[layers.IPProtocol][]net.IP
	replies            map[layers.IPProtocol][]capture.Packet // at ext, from the service port
	n1Replies, n2Reply map[layers.IPProtocol]int              // replies leaving node1 / node2 towards ext
}

func runDSR(ctx context.Context, r *Run, v dsrVariant) error {
	t, agents, err := r.UpWithAgents(ctx, "l2-services-agent", v.config)
	if err != nil {
		return err
	}
	for _, proto := range []string{"TCP", "UDP"} {
		if err := agents.ServiceUpsert(ctx, dsrService(t, proto)); err != nil {
			return err
		}
	}
	var backends []string
	for _, p := range t.Pods() {
		if p.Node == "node2" {
			backends = append(backends, p.Name)
		}
	}
	servers, err := echoOn(t, backends)
	if err != nil {
		return err
	}
	defer servers.Close()

	n1, _ := t.Node("node1")
	n2, _ := t.Node("node2")
	service := netip.AddrPortFrom(n1.InternalIP, dsrNodePort)
	ifs, _ := t.Interfaces("ext")
	me, _ := t.Member("ext")
	m1, _ := t.Member("node1")
	m2, _ := t.Member("node2")
	w := &dsrWire{ext: ifs[0].Name, n1: internalIface(n1).Name, n2: internalIface(n2).Name,
		extIP: ifs[0].Address.Addr().AsSlice(), n1IP: n1.InternalIP.AsSlice(),
		n1MAC: internalIface(n1).MAC, n2MAC: internalIface(n2).MAC, service: service, geneve: v.geneve}
	for _, p := range t.Pods() {
		if p.Node == "node2" {
			w.backends = append(w.backends, p.IP)
		}
	}
	w.s, err = capture.Start(filepath.Join(r.Artifacts, "dsr"),
		capture.Point{Member: "ext", Interface: w.ext, NsPath: me.NsPath},
		capture.Point{Member: "node1", Interface: w.n1, NsPath: m1.NsPath},
		capture.Point{Member: "node2", Interface: w.n2, NsPath: m2.NsPath})
	if err != nil {
		return err
	}
	defer w.s.Stop()

	r.Progress("traffic: 4 TCP and 4 UDP exchanges ext -> %s, a 1 MiB TCP echo, DF datagrams of 1500 bytes", service)
	for _, p := range []Protocol{TCP, UDP} {
		var errs []error
		for range 4 {
			errs = append(errs, exchangeAddr(ctx, t, "ext", p, service))
		}
		r.Check(fmt.Sprintf("%s ext -> NodePort %s answered by a backend on node2 (4 exchanges)", p, service),
			"the echo ext's socket read back", errors.Join(errs...))
	}
	r.Check("TCP: a 1 MiB echo through the NodePort completes, full-size segments included",
		"bytes ext's socket read back, compared with what it sent", tcpEchoBulk(ctx, t, "ext", service, 1<<20))
	var learned int
	var dfErr error
	if !v.udpSNAT {
		learned, dfErr = dfDatagram(ctx, t, "ext", service, 1500)
	}
	if err := w.s.Stop(); err != nil {
		return err
	}
	w.collect()

	if !v.udpSNAT {
		r.Check(fmt.Sprintf("MTU: a 1500-byte DF datagram that carries the option is answered with ICMP frag-needed %d", v.udpPathMTU),
			"ext/"+w.ext+" capture: ICMP type 3 code 4 from "+service.Addr().String()+" and its next-hop MTU",
			w.expectFragNeeded(v.udpPathMTU))
		r.Check(fmt.Sprintf("MTU: the client's socket learns path MTU %d and a datagram of that size is answered", v.udpPathMTU),
			"IP_MTU of ext's connected UDP socket, then the echo of a DF datagram of that size",
			errors.Join(dfErr, expectInt("learned path MTU", learned, v.udpPathMTU)))
	}
	w.checkRequests(r, v)
	w.checkReplies(r, v)
	return nil
}

// collect sorts the captured packets into what the checks look at.
func (w *dsrWire) collect() {
	w.toBackendSrc = map[layers.IPProtocol][]net.IP{}
	w.replies = map[layers.IPProtocol][]capture.Packet{}
	w.n1Replies = map[layers.IPProtocol]int{}
	w.n2Reply = map[layers.IPProtocol]int{}
	for _, p := range w.s.Packets("node2", w.n2, nil) {
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
	for _, p := range w.s.Packets("node1", w.n1, nil) {
		if proto, ok := w.serviceReply(p.Decode(), false); ok && p.Outgoing {
			w.n1Replies[proto]++
		}
	}
	for _, p := range w.s.Packets("ext", w.ext, nil) {
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
			if uint16(h.DstPort) == probePort {
				l4 = h
			}
		case *layers.UDP:
			if uint16(h.DstPort) == probePort {
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
		return layers.IPProtocolTCP, uint16(h.SrcPort) == dsrNodePort
	case *layers.UDP:
		return layers.IPProtocolUDP, uint16(h.SrcPort) == dsrNodePort
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

func (w *dsrWire) checkRequests(r *Run, v dsrVariant) {
	at := w.where("node2", w.n2) + " capture (incoming)"
	how := "IPv4 option 0x9a"
	if v.geneve {
		how = "Geneve option class 0x014B type 1, inner IPv4"
	}
	var synErr error
	switch {
	case len(w.optSYN) == 0:
		synErr = fmt.Errorf("no SYN with the DSR option naming %s reached node2 (%d SYNs without it)", w.service, len(w.plainSYN))
	case len(w.plainSYN) > 0:
		synErr = fmt.Errorf("%d SYNs without the option, e.g. %s", len(w.plainSYN), w.plainSYN[0].Summary())
	}
	r.Check(fmt.Sprintf("every TCP SYN reaches node2 carrying the DSR option with the service %s (%d SYNs)", w.service, len(w.optSYN)),
		at+": "+how, synErr)
	var laterErr error
	if len(w.optLater) > 0 {
		laterErr = fmt.Errorf("%d TCP packets after the SYN carry the option, e.g. %s", len(w.optLater), w.optLater[0].Summary())
	}
	r.Check("only the first packet of a TCP flow carries the option", at+": "+how+" on non-SYN TCP packets to the backend port", laterErr)
	if v.geneve {
		var encErr error
		for _, p := range w.s.Packets("node2", w.n2, nil) {
			if ip, _ := w.toBackend(p.Decode()); ip != nil && !p.Outgoing && p.Decode().Layer(layers.LayerTypeGeneve) == nil {
				encErr = fmt.Errorf("a request reached node2 outside Geneve: %s", p.Summary())
				break
			}
		}
		r.Check("requests reach node2 encapsulated in Geneve (UDP 6081)", at+": outer UDP/Geneve around every request", encErr)
	}
	for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP} {
		want, who := w.extIP, "the client's address (no SNAT)"
		if proto == layers.IPProtocolUDP && v.udpSNAT {
			want, who = w.n1IP, "node1's address (SNAT)"
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

func (w *dsrWire) checkReplies(r *Run, v dsrVariant) {
	for _, proto := range []layers.IPProtocol{layers.IPProtocolTCP, layers.IPProtocolUDP} {
		dsr := !(proto == layers.IPProtocolUDP && v.udpSNAT)
		sender, senderMAC, other := "node2", w.n2MAC, w.n1Replies[proto]
		if !dsr {
			sender, senderMAC, other = "node1", w.n1MAC, w.n2Reply[proto]
		}
		var err error
		replies := w.replies[proto]
		if len(replies) == 0 {
			err = fmt.Errorf("ext received no %s reply from %s", proto, w.service)
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
		r.Check(name, w.where("ext", w.ext)+" capture: source address, port and Ethernet source of incoming replies", err)
		var crossErr error
		if other > 0 {
			crossErr = fmt.Errorf("%d %s replies left the other node", other, proto)
		}
		if dsr {
			r.Check(fmt.Sprintf("%s replies never cross node1, the node that balanced the flow", proto),
				w.where("node1", w.n1)+" capture: outgoing packets from "+w.service.String()+" to ext", crossErr)
		} else {
			r.Check(fmt.Sprintf("%s replies return through node1 (SNAT), never directly from node2", proto),
				w.where("node2", w.n2)+" capture: outgoing packets from "+w.service.String()+" to ext", crossErr)
		}
	}
}

func (w *dsrWire) expectFragNeeded(mtu int) error {
	if len(w.icmpMTUs) == 0 {
		return errors.New("no ICMP fragmentation-needed from the service address reached ext")
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

// dfDatagram sends, from member over a connected UDP socket with DF set
// (IP_PMTUDISC_DO), a datagram of size bytes of IPv4 to dst; once the socket knows a
// smaller path MTU (IP_MTU, from an ICMP frag-needed) it sends one of that size and
// waits for its echo. Returns the path MTU learned.
func dfDatagram(ctx context.Context, t *topology.Topology, member string, dst netip.AddrPort, size int) (int, error) {
	var mtu int
	err := t.Do(member, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
			return err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
			return err
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			// A send after the ICMP fails with EMSGSIZE: the socket learned the MTU.
			_, err := unix.Write(fd, make([]byte, size-28))
			if m, gerr := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU); gerr == nil && m < size {
				mtu = m
				break
			}
			if err != nil && !errors.Is(err, unix.EMSGSIZE) {
				return fmt.Errorf("send %d bytes to %s: %w", size, dst, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("after 3 s of %d-byte DF datagrams to %s the socket still has path MTU %d", size, dst, size)
			}
			time.Sleep(100 * time.Millisecond)
		}
		payload := make([]byte, mtu-28)
		_, _ = rand.Read(payload)
		// The ICMP also left a pending EMSGSIZE on the socket, reported by one call.
		if _, err := unix.Write(fd, payload); errors.Is(err, unix.EMSGSIZE) {
			_, err = unix.Write(fd, payload)
			if err != nil {
				return fmt.Errorf("send %d bytes (the learned MTU) to %s: %w", mtu, dst, err)
			}
		} else if err != nil {
			return fmt.Errorf("send %d bytes (the learned MTU) to %s: %w", mtu, dst, err)
		}
		buf := make([]byte, 65536)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return fmt.Errorf("echo of the %d-byte datagram from %s: %w", mtu, dst, err)
		}
		if !bytes.Equal(buf[:n], payload) {
			return fmt.Errorf("echo of the %d-byte datagram: %d bytes that differ", mtu, n)
		}
		return nil
	})
	return mtu, err
}

// tcpEchoBulk sends n random bytes from member to dst (an echo server behind it) and
// reads them back.
func tcpEchoBulk(ctx context.Context, t *topology.Topology, member string, dst netip.AddrPort, n int) error {
	return t.Do(member, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		data := make([]byte, n)
		_, _ = rand.Read(data)
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			werr <- err
		}()
		got := make([]byte, n)
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("read back: %w (write: %v)", err, <-werr)
		}
		if err := <-werr; err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return errors.New("the echoed bytes differ from the sent ones")
		}
		return nil
	})
}

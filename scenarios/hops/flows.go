// SPDX-License-Identifier: Apache-2.0

package hops

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/internal/capture"
	"podpath/topology"
)

// FlowRecord is one packet followed hop by hop, as a report shows it: at every hop
// where it was (or should have been) seen, its headers and what changed there.
type FlowRecord struct {
	Name string `json:"name"`
	// Error is why the path check failed (VerifyPath's evidence); empty when it passed.
	Error string    `json:"error,omitempty"`
	Hops  []FlowHop `json:"hops"`
}

// Passed reports whether the packet crossed every hop as planned.
func (f FlowRecord) Passed() bool { return f.Error == "" }

// Hop states of a FlowHop.
const (
	HopSeen      = "seen"      // the packet was there, as the path says
	HopFailed    = "failed"    // the path check failed here: missing or wrong headers
	HopUnchecked = "unchecked" // after the failing hop: not looked at
)

// FlowHop is one hop of a FlowRecord.
type FlowHop struct {
	Member    string `json:"member"`
	Interface string `json:"interface"`
	// Kind of the member (node, pod, segment, router, client), when the run knew it.
	Kind string `json:"kind,omitempty"`
	// Direction is "out" (the interface sent the frame) or "in" (it received it).
	Direction string `json:"direction"`
	// Program is what acts on the packet at this hop (a BPF program, the bridge, the
	// host stack), derived from where the hop is; see HopProgram.
	Program string `json:"program,omitempty"`
	State   string `json:"state"`
	// Offset is the capture time relative to the first hop.
	Offset    time.Duration `json:"offset"`
	Timestamp time.Time     `json:"timestamp,omitzero"`
	Length    int           `json:"length,omitempty"`
	// Outer is the outermost Ethernet/IPv4 header; Tunnel and Inner are set when the
	// packet is VXLAN- or Geneve-encapsulated.
	Outer  *FlowHeaders `json:"outer,omitempty"`
	Tunnel string       `json:"tunnel,omitempty"`
	Inner  *FlowHeaders `json:"inner,omitempty"`
	// Changes say what differs from the previous hop ("TTL 64 → 63", "encapsulated:
	// …"); Changed holds the keys of the fields that differ ("outer.ttl", "inner.eth.src",
	// "tunnel").
	Changes []string        `json:"changes,omitempty"`
	Changed map[string]bool `json:"changed,omitempty"`
	// Wrong holds the keys (as in Changed) of the fields an expectation wanted
	// otherwise at this hop: the diagram marks them.
	Wrong   map[string]bool `json:"wrong,omitempty"`
	Summary string          `json:"summary,omitempty"`
	// Pcap is the capture file of this interface (relative to the report folder in a
	// conformance report).
	Pcap string `json:"pcap,omitempty"`
}

// FlowHeaders are the header fields a path diagram shows for one Ethernet/IPv4 layer pair.
type FlowHeaders struct {
	EthSrc string `json:"ethSrc,omitempty"`
	EthDst string `json:"ethDst,omitempty"`
	IPSrc  string `json:"ipSrc,omitempty"`
	IPDst  string `json:"ipDst,omitempty"`
	TTL    uint8  `json:"ttl"`
	// IPOptions are the IPv4 header's options: "DSR 10.0.0.1:30080" for the DSR
	// option (type 0x9a), "type 0x.. len N" for others.
	IPOptions string `json:"ipOptions,omitempty"`
	// Proto is the layer above IPv4: "ICMP echo-request id=1 seq=1", "UDP 51234 > 8472".
	Proto string `json:"proto,omitempty"`
}

// HopProgram names what acts on a packet at a hop of a pod-networking path: for a member
// of kind (empty when unknown) and an interface, in the direction the capture saw it.
//
//	pod eth0 out            pod (sends)       pod eth0 in           pod (receives)
//	node lxc* in            from-container    node lxc* out         to-container
//	node cilium_vxlan in    from-overlay      node cilium_vxlan out vxlan device (encap)
//	node NIC in             from-netdev       node NIC out          to-netdev
//	segment port            bridge            router                kernel forwarding
func HopProgram(kind topology.Kind, iface string, outgoing bool) string {
	if kind == "" {
		switch {
		case strings.HasPrefix(iface, "lxc"), strings.HasPrefix(iface, "cilium_"):
			kind = topology.KindNode
		}
	}
	pick := func(in, out string) string {
		if outgoing {
			return out
		}
		return in
	}
	switch kind {
	case topology.KindPod:
		return pick("pod (receives)", "pod (sends)")
	case topology.KindSegment:
		return "bridge"
	case topology.KindRouter:
		return "router (kernel forwarding)"
	case topology.KindClient:
		return pick("client (receives)", "client (sends)")
	case topology.KindNode:
		switch {
		case strings.HasPrefix(iface, "lxc"):
			return pick("from-container (tcx ingress)", "to-container (tcx egress)")
		case strings.HasPrefix(iface, "cilium_vxlan"):
			return pick("from-overlay (tcx ingress)", "vxlan device (encap)")
		default:
			return pick("from-netdev (tcx ingress)", "to-netdev (tcx egress)")
		}
	}
	return ""
}

// FlowOptions complete what NewFlowRecord knows about a path.
type FlowOptions struct {
	// Kind names a member's kind (nil or "": guessed from interface names).
	Kind func(member string) topology.Kind
	// Pcap names a hop's capture file (nil: none).
	Pcap func(Hop) string
	// AtFailure is the packet the failing hop saw, when it saw it with wrong headers.
	AtFailure *capture.Packet
}

// NewFlowRecord summarises a packet path: hops as planned, seen the packet at each hop
// as VerifyPath returned it (up to the first failing hop) and err its failure.
func NewFlowRecord(name string, hops []Hop, seen []capture.Packet, err error, o FlowOptions) FlowRecord {
	f := FlowRecord{Name: name}
	if err != nil {
		f.Error = err.Error()
	}
	prev := -1 // the last hop with a packet
	for i, h := range hops {
		fh := FlowHop{Member: h.Member, Interface: h.Interface, Direction: "in", State: HopSeen}
		if h.Outgoing {
			fh.Direction = "out"
		}
		var k topology.Kind
		if o.Kind != nil {
			k = o.Kind(h.Member)
		}
		fh.Kind = string(k)
		fh.Program = HopProgram(k, h.Interface, h.Outgoing)
		if o.Pcap != nil {
			fh.Pcap = o.Pcap(h)
		}
		var p *capture.Packet
		switch {
		case i < len(seen):
			p = &seen[i]
		case i == len(seen) && err != nil:
			fh.State, p = HopFailed, o.AtFailure
		default:
			fh.State = HopUnchecked
		}
		if p != nil {
			fh.Timestamp = p.Timestamp
			if len(seen) > 0 {
				fh.Offset = p.Timestamp.Sub(seen[0].Timestamp)
			}
			fh.Length = p.Length
			fh.Summary = p.Summary()
			fh.Outer, fh.Tunnel, fh.Inner = flowHeaders(p.Decode())
			if prev >= 0 {
				diffHops(&f.Hops[prev], &fh)
			}
		}
		f.Hops = append(f.Hops, fh)
		if fh.Outer != nil {
			prev = len(f.Hops) - 1
		}
	}
	return f
}

// ExpectedHop is one hop of a packet checked field by field (the `path` step).
type ExpectedHop struct {
	Hop
	// Frame is the packet as seen there; nil when it never came.
	Frame *capture.Packet
	// Wrong are the fields (HeaderFields names: outer.ttl, tunnel.vni, ...) that
	// differ from the expectation.
	Wrong []string
}

// diagramKey maps a HeaderFields name to the key the diagram's rows use (Changed).
func diagramKey(field string) string {
	layer, f, ok := strings.Cut(field, ".")
	if !ok || layer == "tunnel" {
		return "tunnel"
	}
	switch f {
	case "ethSrc":
		return layer + ".eth.src"
	case "ethDst":
		return layer + ".eth.dst"
	case "src":
		return layer + ".ip.src"
	case "dst":
		return layer + ".ip.dst"
	case "ttl":
		return layer + ".ttl"
	case "ipOptions":
		return layer + ".ip.opts"
	}
	return layer + ".proto" // proto, ports, flags, ICMP type; and the unshown ones
}

// NewCheckedFlowRecord is NewFlowRecord for hops checked one by one: every hop is
// drawn with the frame found there (a hop without one, or with wrong fields, is
// failed, and its wrong fields are marked); later hops stay checked.
func NewCheckedFlowRecord(name string, hs []ExpectedHop, err error, o FlowOptions) FlowRecord {
	f := FlowRecord{Name: name}
	if err != nil {
		f.Error = err.Error()
	}
	prev := -1
	var first *capture.Packet
	for _, h := range hs {
		fh := FlowHop{Member: h.Member, Interface: h.Interface, Direction: "in", State: HopSeen}
		if h.Outgoing {
			fh.Direction = "out"
		}
		var k topology.Kind
		if o.Kind != nil {
			k = o.Kind(h.Member)
		}
		fh.Kind = string(k)
		fh.Program = HopProgram(k, h.Interface, h.Outgoing)
		if o.Pcap != nil {
			fh.Pcap = o.Pcap(h.Hop)
		}
		if p := h.Frame; p != nil {
			if first == nil {
				first = p
			}
			fh.Timestamp, fh.Offset, fh.Length, fh.Summary = p.Timestamp, p.Timestamp.Sub(first.Timestamp), p.Length, p.Summary()
			fh.Outer, fh.Tunnel, fh.Inner = flowHeaders(p.Decode())
			if prev >= 0 {
				diffHops(&f.Hops[prev], &fh)
			}
		} else {
			fh.State = HopFailed
		}
		if len(h.Wrong) > 0 {
			fh.State = HopFailed
			fh.Wrong = map[string]bool{}
			for _, w := range h.Wrong {
				fh.Wrong[diagramKey(w)] = true
			}
		}
		f.Hops = append(f.Hops, fh)
		if fh.Outer != nil {
			prev = len(f.Hops) - 1
		}
	}
	return f
}

// flowHeaders reads the outer Ethernet/IPv4 headers, the tunnel and the inner ones.
func flowHeaders(p gopacket.Packet) (outer *FlowHeaders, tunnel string, inner *FlowHeaders) {
	cur := &FlowHeaders{}
	outer = cur
	afterIP := false
	for _, l := range p.Layers() {
		if afterIP && cur.Proto == "" {
			cur.Proto = protoSummary(l)
		}
		switch h := l.(type) {
		case *layers.Ethernet:
			if cur.EthSrc == "" {
				cur.EthSrc, cur.EthDst = h.SrcMAC.String(), h.DstMAC.String()
			}
		case *layers.IPv4:
			if cur.IPSrc == "" {
				cur.IPSrc, cur.IPDst, cur.TTL = h.SrcIP.String(), h.DstIP.String(), h.TTL
				cur.IPOptions = ipOptions(h.Options)
				afterIP = true
				continue
			}
		case *layers.VXLAN:
			tunnel = fmt.Sprintf("VXLAN vni=%d", h.VNI)
		case *layers.Geneve:
			tunnel = fmt.Sprintf("Geneve vni=%d", h.VNI)
			for _, o := range h.Options {
				tunnel += fmt.Sprintf(" opt=%#04x/%d", o.Class, o.Type)
			}
		}
		if l.LayerType() == layers.LayerTypeVXLAN || l.LayerType() == layers.LayerTypeGeneve {
			cur = &FlowHeaders{}
			inner = cur
		}
		afterIP = false
	}
	return outer, tunnel, inner
}

// ipOptions renders IPv4 options, naming the DSR option's service.
func ipOptions(opts []layers.IPv4Option) string {
	var out []string
	for _, o := range opts {
		switch {
		case o.OptionType == 0x9a && len(o.OptionData) == 6:
			addr := netip.AddrFrom4([4]byte(o.OptionData[2:6]))
			out = append(out, fmt.Sprintf("DSR %s", netip.AddrPortFrom(addr, binary.BigEndian.Uint16(o.OptionData[:2]))))
		case o.OptionType == 0 || o.OptionType == 1: // end of list, no-op padding
		default:
			out = append(out, fmt.Sprintf("type %#02x len %d", o.OptionType, o.OptionLength))
		}
	}
	return strings.Join(out, ", ")
}

func protoSummary(l gopacket.Layer) string {
	switch h := l.(type) {
	case *layers.ICMPv4:
		switch h.TypeCode.Type() {
		case layers.ICMPv4TypeEchoRequest:
			return fmt.Sprintf("ICMP echo-request id=%d seq=%d", h.Id, h.Seq)
		case layers.ICMPv4TypeEchoReply:
			return fmt.Sprintf("ICMP echo-reply id=%d seq=%d", h.Id, h.Seq)
		}
		return "ICMP " + h.TypeCode.String()
	case *layers.TCP:
		var f strings.Builder
		for _, x := range []struct {
			on bool
			c  byte
		}{{h.SYN, 'S'}, {h.FIN, 'F'}, {h.RST, 'R'}, {h.PSH, 'P'}, {h.ACK, '.'}} {
			if x.on {
				f.WriteByte(x.c)
			}
		}
		return fmt.Sprintf("TCP %d > %d [%s]", h.SrcPort, h.DstPort, f.String())
	case *layers.UDP:
		return fmt.Sprintf("UDP %d > %d", h.SrcPort, h.DstPort)
	}
	return l.LayerType().String()
}

// diffHops fills cur's Changes and Changed against the previous seen hop. The packet's
// own headers are compared with the packet's own headers: across an encapsulation the
// new inner headers with the old outer ones, across a decapsulation the reverse.
func diffHops(prev, cur *FlowHop) {
	cur.Changed = map[string]bool{}
	switch {
	case prev.Tunnel == "" && cur.Tunnel != "":
		cur.Changes = append(cur.Changes, fmt.Sprintf("encapsulated: outer IPv4 %s > %s, %s, %s",
			cur.Outer.IPSrc, cur.Outer.IPDst, cur.Outer.Proto, cur.Tunnel))
		for _, k := range []string{"tunnel", "outer.eth.src", "outer.eth.dst", "outer.ip.src", "outer.ip.dst", "outer.ttl", "outer.proto"} {
			cur.Changed[k] = true
		}
		diffHeaders("inner", "inner ", prev.Outer, cur.Inner, cur)
	case prev.Tunnel != "" && cur.Tunnel == "":
		cur.Changes = append(cur.Changes, "decapsulated: "+prev.Tunnel+" and outer headers removed")
		cur.Changed["tunnel"] = true
		diffHeaders("outer", "", prev.Inner, cur.Outer, cur)
	default:
		if prev.Tunnel != cur.Tunnel {
			cur.Changes = append(cur.Changes, fmt.Sprintf("tunnel %s → %s", prev.Tunnel, cur.Tunnel))
			cur.Changed["tunnel"] = true
		}
		prefix := ""
		if cur.Tunnel != "" {
			prefix = "outer "
		}
		diffHeaders("outer", prefix, prev.Outer, cur.Outer, cur)
		diffHeaders("inner", "inner ", prev.Inner, cur.Inner, cur)
	}
	if len(cur.Changed) == 0 {
		cur.Changed = nil
	}
}

func diffHeaders(key, label string, a, b *FlowHeaders, cur *FlowHop) {
	if a == nil || b == nil {
		return
	}
	// MACs are rewritten at every routing hop: the highlighted fields say which, the
	// previous box says from what. Anything else says old and new.
	var macs []string
	if a.EthSrc != b.EthSrc {
		cur.Changed[key+".eth.src"] = true
		macs = append(macs, "source")
	}
	if a.EthDst != b.EthDst {
		cur.Changed[key+".eth.dst"] = true
		macs = append(macs, "destination")
	}
	switch len(macs) {
	case 1:
		cur.Changes = append(cur.Changes, fmt.Sprintf("%s%s MAC rewritten", label, macs[0]))
	case 2:
		cur.Changes = append(cur.Changes, label+"MACs rewritten")
	}
	for _, f := range []struct {
		key, name, old, new string
	}{
		{"ttl", "TTL", fmt.Sprint(a.TTL), fmt.Sprint(b.TTL)},
		{"ip.src", "source IP", a.IPSrc, b.IPSrc},
		{"ip.dst", "destination IP", a.IPDst, b.IPDst},
		{"ip.opts", "IPv4 options", noneIfEmpty(a.IPOptions), noneIfEmpty(b.IPOptions)},
		{"proto", "L4", a.Proto, b.Proto},
	} {
		if f.old != f.new {
			cur.Changed[key+"."+f.key] = true
			cur.Changes = append(cur.Changes, fmt.Sprintf("%s%s %s → %s", label, f.name, f.old, f.new))
		}
	}
}

func noneIfEmpty(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"podpath/datapath/btfnames"
)

// Names maps the values of the datapath's enums to their C names, read from BTF.
type Names struct {
	DropReasons map[uint64]string // "DROP_TRUNCATED_IPV4"
	PassReasons map[uint64]string // "PASS_FIB_FRAG_NEEDED"
	ObsPoints   map[uint64]string // "OBS_FROM_CONTAINER"
	Verdicts    map[uint64]string // "VERDICT_REDIRECT_PEER"
	Tunnels     map[uint64]string // "TRACE_ENCAP_GENEVE"
	LBActions   map[uint64]string // "TRACE_LB_DNAT_DSR"
	CTStates    map[uint64]string // "TRACE_CT_ESTABLISHED"
}

// NamesFromSpec reads the enums drop_reason, pass_reason, obs_point, trace_verdict,
// trace_tunnel, trace_lb and trace_ct from spec's BTF.
func NamesFromSpec(spec *ebpf.CollectionSpec) (*Names, error) {
	return namesFromTypes(spec.Types)
}

func namesFromTypes(types *btf.Spec) (*Names, error) {
	n := &Names{}
	for _, e := range []struct {
		name string
		dst  *map[uint64]string
	}{
		{"drop_reason", &n.DropReasons},
		{"pass_reason", &n.PassReasons},
		{"obs_point", &n.ObsPoints},
		{"trace_verdict", &n.Verdicts},
		{"trace_tunnel", &n.Tunnels},
		{"trace_lb", &n.LBActions},
		{"trace_ct", &n.CTStates},
	} {
		enum, err := btfnames.FromTypes(types, e.name)
		if err != nil {
			return nil, err
		}
		*e.dst = enum
	}
	return n, nil
}

var (
	defaultNames     *Names
	defaultNamesErr  error
	defaultNamesOnce sync.Once
)

// DefaultNames returns the names compiled into the committed objects
// (btfnames.DefaultTypes): every object includes the same headers.
func DefaultNames() (*Names, error) {
	defaultNamesOnce.Do(func() {
		types, err := btfnames.DefaultTypes()
		if err != nil {
			defaultNamesErr = err
			return
		}
		defaultNames, defaultNamesErr = namesFromTypes(types)
	})
	return defaultNames, defaultNamesErr
}

func lookup(m map[uint64]string, v uint16, kind string) string {
	if s, ok := m[uint64(v)]; ok {
		return s
	}
	return fmt.Sprintf("%s(%d)", kind, v)
}

// DropReason names a drop reason code, or says it is unknown.
func (n *Names) DropReason(v uint16) string { return lookup(n.DropReasons, v, "drop_reason") }

// PassReason names a pass reason code.
func (n *Names) PassReason(v uint16) string { return lookup(n.PassReasons, v, "pass_reason") }

// ObsPoint names an observation point.
func (n *Names) ObsPoint(v uint16) string { return lookup(n.ObsPoints, v, "obs_point") }

// Verdict names a verdict.
func (n *Names) Verdict(v uint16) string { return lookup(n.Verdicts, v, "verdict") }

// Tunnel names a trace_tunnel value (TRACE_TUNNEL_NONE for 0).
func (n *Names) Tunnel(v uint16) string { return lookup(n.Tunnels, v, "tunnel") }

// LBAction names enum trace_lb.
func (n *Names) LBAction(v uint8) string { return lookup(n.LBActions, uint16(v), "trace_lb") }

// CTState names enum trace_ct.
func (n *Names) CTState(v uint8) string { return lookup(n.CTStates, uint16(v), "trace_ct") }

// DropReasonCode is the reverse lookup, for tests that expect a reason by name.
func (n *Names) DropReasonCode(name string) (uint16, error) {
	for v, s := range n.DropReasons {
		if s == name {
			return uint16(v), nil
		}
	}
	return 0, fmt.Errorf("unknown drop reason %q", name)
}

// PassReasonCode is the reverse lookup of PassReason.
func (n *Names) PassReasonCode(name string) (uint16, error) {
	for v, s := range n.PassReasons {
		if s == name {
			return uint16(v), nil
		}
	}
	return 0, fmt.Errorf("unknown pass reason %q", name)
}

// Format renders a record on one line, like `cilium monitor`:
//
//	node 2 OBS_FROM_CONTAINER if 7 VERDICT_DROP DROP_BAD_IHL len 54 10.0.0.1 -> 10.0.0.2 ttl 64
//	node 2 OBS_FROM_CONTAINER if 7 VERDICT_PASS PASS_FIB_FRAG_NEEDED len 1514 ...
//	node 2 OBS_FROM_NETDEV if 3 VERDICT_REDIRECT_PEER -> if 9 len 98 ...
//	node 1 OBS_FROM_CONTAINER if 7 VERDICT_REDIRECT -> if 4 encap vxlan to 192.168.77.2 identity 1000 len 98 ...
//	node 2 OBS_FROM_NETDEV if 3 VERDICT_REDIRECT_PEER -> if 9 decap geneve from 192.168.77.1 identity 1000 len 98 ...
func (n *Names) Format(r Record) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node %d %s if %d %s", r.NodeID, n.ObsPoint(r.ObsPoint), r.Ifindex, n.Verdict(r.Verdict))
	if r.DropReason != 0 {
		fmt.Fprintf(&b, " %s", n.DropReason(r.DropReason))
	}
	if r.PassReason != 0 {
		fmt.Fprintf(&b, " %s", n.PassReason(r.PassReason))
	}
	if r.TargetIfindex != 0 {
		fmt.Fprintf(&b, " -> if %d", r.TargetIfindex)
	}
	if r.Tunnel != 0 {
		b.WriteString(" " + n.tunnelString(r))
	}
	fmt.Fprintf(&b, " len %d", r.PktLen)
	b.WriteString(" " + r.Pkt.String())
	if r.LB.Action != 0 {
		b.WriteString(" " + n.lbString(r.LB))
	}
	return b.String()
}

// lbString is "lb dnat-dsr ct new backend 2 from 172.16.0.5:50000->192.168.50.1:30080"
// and the like: the translation, conntrack, the backend, the tuple as received.
func (n *Names) lbString(lb LBInfo) string {
	action := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(n.LBAction(lb.Action), "TRACE_LB_")), "_", "-")
	ct := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(n.CTState(lb.CT), "TRACE_CT_")), "_", "-")
	return fmt.Sprintf("lb %s ct %s backend %d from %s->%s", action, ct, lb.BackendID, lb.OrigSrc, lb.OrigDst)
}

// tunnelString is "encap vxlan to 192.168.77.2 identity 1000" and the like.
func (n *Names) tunnelString(r Record) string {
	name := n.Tunnel(r.Tunnel)
	words := strings.SplitN(strings.ToLower(strings.TrimPrefix(name, "TRACE_")), "_", 2)
	dir := "to"
	if words[0] == "decap" {
		dir = "from"
	}
	s := strings.Join(words, " ")
	if r.TunnelEndpoint.IsValid() {
		s += fmt.Sprintf(" %s %s", dir, r.TunnelEndpoint)
	}
	return s + fmt.Sprintf(" identity %d", r.SrcIdentity)
}

// String renders the packet summary: addresses, ports or ICMP type, TTL.
func (s Summary) String() string {
	if !s.HasIPv4 {
		return fmt.Sprintf("ethertype 0x%04x", s.EthProto)
	}
	switch {
	case s.IPProto == 1:
		return fmt.Sprintf("%s -> %s icmp type %d code %d ttl %d", s.Src, s.Dst, s.ICMPType, s.ICMPCode, s.TTL)
	case s.HasTransport:
		return fmt.Sprintf("%s:%d -> %s:%d %s ttl %d", s.Src, s.SrcPort, s.Dst, s.DstPort, protoName(s.IPProto), s.TTL)
	default:
		return fmt.Sprintf("%s -> %s %s ttl %d", s.Src, s.Dst, protoName(s.IPProto), s.TTL)
	}
}

func protoName(p uint8) string {
	switch p {
	case 6:
		return "tcp"
	case 17:
		return "udp"
	case 1:
		return "icmp"
	}
	return fmt.Sprintf("proto %d", p)
}

// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"podpath/datapath/trace"
)

// EndpointInfo is what the agent knows about an address: a pod of the node, the node
// itself, another node.
type EndpointInfo struct {
	ID        uint32
	Identity  uint32
	Namespace string
	PodName   string
	Labels    []string
}

// Resolver names the addresses and services a record mentions. The agent implements
// it from its desired state.
type Resolver interface {
	// Endpoint describes ip, ok false when nothing is known about it.
	Endpoint(ip netip.Addr) (EndpointInfo, bool)
	// Service names the service whose frontend is addr (protocol ipProto).
	Service(addr netip.AddrPort, ipProto uint8) (namespace, name string, ok bool)
}

// Cilium's monitor message types, as flow.CiliumEventType.Type carries them.
const (
	eventTypeDrop  = 1
	eventTypeTrace = 4
	// eventTypePolicyVerdict is for the policy work's verdict records.
	eventTypePolicyVerdict = 5
)

// Converter turns trace records into flows.
type Converter struct {
	Names    *trace.Names
	NodeName string
	Resolver Resolver // may be nil
	// monoToWall is wall clock minus CLOCK_MONOTONIC, in ns.
	monoToWall int64
}

// NewConverter reads the clocks once: record times are CLOCK_MONOTONIC.
func NewConverter(names *trace.Names, node string, res Resolver) *Converter {
	c := &Converter{Names: names, NodeName: node, Resolver: res}
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err == nil {
		c.monoToWall = time.Now().UnixNano() - ts.Nano()
	}
	return c
}

// Verdict maps a podpath verdict name to Hubble's: drops are DROPPED, every pass and
// redirect FORWARDED; names of the policy work (VERDICT_AUDIT..., VERDICT_DENY...)
// map by what they say.
func Verdict(name string) flowpb.Verdict {
	switch {
	case strings.Contains(name, "AUDIT"):
		return flowpb.Verdict_AUDIT
	case name == "VERDICT_DROP", strings.Contains(name, "DENY"):
		return flowpb.Verdict_DROPPED
	case name == "VERDICT_PASS", strings.HasPrefix(name, "VERDICT_REDIRECT"), strings.Contains(name, "ALLOW"):
		return flowpb.Verdict_FORWARDED
	}
	return flowpb.Verdict_VERDICT_UNKNOWN
}

// ObsPoint maps a podpath observation point to Hubble's trace observation point.
func ObsPoint(name string) flowpb.TraceObservationPoint {
	switch name {
	case "OBS_FROM_CONTAINER":
		return flowpb.TraceObservationPoint_FROM_ENDPOINT
	case "OBS_TO_CONTAINER":
		return flowpb.TraceObservationPoint_TO_ENDPOINT
	case "OBS_FROM_NETDEV":
		return flowpb.TraceObservationPoint_FROM_NETWORK
	case "OBS_TO_NETDEV":
		return flowpb.TraceObservationPoint_TO_NETWORK
	case "OBS_FROM_OVERLAY":
		return flowpb.TraceObservationPoint_FROM_OVERLAY
	}
	return flowpb.TraceObservationPoint_UNKNOWN_POINT
}

// dropReasonFor maps a podpath drop reason name; the policy work's reasons map by
// what their names say.
func dropReasonFor(name string) (flowpb.DropReason, bool) {
	if r, ok := DropReason(name); ok {
		return r, true
	}
	switch {
	case strings.Contains(name, "POLICY_DENY"), strings.Contains(name, "DENY_RULE"):
		return flowpb.DropReason_POLICY_DENY, true
	case strings.Contains(name, "POLICY"):
		return flowpb.DropReason_POLICY_DENIED, true
	}
	return flowpb.DropReason_DROP_REASON_UNKNOWN, false
}

// Flow converts one record.
func (c *Converter) Flow(r trace.Record) *flowpb.Flow {
	verdictName := c.Names.Verdict(r.Verdict)
	obsName := c.Names.ObsPoint(r.ObsPoint)
	f := &flowpb.Flow{
		Time:                  timestamppb.New(time.Unix(0, int64(r.KtimeNs)+c.monoToWall)),
		Verdict:               Verdict(verdictName),
		Type:                  flowpb.FlowType_L3_L4,
		NodeName:              c.NodeName,
		TraceObservationPoint: ObsPoint(obsName),
		Interface:             &flowpb.NetworkInterface{Index: r.Ifindex},
		EventType:             &flowpb.CiliumEventType{Type: eventTypeTrace},
	}
	var summary []string
	if f.Verdict == flowpb.Verdict_DROPPED {
		name := c.Names.DropReason(r.DropReason)
		reason, _ := dropReasonFor(name)
		f.DropReasonDesc = reason
		f.DropReason = uint32(reason)
		f.EventType = &flowpb.CiliumEventType{Type: eventTypeDrop, SubType: int32(reason)}
		summary = append(summary, "podpath "+name)
	} else {
		summary = append(summary, "podpath "+verdictName)
		if r.PassReason != 0 {
			summary = append(summary, c.Names.PassReason(r.PassReason))
		}
	}
	if strings.Contains(verdictName, "AUDIT") || strings.Contains(verdictName, "POLICY") {
		f.EventType = &flowpb.CiliumEventType{Type: eventTypePolicyVerdict}
	}
	p := r.Pkt
	if p.HasIPv4 {
		f.IP = &flowpb.IP{Source: p.Src.String(), Destination: p.Dst.String(), IpVersion: flowpb.IPVersion_IPv4}
		f.L4 = l4(p)
		f.Source = c.endpoint(p.Src)
		f.Destination = c.endpoint(p.Dst)
	}
	if r.Tunnel != 0 && r.SrcIdentity != 0 {
		if f.Source == nil {
			f.Source = &flowpb.Endpoint{}
		}
		f.Source.Identity = r.SrcIdentity
		summary = append(summary, fmt.Sprintf("%s %s", c.Names.Tunnel(r.Tunnel), r.TunnelEndpoint))
	}
	if r.LB.Action != 0 {
		c.service(f, r)
		summary = append(summary, c.Names.LBAction(r.LB.Action), c.Names.CTState(r.LB.CT))
	}
	f.Summary = strings.Join(summary, " ")
	return f
}

func l4(p trace.Summary) *flowpb.Layer4 {
	switch p.IPProto {
	case unix.IPPROTO_TCP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_TCP{TCP: &flowpb.TCP{SourcePort: uint32(p.SrcPort), DestinationPort: uint32(p.DstPort)}}}
	case unix.IPPROTO_UDP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_UDP{UDP: &flowpb.UDP{SourcePort: uint32(p.SrcPort), DestinationPort: uint32(p.DstPort)}}}
	case unix.IPPROTO_ICMP:
		return &flowpb.Layer4{Protocol: &flowpb.Layer4_ICMPv4{ICMPv4: &flowpb.ICMPv4{Type: uint32(p.ICMPType), Code: uint32(p.ICMPCode)}}}
	}
	return nil
}

func (c *Converter) endpoint(ip netip.Addr) *flowpb.Endpoint {
	if c.Resolver == nil {
		return &flowpb.Endpoint{}
	}
	e, ok := c.Resolver.Endpoint(ip)
	if !ok {
		return &flowpb.Endpoint{}
	}
	return &flowpb.Endpoint{ID: e.ID, Identity: e.Identity, Namespace: e.Namespace, PodName: e.PodName, Labels: e.Labels}
}

// service names the service of a load-balanced record and says whether it is a
// reply: conntrack's reply state, or a reverse translation.
func (c *Converter) service(f *flowpb.Flow, r trace.Record) {
	action := c.Names.LBAction(r.LB.Action)
	reverse := strings.Contains(action, "REV")
	switch ct := c.Names.CTState(r.LB.CT); {
	case ct == "TRACE_CT_REPLY" || reverse:
		f.IsReply = wrapperspb.Bool(true)
	case ct == "TRACE_CT_NEW" || ct == "TRACE_CT_ESTABLISHED":
		f.IsReply = wrapperspb.Bool(false)
	}
	if c.Resolver == nil {
		return
	}
	frontend, dst := r.LB.OrigDst, true
	if reverse {
		frontend, dst = netip.AddrPortFrom(r.Pkt.Src, r.Pkt.SrcPort), false
	}
	ns, name, ok := c.Resolver.Service(frontend, r.Pkt.IPProto)
	if !ok {
		return
	}
	if dst {
		f.DestinationService = &flowpb.Service{Name: name, Namespace: ns}
	} else {
		f.SourceService = &flowpb.Service{Name: name, Namespace: ns}
	}
}

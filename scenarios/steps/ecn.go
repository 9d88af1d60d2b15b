// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"podpath/datapath/config"
	"podpath/internal/capture"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[tunnelECNWith, none]{
		Name: "tunnel-ecn",
		Summary: "Geneve frames from a peer node's address whose outer IPv4 carries ECN CE (RFC 6040 decapsulation): " +
			"an ECT(0) inner packet reaches the pod marked CE with its DSCP kept, an ECT(0) outer leaves the inner ECN as it was, " +
			"a not-ECT inner packet is dropped with DROP_TUNNEL_ECN and reaches no pod",
		Agents: true,
		Run:    runTunnelECN,
	})
}

type tunnelECNWith struct {
	From  scenarios.MemberRef `json:"from" required:"true" doc:"the host that sends the crafted frames: a client (not a node) on the segment of via's internal interface"`
	Via   scenarios.NodeRef   `json:"via" required:"true" doc:"the node that decapsulates"`
	Pod   scenarios.PodRef    `json:"pod" doc:"the inner destination, a pod of via (default: via's first pod)"`
	Peer  scenarios.NodeRef   `json:"peer" doc:"the node whose address is the outer source (default: the first other node)"`
	Label string              `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

func (w *tunnelECNWith) Validate(e strictyaml.FieldErrors) {
	if node := scenarios.DecodingStage(e).PodNode(w.Pod); w.Pod != "" && node != "" && node != string(w.Via) {
		e.Add("pod", "pod %s is on %s: want a pod of via %s", w.Pod, node, w.Via)
	}
	if w.Peer != "" && w.Peer == w.Via {
		e.Add("peer", "want a node other than via %s", w.Via)
	}
}

// ECN codepoints (RFC 3168) and the DSCP the crafted inner packets carry (EF, 46),
// which decapsulation must leave alone.
const (
	ecnNotECT = 0x00
	ecnECT0   = 0x02
	ecnCE     = 0x03
	ecnDSCP   = 46 << 2
)

// ecnCase is one crafted frame: its outer and inner ECN, and what RFC 6040 section
// 4.2 says the pod sees (wantTOS) or that it is dropped (drop).
type ecnCase struct {
	name            string
	outerECN, inner uint8
	wantTOS         uint8
	drop            bool
	idOffset        uint16
}

var ecnCases = []ecnCase{
	{name: "outer CE, inner ECT(0)", outerECN: ecnCE, inner: ecnDSCP | ecnECT0, wantTOS: ecnDSCP | ecnCE, idOffset: 0},
	{name: "outer ECT(0), inner ECT(0)", outerECN: ecnECT0, inner: ecnDSCP | ecnECT0, wantTOS: ecnDSCP | ecnECT0, idOffset: 1},
	{name: "outer CE, inner not-ECT", outerECN: ecnCE, inner: ecnDSCP | ecnNotECT, drop: true, idOffset: 2},
}

// runTunnelECN sends, from a host on via's segment with a peer node's address as the
// outer source (the legitimate tunnel frame a peer sends, save the outer ECN), Geneve
// frames to a pod of via and reads on the pod's eth0 what decapsulation made of the
// inner ECN field; the dropped frame is looked up in via's trace records.
func runTunnelECN(ctx context.Context, s *scenarios.Stage, w tunnelECNWith, _ none) error {
	c := effectiveConfig(s)
	if c.RoutingMode != config.RoutingTunnel || c.TunnelProtocol != config.TunnelGeneve {
		return fmt.Errorf("tunnel-ecn: the stage's config is routing %s, tunnel %s: want Geneve tunnelling (RFC 6040 decapsulation is the Geneve path's)", c.RoutingMode, c.TunnelProtocol)
	}
	env, err := forgedEnvOf(ctx, s, forgedWith{From: w.From, Via: w.Via, Pod: w.Pod, Peer: w.Peer})
	if err != nil {
		return err
	}
	t := s.T
	restore, err := bridgeAsWire(s, env.viaIf.Segment)
	if err != nil {
		return err
	}
	defer restore()
	pm, err := t.Member(env.dst.Name)
	if err != nil {
		return err
	}
	vm, err := t.Member(env.via.Name)
	if err != nil {
		return err
	}
	podPoint := capture.Point{Member: env.dst.Name, Interface: "eth0", NsPath: pm.NsPath}
	nodePoint := capture.Point{Member: env.via.Name, Interface: env.viaIf.Name, NsPath: vm.NsPath}
	session, err := capture.Start(filepath.Join(s.Artifacts, "tunnel-ecn"), podPoint, nodePoint)
	if err != nil {
		return err
	}
	defer session.Stop()
	traces, err := s.OpenTraces(t, env.via.Name)
	if err != nil {
		return err
	}
	defer traces.Close()
	if err := traces.Reset(); err != nil {
		return err
	}

	const base = 0x6e00
	frames := make([][]byte, len(ecnCases))
	for i, k := range ecnCases {
		if frames[i], err = env.ecnFrame(k, base+k.idOffset); err != nil {
			return err
		}
	}
	// The dropped case first (three times), then the delivered ones: their arrival
	// bounds the wait for the dropped one, which went first along the same path.
	var inject [][]byte
	for i, k := range ecnCases {
		if k.drop {
			inject = append(inject, frames[i], frames[i], frames[i])
		}
	}
	for i, k := range ecnCases {
		if !k.drop {
			inject = append(inject, frames[i])
		}
	}
	if err := probe.Inject(env.attackerNs, env.attacker.Name, inject...); err != nil {
		return err
	}
	for _, k := range ecnCases {
		if !k.drop {
			waitAny(ctx, session, []capture.Point{podPoint}, ipv4ID(base+k.idOffset), 3*time.Second)
		}
	}
	time.Sleep(200 * time.Millisecond)
	if err := session.Stop(); err != nil {
		return err
	}
	if err := traces.Collect(); err != nil {
		return err
	}

	label := s.Label(w.Label)
	prefix := ""
	if label != "" {
		prefix = label + ": "
	}
	where := fmt.Sprintf("%s/eth0 capture (pcap %s)", env.dst.Name, session.PcapPath(env.dst.Name, "eth0"))
	for i, k := range ecnCases {
		id := base + k.idOffset
		what := fmt.Sprintf("%sECN decap: Geneve %s (TOS %#02x) from %s's address to %s", prefix, k.name, k.inner, env.peer.Name, env.dst.Name)
		arrivedErr := error(nil)
		if len(session.Packets(nodePoint.Member, nodePoint.Interface, sameBytes(frames[i]))) == 0 {
			arrivedErr = fmt.Errorf("the crafted frame never reached %s (dropped on the underlay before the node); seen there:\n%s",
				nodePoint, summaries(session.Packets(nodePoint.Member, nodePoint.Interface, nil)))
		}
		got := session.Packets(env.dst.Name, "eth0", ipv4ID(id))
		if k.drop {
			derr := arrivedErr
			if derr == nil {
				derr = expectForgedDrop(traces, env.via.Name, forgedKind{reason: "DROP_TUNNEL_ECN", point: "OBS_FROM_NETDEV"}, id)
			}
			s.Check(what+": dropped at OBS_FROM_NETDEV with DROP_TUNNEL_ECN (RFC 6040 4.2)",
				fmt.Sprintf("the frame arriving on %s; %s trace records (IPv4 ID %#x)", nodePoint, env.via.Name, id), derr)
			var reached error
			if len(got) > 0 {
				reached = fmt.Errorf("%d packet(s) with IPv4 ID %#x reached %s/eth0: first %s", len(got), id, env.dst.Name, got[0].Summary())
			}
			s.Check(what+": with outer CE and a not-ECT inner, reaches no pod", where, reached)
			continue
		}
		s.Check(fmt.Sprintf("%s: the inner IPv4 arrives with TOS %#02x (ECN %s, DSCP %d kept), header checksum valid", what, k.wantTOS, ecnName(k.wantTOS), k.wantTOS>>2),
			where+": TOS byte and RFC 1071 sum of the inner IPv4 header", errors.Join(arrivedErr, innerTOSErr(got, id, k.wantTOS, env.dst)))
	}
	return nil
}

// ecnFrame is a Geneve frame from the peer node's address to via, outer TOS the case's
// ECN, carrying an ICMP echo request from the peer's pod to the destination pod with
// the case's inner TOS; both IPv4 IDs are id.
func (env *forgedEnv) ecnFrame(k ecnCase, id uint16) ([]byte, error) {
	inner, err := probe.ICMPEchoRequest(probe.L2{Src: env.source.MAC, Dst: env.dst.HostMAC},
		probe.IPv4Fields{Src: env.source.IP, Dst: env.dst.IP, ID: id, TOS: k.inner}, id, 1)
	if err != nil {
		return nil, err
	}
	outer := probe.Outer{L2: probe.L2{Src: env.attacker.MAC, Dst: env.viaIf.MAC},
		IP:    probe.IPv4Fields{Src: env.peer.InternalIP, Dst: env.via.InternalIP, ID: id, TOS: k.outerECN},
		Sport: 40000 + id%1000, Dport: env.tunnelPort["geneve"]}
	return probe.Geneve(outer, probe.GeneveHeader{VNI: env.identity}, inner)
}

// innerTOSErr wants the packets marked id on the pod's eth0 to carry TOS want and a
// valid IPv4 header checksum.
func innerTOSErr(pkts []capture.Packet, id uint16, want uint8, pod topology.Pod) error {
	if len(pkts) == 0 {
		return fmt.Errorf("no packet with IPv4 ID %#x reached %s/eth0 within 3s", id, pod.Name)
	}
	var errs []error
	for _, p := range pkts {
		ip, ok := parseIPv4Frame(p.Data)
		if !ok {
			errs = append(errs, fmt.Errorf("not IPv4: %s", p.Summary()))
			continue
		}
		if ip.dst != pod.IP {
			continue
		}
		if got := ip.hdr[1]; got != want {
			errs = append(errs, fmt.Errorf("TOS %#02x (ECN %s, DSCP %d), want %#02x (ECN %s, DSCP %d): %s",
				got, ecnName(got), got>>2, want, ecnName(want), want>>2, p.Summary()))
		}
		errs = append(errs, ip.headerChecksumErr())
	}
	return firstErrs(errs)
}

// ecnName names the ECN field of a TOS byte.
func ecnName(tos uint8) string {
	return [...]string{"not-ECT", "ECT(1)", "ECT(0)", "CE"}[tos&3]
}

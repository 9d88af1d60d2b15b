// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"podpath/topology"
	"regexp"
	"strconv"
	"strings"
	"time"

	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[hubbleWith, none]{
		Name: "hubble-observe",
		Summary: "restart a node's agent serving Hubble and metrics, send pod-to-pod pings and spoofed frames, then the " +
			"stock hubble CLI (hubble observe -o json on the agent's unix socket, in the node's namespace) must show the " +
			"pings FORWARDED between the right pods and the spoofed frames DROPPED with their reason, and the metrics " +
			"endpoint's drop counter must rise by exactly the frames sent",
		Agents: true,
		With:   hubbleWith{Pings: 3, Drops: 4},
		Run:    runHubbleObserve,
	})
}

type hubbleWith struct {
	Via   scenarios.NodeRef   `json:"via" required:"true" doc:"the node whose agent serves Hubble and metrics"`
	From  scenarios.PodRef    `json:"from" required:"true" doc:"a pod of via that pings to"`
	To    scenarios.PodRef    `json:"to" required:"true" doc:"another pod of via"`
	Ext   scenarios.MemberRef `json:"ext" required:"true" doc:"a host (no node) on via's segment that sends the spoofed frames (spoofed-local-pod: from's address to to)"`
	Pings int                 `json:"pings" doc:"echo requests from -> to"`
	Drops int                 `json:"drops" doc:"spoofed frames sent"`
	// PolicyDenied datagrams go from -> DeniedAddr after the other checks: the stage's
	// policies must deny that egress with a deny rule (egressDeny), so Hubble shows
	// them DROPPED with POLICY_DENY.
	PolicyDenied int    `json:"policyDenied" doc:"UDP datagrams from -> deniedAddr that the stage's egressDeny policy must drop (0: none sent)"`
	DeniedAddr   string `json:"deniedAddr" doc:"address:port where the policy-denied datagrams go (default 192.0.2.1:9, TEST-NET-1)"`
}

func (w *hubbleWith) Validate(e strictyaml.FieldErrors) {
	st := scenarios.CheckableStage(e)
	if st == nil {
		return
	}
	if a, b := st.PodNode(w.From), st.PodNode(w.To); a != b || a != string(w.Via) || w.From == w.To {
		e.Add("to", "%q (on %s) and %q (on %s): want two pods of %s", w.From, a, w.To, b, w.Via)
	}
}

// hubbleBinary finds the stock hubble CLI: $HUBBLE, bin/hubble beside the running
// executable, or $PATH.
func hubbleBinary() (string, error) {
	if p := os.Getenv("HUBBLE"); p != "" {
		return p, nil
	}
	if self, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(self), "hubble"); fileExists(p) {
			return p, nil
		}
	}
	if p, err := exec.LookPath("hubble"); err == nil {
		return p, nil
	}
	return "", errors.New("hubble CLI not found: `make hubble` builds bin/hubble (or set HUBBLE)")
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// hubbleFlow is the part of a flow of `hubble observe -o json` the checks read.
type hubbleFlow struct {
	Verdict        string `json:"verdict"`
	DropReasonDesc string `json:"drop_reason_desc"`
	NodeName       string `json:"node_name"`
	IP             struct {
		Source      string `json:"source"`
		Destination string `json:"destination"`
	} `json:"IP"`
	L4 struct {
		ICMPv4 *struct {
			Type int `json:"type"`
		} `json:"ICMPv4"`
	} `json:"l4"`
	Source struct {
		PodName  string `json:"pod_name"`
		Identity uint32 `json:"identity"`
	} `json:"source"`
	Destination struct {
		PodName  string `json:"pod_name"`
		Identity uint32 `json:"identity"`
	} `json:"destination"`
	TraceObservationPoint string `json:"trace_observation_point"`
	Summary               string `json:"Summary"`
	// EventType 5 is a policy verdict (Cilium's CiliumEventType), beside the trace
	// event of the same packet.
	EventType struct {
		Type int `json:"type"`
	} `json:"event_type"`
}

func (f hubbleFlow) String() string {
	return fmt.Sprintf("%s %s %s(%s) -> %s(%s) %s %s", f.TraceObservationPoint, f.Verdict, f.IP.Source, f.Source.PodName,
		f.IP.Destination, f.Destination.PodName, f.DropReasonDesc, f.Summary)
}

// hubbleObserve runs `hubble observe --server unix://SOCK -o json ARGS` in node's
// namespace and parses every flow it prints.
func hubbleObserve(ctx context.Context, s *scenarios.Stage, node, sock string, args ...string) ([]hubbleFlow, string, error) {
	bin, err := hubbleBinary()
	if err != nil {
		return nil, "", err
	}
	argv := append([]string{bin, "observe", "--server", "unix://" + sock, "-o", "json"}, args...)
	out, err := probe.Exec(ctx, s.T, 10*time.Second, node, argv...)
	cmdline := strings.Join(argv[1:], " ")
	if err != nil {
		return nil, cmdline, fmt.Errorf("%s: %w\n%s", cmdline, err, out)
	}
	var flows []hubbleFlow
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Flow *hubbleFlow `json:"flow"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			return nil, cmdline, fmt.Errorf("%s: line %q: %w", cmdline, sc.Text(), err)
		}
		if line.Flow != nil {
			flows = append(flows, *line.Flow)
		}
	}
	return flows, cmdline, nil
}

// scrapeDrops reads podpath_drop_count_total{reason=...} from the agent's metrics
// with curl in node's namespace (0 when the series does not exist yet).
func scrapeDrops(ctx context.Context, s *scenarios.Stage, node, addr, reason string) (float64, string, error) {
	url := "http://" + addr + "/metrics"
	out, err := probe.Exec(ctx, s.T, 5*time.Second, node, "curl", "-sS", "--max-time", "4", url)
	if err != nil {
		return 0, url, fmt.Errorf("curl %s: %w\n%s", url, err, out)
	}
	re := regexp.MustCompile(`(?m)^podpath_drop_count_total\{reason="` + regexp.QuoteMeta(reason) + `"\} (\S+)$`)
	m := re.FindSubmatch(out)
	if m == nil {
		if !bytes.Contains(out, []byte("podpath_forward_count_total")) {
			return 0, url, fmt.Errorf("curl %s: no podpath metrics in\n%s", url, out)
		}
		return 0, url, nil
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	return v, url, err
}

func runHubbleObserve(ctx context.Context, s *scenarios.Stage, w hubbleWith, _ none) error {
	t := s.T
	via, err := t.Node(string(w.Via))
	if err != nil {
		return err
	}
	from, _ := t.Pod(string(w.From))
	to, _ := t.Pod(string(w.To))
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	sock := filepath.Join(t.Dir(), "agents", via.Name, "hubble.sock")
	metricsAddr := netip.AddrPortFrom(via.InternalIP, 9962).String()
	s.Progress("restarting %s's agent with --hubble-socket %s --metrics-addr %s", via.Name, sock, metricsAddr)
	agents.SetArgs(via.Name, "--hubble-socket", sock, "--metrics-addr", metricsAddr)
	if err := agents.Restart(ctx, via.Name, "", false); err != nil {
		return err
	}
	defer func() {
		// Back to an agent that leaves the trace ring buffer to the harness.
		agents.SetArgs(via.Name)
		if err := agents.Restart(context.WithoutCancel(ctx), via.Name, "", false); err != nil {
			s.Progress("restarting %s's agent without Hubble: %v", via.Name, err)
		}
	}()
	st, err := agents.Client(via.Name).Status(ctx)
	s.Check("hubble: podpath-agent status names the Hubble socket and the metrics address", "podpath-agent status of "+via.Name,
		errors.Join(err, expectEqual("hubble socket", sock, st.Hubble), expectEqual("metrics address", metricsAddr, st.Metrics)))
	const reason = "DROP_SPOOFED_SOURCE"
	before, url, err := scrapeDrops(ctx, s, via.Name, metricsAddr, reason)
	if err != nil {
		return err
	}

	// Pings from -> to, then spoofed frames: from's address, from the wire.
	lost, out, err := probe.PingLoss(ctx, t, from.Name, to.IP, w.Pings, 200*time.Millisecond)
	if err == nil && lost != 0 {
		err = fmt.Errorf("%d of %d echo requests unanswered:\n%s", lost, w.Pings, out)
	}
	s.Check(fmt.Sprintf("hubble: %d pings %s -> %s answered", w.Pings, from.Name, to.Name), from.Name+" ping", err)
	env, err := forgedEnvOf(ctx, s, forgedWith{From: w.Ext, Via: w.Via, Pod: w.To})
	if err != nil {
		return err
	}
	env.local = from
	restore, err := bridgeAsWire(s, env.viaIf.Segment)
	if err != nil {
		return err
	}
	defer restore()
	var frames [][]byte
	for i := range w.Drops {
		f, _, _, err := env.frames("spoofed-local-pod", forgedKinds["spoofed-local-pod"], uint16(0x6b00+2*i))
		if err != nil {
			return err
		}
		frames = append(frames, f)
	}
	if err := probe.Inject(env.attackerNs, env.attacker.Name, frames...); err != nil {
		return err
	}

	// The CLI, as an operator runs it: every flow the server holds.
	var flows []hubbleFlow
	var cmdline string
	isDrop := func(f hubbleFlow) bool {
		return f.Verdict == "DROPPED" && f.IP.Source == from.IP.String() && f.IP.Destination == to.IP.String()
	}
	count := func(fs []hubbleFlow, match func(hubbleFlow) bool) int {
		n := 0
		for _, f := range fs {
			if match(f) {
				n++
			}
		}
		return n
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		flows, cmdline, err = hubbleObserve(ctx, s, via.Name, sock, "--last", "4000")
		if err != nil || count(flows, isDrop) >= w.Drops || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	evidence := func(fs []hubbleFlow) string {
		var b strings.Builder
		for _, f := range fs[max(0, len(fs)-15):] {
			b.WriteString("  " + f.String() + "\n")
		}
		return fmt.Sprintf("%d flows, the last:\n%s", len(fs), b.String())
	}
	fwd := count(flows, func(f hubbleFlow) bool {
		return f.Verdict == "FORWARDED" && f.EventType.Type != 5 && f.L4.ICMPv4 != nil && f.L4.ICMPv4.Type == 8 && f.TraceObservationPoint == "FROM_ENDPOINT" &&
			f.Source.PodName == from.Name && f.Destination.PodName == to.Name && f.IP.Source == from.IP.String() && f.NodeName == via.Name
	})
	err = nil
	if fwd != w.Pings {
		err = fmt.Errorf("want %d echo requests FORWARDED at FROM_ENDPOINT from pod %s to pod %s, got %d; %s", w.Pings, from.Name, to.Name, fwd, evidence(flows))
	}
	s.Check(fmt.Sprintf("hubble: observe shows the %d echo requests %s -> %s FORWARDED with both pods named", w.Pings, from.Name, to.Name), cmdline, err)
	drops := count(flows, isDrop)
	wrong := count(flows, func(f hubbleFlow) bool { return isDrop(f) && f.DropReasonDesc != "INVALID_SOURCE_IP" })
	err = nil
	if drops != w.Drops || wrong != 0 {
		err = fmt.Errorf("want %d flows %s -> %s DROPPED with INVALID_SOURCE_IP (podpath %s), got %d dropped, %d with another reason; %s",
			w.Drops, from.IP, to.IP, reason, drops, wrong, evidence(flows))
	}
	s.Check(fmt.Sprintf("hubble: observe shows the %d spoofed frames DROPPED, reason INVALID_SOURCE_IP", w.Drops), cmdline, err)

	// The CLI's filters: --verdict DROPPED and --from-pod.
	dropped, cmdline, err := hubbleObserve(ctx, s, via.Name, sock, "--last", "4000", "--verdict", "DROPPED", "--from-ip", from.IP.String())
	if err == nil && (len(dropped) != w.Drops || count(dropped, isDrop) != w.Drops) {
		err = fmt.Errorf("want exactly the %d spoofed frames, got %s", w.Drops, evidence(dropped))
	}
	s.Check("hubble: observe --verdict DROPPED --from-ip filters to the spoofed frames only", cmdline, err)
	fromPod, cmdline, err := hubbleObserve(ctx, s, via.Name, sock, "--last", "4000", "--from-pod", "default/"+from.Name, "--protocol", "icmp")
	if err == nil {
		if n := count(fromPod, func(f hubbleFlow) bool { return f.Source.PodName != from.Name }); n != 0 || len(fromPod) == 0 {
			err = fmt.Errorf("want only flows from pod %s (at least one), got %s", from.Name, evidence(fromPod))
		}
	}
	s.Check("hubble: observe --from-pod --protocol icmp filters to the pod's flows", cmdline, err)

	// ServerStatus through the CLI: the ring holds what observe printed, out of the
	// capacity the agent was started with (4095, Cilium's default).
	bin, err := hubbleBinary()
	if err != nil {
		return err
	}
	statusOut, err := probe.Exec(ctx, t, 10*time.Second, via.Name, bin, "status", "--server", "unix://"+sock, "-o", "json")
	if err == nil {
		var st struct {
			NumFlows  string `json:"num_flows"`
			MaxFlows  string `json:"max_flows"`
			SeenFlows string `json:"seen_flows"`
		}
		if jerr := json.Unmarshal(statusOut, &st); jerr != nil {
			err = fmt.Errorf("hubble status: %w\n%s", jerr, statusOut)
		} else if n, _ := strconv.Atoi(st.NumFlows); st.MaxFlows != "4095" || n < len(flows) {
			err = fmt.Errorf("want max_flows 4095 and num_flows >= the %d flows observe printed, got %s", len(flows), statusOut)
		}
	}
	s.Check("hubble: hubble status reports the flow ring (ServerStatus)", "hubble status --server unix://"+sock, err)

	eps, err := agents.Client(via.Name).EndpointList(ctx)
	if err != nil {
		return err
	}
	var identity uint32
	for _, ep := range eps {
		if ep.Name == to.Name {
			identity = ep.Identity
		}
	}
	toID, cmdline, err := hubbleObserve(ctx, s, via.Name, sock, "--last", "4000", "--to-identity", strconv.FormatUint(uint64(identity), 10), "--verdict", "FORWARDED")
	if err == nil {
		// Identities come from labels: pods with the same labels share one, so the
		// filter is right when every flow it returns goes to that identity, and the
		// pings to the pod are among them.
		other := count(toID, func(f hubbleFlow) bool { return f.Destination.Identity != identity })
		toPod := len(toID) - count(toID, func(f hubbleFlow) bool { return f.Destination.PodName != to.Name })
		if other != 0 || toPod < w.Pings {
			err = fmt.Errorf("want only FORWARDED flows to identity %d, at least %d of them to pod %s; got %d to other identities, %d to the pod: %s",
				identity, w.Pings, to.Name, other, toPod, evidence(toID))
		}
	}
	s.Check("hubble: observe --to-identity filters to the destination pod's identity", cmdline, err)

	after, _, err := scrapeDrops(ctx, s, via.Name, metricsAddr, reason)
	if err == nil && after-before != float64(w.Drops) {
		err = fmt.Errorf("podpath_drop_count_total{reason=%q} went %v -> %v: +%v, want +%d", reason, before, after, after-before, w.Drops)
	}
	s.Check(fmt.Sprintf("hubble: metrics drop counter for %s rises by exactly the %d frames sent", reason, w.Drops), "curl "+url, err)
	if w.PolicyDenied > 0 {
		policyDeniedFlows(ctx, s, w, via.Name, sock, from, evidence)
	}
	return nil
}

// policyDeniedFlows sends w.PolicyDenied UDP datagrams from -> w.DeniedAddr, which the
// stage's egressDeny rule drops at from-container, and wants hubble observe to show each
// DROPPED with Hubble's POLICY_DENY (a deny rule; POLICY_DENIED is default deny).
func policyDeniedFlows(ctx context.Context, s *scenarios.Stage, w hubbleWith, via, sock string, from topology.Pod, evidence func([]hubbleFlow) string) {
	dst, serr := netip.ParseAddrPort(cmp.Or(w.DeniedAddr, "192.0.2.1:9"))
	if serr != nil {
		serr = fmt.Errorf("with.deniedAddr: %w", serr)
	}
	for i := 0; i < w.PolicyDenied && serr == nil; i++ {
		serr = s.T.Do(string(w.From), func() error {
			c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write([]byte("podpath policy-denied probe"))
			return err
		})
	}
	var flows []hubbleFlow
	cmdline := ""
	err := serr
	isDenied := func(f hubbleFlow) bool {
		return f.Verdict == "DROPPED" && f.IP.Source == from.IP.String() && f.IP.Destination == dst.Addr().String()
	}
	deadline := time.Now().Add(5 * time.Second)
	for err == nil {
		flows, cmdline, err = hubbleObserve(ctx, s, via, sock, "--last", "4000", "--verdict", "DROPPED", "--to-ip", dst.Addr().String())
		n := 0
		for _, f := range flows {
			if isDenied(f) {
				n++
			}
		}
		if err != nil || n >= w.PolicyDenied || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err == nil {
		denied, wrong := 0, 0
		for _, f := range flows {
			if isDenied(f) {
				denied++
				if f.DropReasonDesc != "POLICY_DENY" || f.Source.PodName != from.Name {
					wrong++
				}
			}
		}
		if denied != w.PolicyDenied || wrong != 0 {
			err = fmt.Errorf("want %d flows %s -> %s DROPPED with POLICY_DENY from pod %s, got %d dropped, %d with another reason or pod; %s",
				w.PolicyDenied, from.IP, dst, from.Name, denied, wrong, evidence(flows))
		}
	}
	s.Check(fmt.Sprintf("hubble: observe shows the %d datagrams the egressDeny policy refused DROPPED, reason POLICY_DENY, from pod %s", w.PolicyDenied, from.Name),
		cmdline, err)
}

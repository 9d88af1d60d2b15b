// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"

	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/impair"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[tcpUnderLossWith, tcpUnderLossExpect]{
		Name: "tcp-under-loss",
		Summary: "iperf3 between two pods, first on clean links, then with one topology link losing (and " +
			"optionally duplicating) packets at a seeded rate (the harness's tc program on the link's bridge " +
			"port: this kernel has no netem): the impairment really happened at the rate asked, and TCP keeps " +
			"going at a share of the clean throughput (reported as a ratio)",
		Agents: true,
		Run:    runTCPUnderLoss,
	})
}

type tcpUnderLossWith struct {
	From      scenarios.PodRef `json:"from" required:"true" doc:"the iperf3 client"`
	To        scenarios.PodRef `json:"to" required:"true" doc:"the iperf3 server"`
	Link      string           `json:"link" required:"true" doc:"member/interface of the topology link to impair (both directions), e.g. node2/eth0"`
	Loss      string           `json:"loss" doc:"share of packets lost, e.g. 1% (default 1%)"`
	Duplicate string           `json:"duplicate" doc:"share of packets doubled, e.g. 0.5% (default 0%)"`
	Seed      uint64           `json:"seed" doc:"the generator's seed: the same seed and packet sequence give the same decisions (default 1)"`
	Seconds   int              `json:"seconds" range:"1..30" doc:"length of each iperf3 run (default 3)"`
	Label     string           `json:"label" doc:"prefix of the check names (default: the stage's name)"`
}

type tcpUnderLossExpect struct {
	MinRatio float64 `json:"minRatio" range:"0..1" doc:"impaired / clean throughput at least this (default 0.05: TCP must not collapse)"`
}

func (w *tcpUnderLossWith) Validate(e strictyaml.FieldErrors) {
	for field, v := range map[string]string{"loss": w.Loss, "duplicate": w.Duplicate} {
		if v == "" {
			continue
		}
		if _, err := parsePPM(v); err != nil {
			e.Add(field, "%v", err)
		}
	}
	if !strings.Contains(w.Link, "/") {
		e.Add("link", "%q is not member/interface", w.Link)
	}
}

// parsePPM reads "1%" or "0.25%" as parts per million.
func parsePPM(s string) (uint32, error) {
	v, ok := strings.CutSuffix(strings.TrimSpace(s), "%")
	f, err := strconv.ParseFloat(v, 64)
	if !ok || err != nil || f < 0 || f > 100 {
		return 0, fmt.Errorf("%q is not a percentage from 0%% to 100%%", s)
	}
	return uint32(f * 10_000), nil
}

func runTCPUnderLoss(ctx context.Context, s *scenarios.Stage, w tcpUnderLossWith, e tcpUnderLossExpect) error {
	t, label := s.T, s.Label(w.Label)
	loss, _ := parsePPM(cmp.Or(w.Loss, "1%"))
	dup, _ := parsePPM(cmp.Or(w.Duplicate, "0%"))
	secs := cmp.Or(w.Seconds, 3)
	minRatio := cmp.Or(e.MinRatio, 0.05)
	member, ifname, _ := strings.Cut(w.Link, "/")
	ifs, err := t.Interfaces(member)
	if err != nil {
		return err
	}
	var segment, port string
	for _, ifc := range ifs {
		if ifc.Name == ifname {
			segment, port = ifc.Segment, ifc.Peer
		}
	}
	if segment == "" || port == "" {
		return fmt.Errorf("with.link %s: no interface of %s on a segment", w.Link, member)
	}
	to, _ := t.Pod(string(w.To))
	// TCP in a pod builds GSO super-packets that cross veths whole; one GSO segment per
	// packet makes every packet the impairment sees a wire packet, so "1%" means 1% of
	// segments. Both runs use it, so the ratio compares like with like.
	restore, err := oneSegmentPerPacket(s, string(w.From), string(w.To))
	if err != nil {
		return err
	}
	defer restore()

	clean, cerr := probe.IPerf3(ctx, t, string(w.From), string(w.To), to.IP, secs)
	var imp *impair.Link
	if err := t.Do(segment, func() error {
		var err error
		imp, err = impair.Attach(port, impair.Spec{LossPPM: loss, DupPPM: dup, Seed: cmp.Or(w.Seed, 1)})
		return err
	}); err != nil {
		return err
	}
	lossy, lerr := probe.IPerf3(ctx, t, string(w.From), string(w.To), to.IP, secs)
	st, serr := imp.Stats()
	if err := imp.Close(); err != nil {
		return err
	}
	where := fmt.Sprintf("%s's bridge port %s in segment %s: the impairment's counters", w.Link, port, segment)
	var ierr error
	switch {
	case serr != nil:
		ierr = serr
	case st.Packets < 1000:
		ierr = fmt.Errorf("only %d packets crossed %s during the impaired run: the stream did not use that link", st.Packets, w.Link)
	default:
		got := float64(st.Lost) / float64(st.Packets) * 1e6
		if got < 0.5*float64(loss) || got > 1.5*float64(loss) {
			ierr = fmt.Errorf("lost %d of %d packets (%.0f ppm), asked %d ppm", st.Lost, st.Packets, got, loss)
		}
		if st.GSO > st.Packets/100 {
			ierr = errors.Join(ierr, fmt.Errorf("%d of %d packets were GSO super-packets: the rate is not per wire packet", st.GSO, st.Packets))
		}
	}
	s.Check(fmt.Sprintf("%s: %s loses %s of the packets crossing it, seed %d (%d of %d lost, %d duplicated)",
		label, w.Link, cmp.Or(w.Loss, "1%"), cmp.Or(w.Seed, 1), st.Lost, st.Packets, st.Duplicated), where, ierr)

	ratio := 0.0
	if clean.BitsPerSecond > 0 {
		ratio = lossy.BitsPerSecond / clean.BitsPerSecond
	}
	terr := errors.Join(cerr, lerr)
	if terr == nil && ratio < minRatio {
		terr = fmt.Errorf("impaired %.3f Gbit/s is %.2f of the clean %.3f Gbit/s, want at least %.2f", lossy.Gbps(), ratio, clean.Gbps(), minRatio)
	}
	if terr == nil && st.Lost > 0 && lossy.Retransmits == 0 {
		terr = fmt.Errorf("%d packets lost but iperf3 reports no retransmission", st.Lost)
	}
	s.Check(fmt.Sprintf("%s: TCP %s -> %s under %s loss on %s keeps %.2f of its clean throughput (%.2f -> %.2f Gbit/s, %d retransmits)",
		label, w.From, w.To, cmp.Or(w.Loss, "1%"), w.Link, ratio, clean.Gbps(), lossy.Gbps(), lossy.Retransmits),
		"iperf3 -J, clean then impaired", terr)
	return nil
}

// oneSegmentPerPacket sets gso_max_segs 1 on the pods' eth0 and returns the undo.
func oneSegmentPerPacket(s *scenarios.Stage, pods ...string) (func(), error) {
	var undo []func()
	restore := func() {
		for _, u := range undo {
			u()
		}
	}
	for _, pod := range pods {
		var old uint32
		err := s.T.Do(pod, func() error {
			l, err := netlink.LinkByName("eth0")
			if err != nil {
				return err
			}
			old = l.Attrs().GSOMaxSegs
			return netlink.LinkSetGSOMaxSegs(l, 1)
		})
		if err != nil {
			restore()
			return nil, fmt.Errorf("gso_max_segs 1 on %s/eth0: %w", pod, err)
		}
		pod := pod
		undo = append(undo, func() {
			_ = s.T.Do(pod, func() error {
				l, err := netlink.LinkByName("eth0")
				if err != nil {
					return err
				}
				return netlink.LinkSetGSOMaxSegs(l, int(old))
			})
		})
	}
	return restore, nil
}

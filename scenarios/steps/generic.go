// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"podpath/scenarios"
	"podpath/scenarios/probe"
	"podpath/topology"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[matrixWith, none]{
		Name:    "connectivity-matrix",
		Summary: "every pod reaches every other pod: one check per protocol over all ordered pod pairs",
		With:    matrixWith{Protocols: probeProtocols},
		Run:     runConnectivityMatrix,
	})
	scenarios.RegisterStep(scenarios.StepDef[none, nodePairMTUExpect]{
		Name: "node-pair-mtu",
		Summary: "between the first pods of every pair of nodes: DF packets of the path MTU from the topology cross, one " +
			"byte more is refused naming that MTU (ICMP frag-needed from where the path narrows, or the sender's kernel)",
		Run: runNodePairMTU,
	})
}

type matrixWith struct {
	Protocols []probe.Protocol `json:"protocols" doc:"the probes"`
}

func runConnectivityMatrix(ctx context.Context, s *scenarios.Stage, w matrixWith, _ none) error {
	pods := s.T.Pods()
	for _, p := range w.Protocols {
		var errs []error
		pairs := 0
		for _, a := range pods {
			for _, b := range pods {
				if a.Name == b.Name {
					continue
				}
				pairs++
				if err := probe.Exchange(ctx, s.T, p, a.Name, b.Name); err != nil {
					errs = append(errs, err)
				}
			}
		}
		s.Check(fmt.Sprintf("connectivity matrix: %s between all %d ordered pod pairs", p, pairs),
			"the answer of the echo server (or ping) in every destination pod", errors.Join(errs...))
	}
	return nil
}

type nodePairMTUExpect struct {
	MTU int `json:"mtu" range:"0..65535" doc:"the path MTU of every pair (default: each pair's from the topology: the smallest link MTU on the way, less the tunnel overhead in tunnel mode, capped by the cilium-config's mtu key)"`
}

// runNodePairMTU sweeps between the first pods of every pair of nodes. The expected path
// MTU comes from the topology (topology.Oracle), never from the agents: DF packets of
// the path MTU must cross, and one byte more (over the largest MTU of the ECMP
// alternatives) must be refused naming the path's MTU, by ICMP frag-needed from the
// host where the path narrows or by the sender's own kernel. Without encapsulation a
// router's frag-needed is path MTU discovery working: a pass.
func runNodePairMTU(ctx context.Context, s *scenarios.Stage, _ none, e nodePairMTUExpect) error {
	t := s.T
	oracle, how, err := stageOracle(s)
	if err != nil {
		return err
	}
	cfgMTU := configRouteMTU(s, oracle)
	nodes := t.Nodes()
	for _, na := range nodes {
		for _, nb := range nodes {
			if na.Name == nb.Name || len(na.Pods) == 0 || len(nb.Pods) == 0 {
				continue
			}
			src, dst := na.Pods[0], nb.Pods[0]
			paths, perr := oracle.PodToPod(src.Name, dst.Name)
			if perr != nil {
				s.Check(fmt.Sprintf("MTU %s (%s) -> %s (%s): the topology gives a path", src.Name, na.Name, dst.Name, nb.Name),
					"the topology's routing plan ("+how+")", perr)
				continue
			}
			exp := expectedPathMTU(paths, src.Name, cfgMTU, e.MTU)
			fits, err := probe.PingSized(ctx, t, src.Name, dst.IP, exp.mtu-28, true)
			var ferr error
			if err != nil {
				ferr = fmt.Errorf("%d-byte DF packet did not cross: %w: %s", exp.mtu, err, fits)
			}
			out, err := probe.PingSized(ctx, t, src.Name, dst.IP, exp.over-28, true)
			witness, werr := exp.refused(t, out, err)
			ferr = errors.Join(ferr, werr)
			if ferr != nil {
				ferr = fmt.Errorf("%w\nexpected from the topology (%s):\n%s", ferr, how, indent(paths.String()))
			}
			s.Check(fmt.Sprintf("MTU %s (%s) -> %s (%s): DF packets of %d bytes cross, %d are refused", src.Name, na.Name, dst.Name, nb.Name, exp.mtu, exp.over),
				fmt.Sprintf("ping -M do -s %d and %d; expected: %s; refusal: %s", exp.mtu-28, exp.over-28, exp.source, witness), ferr)
		}
	}
	return nil
}

// pathMTUExpectation is what a DF sweep over a path must see.
type pathMTUExpectation struct {
	mtu  int   // DF packets of this size cross (every alternative carries them)
	over int   // DF packets of this size are refused
	mtus []int // MTUs a refusal may name
	// refusers are the members that may answer with ICMP frag-needed; silent: the
	// packet is dropped without one (a smaller MTU on a link's receiving end).
	refusers []string
	silent   bool
	source   string // where the numbers came from, for the check's looked-at line
}

// expectedPathMTU derives the sweep's expectation from the oracle's paths; a non-zero
// given MTU (the scenario file's) or a smaller route MTU of the cilium-config (cfgMTU)
// takes its place.
func expectedPathMTU(paths topology.Paths, src string, cfgMTU, given int) pathMTUExpectation {
	mtu, top := paths.MTU(), paths.MaxMTU()
	x := pathMTUExpectation{mtu: mtu, over: top + 1, mtus: paths.MTUs(), refusers: paths.Refusers(top + 1), silent: paths.Silent(top + 1)}
	var hops []string
	for _, p := range paths {
		b, _ := p.Bottleneck()
		at := fmt.Sprintf("path %s, MTU %d at %s/%s -> %s/%s", p.Hops(), p.MTU(), b.From, b.FromIf, b.To, b.ToIf)
		if b.Underlay != nil {
			u, _ := b.Underlay.Bottleneck()
			at += fmt.Sprintf(" (%s: underlay %s narrows to %d at %s/%s -> %s/%s, less %d)", b.Tunnel, b.Underlay.Hops(), u.MTU, u.From, u.FromIf, u.To, u.ToIf, u.MTU-b.MTU)
		}
		hops = append(hops, at)
	}
	x.source = "the topology: " + strings.Join(hops, "; or ")
	if len(paths) > 1 {
		x.source += fmt.Sprintf(" (ECMP: %d must fit every alternative, %d fits none)", mtu, top+1)
	}
	if cfgMTU != 0 && cfgMTU < x.mtu {
		x = pathMTUExpectation{mtu: cfgMTU, over: cfgMTU + 1, mtus: []int{cfgMTU}, refusers: []string{src},
			source: fmt.Sprintf("the cilium-config's mtu key less the tunnel overhead: %d (the topology's path MTU: %d)", cfgMTU, mtu)}
	}
	if given != 0 {
		x = pathMTUExpectation{mtu: given, over: given + 1, mtus: []int{given}, refusers: append(paths.Refusers(given+1), src),
			source: fmt.Sprintf("the scenario's expect.mtu: %d (the topology's path MTU: %d)", given, mtu)}
	}
	return x
}

// refused checks ping's answer to the oversized DF packet and says what refused it.
func (x pathMTUExpectation) refused(t topology.Cluster, out []byte, pingErr error) (string, error) {
	if pingErr == nil {
		return "none", fmt.Errorf("%d-byte DF packet crossed a path of MTU %d: %s", x.over, x.mtu, out)
	}
	r, ok := parseRefusal(out)
	switch {
	case !ok && x.silent:
		return "none: dropped without ICMP, as the topology predicts (a link's receiving end has the smaller MTU)", nil
	case !ok:
		return "none", fmt.Errorf("%d-byte DF packet neither crossed nor was refused with an MTU (no ICMP frag-needed, no local error: a black hole); ping said:\n%s",
			x.over, indent(string(out)))
	}
	witness := r.describe(t)
	if !slices.Contains(x.mtus, r.MTU) {
		return witness, fmt.Errorf("%d-byte DF packet refused naming MTU %d, want %v: %s", x.over, r.MTU, x.mtus, strings.TrimSpace(string(out)))
	}
	if r.Witness == "icmp" {
		if who := memberOfAddr(t, r.From); !slices.Contains(x.refusers, who) {
			return witness, fmt.Errorf("ICMP frag-needed came from %s (%s), want it from %v, where the path narrows: %s",
				r.From, cmp.Or(who, "no member"), x.refusers, strings.TrimSpace(string(out)))
		}
	}
	return witness, nil
}

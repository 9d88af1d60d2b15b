// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"fmt"
	"net/netip"
	"regexp"
	"strconv"
	"strings"

	"podpath/datapath/config"
	"podpath/scenarios"
	"podpath/topology"
)

// Shared like helpers.go: expected values from the topology's path oracle
// (topology.Oracle), for every feature file. Nothing here asks the datapath under test.

// stageOracle builds the path oracle of the stage's topology, with the routing the
// stage's cilium-config asks for (Cilium's defaults when it names none: VXLAN); a
// topology without agents (podNetwork: kernel) is plain kernel routing. It also returns
// a line that says which routing the oracle assumed.
func stageOracle(s *scenarios.Stage) (*topology.Oracle, string, error) {
	opts := topology.OracleOptions{Wiring: topology.ClusterWiring(s.T)}
	how := "plain kernel routing (no agents)"
	if agentsOf(s) != nil {
		cfg := s.Config
		if cfg == nil {
			cfg = config.Default()
		}
		switch cfg.RoutingMode {
		case config.RoutingTunnel:
			opts.Tunnel = string(cfg.TunnelProtocol)
			overhead, err := topology.TunnelOverhead(opts.Tunnel, 0)
			if err != nil {
				return nil, "", err
			}
			opts.TunnelOverhead = overhead
			how = fmt.Sprintf("%s tunnel (overhead %d)", opts.Tunnel, overhead)
			if cfg.TunnelMode == config.TunnelCrossSubnet {
				opts.CrossSubnet = true
				how += ", cross-subnet: peers on a node's own subnet natively"
			}
		default:
			opts.DirectNodeRoutes = cfg.AutoDirectNodeRoutes
			how = "native routing"
			if opts.DirectNodeRoutes {
				how += " with direct node routes"
			}
		}
	}
	o, err := topology.NewOracle(s.T.Spec(), opts)
	if err != nil {
		return nil, "", err
	}
	return o, how, nil
}

// configRouteMTU is the route MTU the stage's cilium-config fixes with its `mtu` key
// (device MTU less the tunnel overhead), 0 when it sets none: a spec value, like the
// topology's links.
func configRouteMTU(s *scenarios.Stage, o *topology.Oracle) int {
	if agentsOf(s) == nil || s.Config == nil || s.Config.MTU == 0 {
		return 0
	}
	return s.Config.MTU - o.Options().TunnelOverhead
}

// memberOfAddr names the member that holds address a in the running topology (a node
// also holds its pods' gateway address), or "" when none does.
func memberOfAddr(t topology.Cluster, a netip.Addr) string {
	for _, n := range t.Nodes() {
		if n.Gateway == a {
			return n.Name
		}
	}
	for _, m := range t.Members() {
		ifs, _ := t.Interfaces(m.Name)
		for _, i := range ifs {
			if i.Address.IsValid() && i.Address.Addr() == a {
				return m.Name
			}
		}
	}
	return ""
}

// A refusal is how ping reported a DF packet too large for the path.
type refusal struct {
	// Witness says who refused: "icmp" (ICMP frag-needed from From) or "local" (the
	// sender's own kernel: its interface or route MTU, or a path MTU it learned).
	Witness string
	From    netip.Addr
	MTU     int
}

var (
	pingFragNeededRE = regexp.MustCompile(`From (\S+)(?: icmp_seq=\d+)?:? Frag needed and DF set \(mtu = (\d+)\)`)
	pingLocalRE      = regexp.MustCompile(`(?i)message too long, mtu ?= ?(\d+)`)
)

// parseRefusal reads ping's output: "From A icmp_seq=1 Frag needed and DF set (mtu = N)"
// or "ping: local error: message too long, mtu=N". ok is false when it has neither.
func parseRefusal(out []byte) (refusal, bool) {
	if m := pingFragNeededRE.FindSubmatch(out); m != nil {
		a, _ := netip.ParseAddr(string(m[1]))
		n, _ := strconv.Atoi(string(m[2]))
		return refusal{Witness: "icmp", From: a, MTU: n}, true
	}
	if m := pingLocalRE.FindSubmatch(out); m != nil {
		n, _ := strconv.Atoi(string(m[1]))
		return refusal{Witness: "local", MTU: n}, true
	}
	return refusal{}, false
}

// describe renders a refusal for a check's looked-at line.
func (r refusal) describe(t topology.Cluster) string {
	if r.Witness == "icmp" {
		who := memberOfAddr(t, r.From)
		if who == "" {
			who = "no member of the topology"
		}
		return fmt.Sprintf("ICMP frag-needed from %s (%s) carrying MTU %d", r.From, who, r.MTU)
	}
	return fmt.Sprintf("the sender's kernel refused locally with MTU %d", r.MTU)
}

// indent indents every line of s by four spaces, for evidence.
func indent(s string) string {
	return "    " + strings.ReplaceAll(strings.TrimSpace(s), "\n", "\n    ")
}

// podPathMTU is the MTU the topology gives the path from pod a to pod b (every ECMP
// alternative carries it), capped by the cilium-config's mtu key, with where it came
// from.
func podPathMTU(s *scenarios.Stage, a, b string) (int, string, error) {
	o, how, err := stageOracle(s)
	if err != nil {
		return 0, "", err
	}
	ps, err := o.PodToPod(a, b)
	if err != nil {
		return 0, "", err
	}
	mtu := ps.MTU()
	var lines []string
	for _, l := range strings.Split(ps.String(), "\n") {
		lines = append(lines, strings.TrimSpace(l))
	}
	src := fmt.Sprintf("the topology (%s): %s", how, strings.Join(lines, "; "))
	if c := configRouteMTU(s, o); c != 0 && c < mtu {
		return c, fmt.Sprintf("the cilium-config's mtu key less the overhead (the topology's path MTU: %d)", mtu), nil
	}
	return mtu, src, nil
}

// expectedMTU returns the MTU a step expects between pods a and b: the scenario's given
// value, or the topology's. mismatch says how a given value disagrees with the topology
// (for the step's first check to fail with); err is set when there is no value at all.
func expectedMTU(s *scenarios.Stage, a, b string, given int, field string) (mtu int, mismatch string, err error) {
	want, src, oerr := podPathMTU(s, a, b)
	switch {
	case given == 0 && oerr != nil:
		return 0, "", fmt.Errorf("expect.%s is not set and the topology gives no MTU for %s -> %s: %w", field, a, b, oerr)
	case given == 0:
		return want, "", nil
	case oerr != nil:
		return given, fmt.Sprintf("expect.%s %d: the topology gives no path %s -> %s to compare with: %v", field, given, a, b, oerr), nil
	case given != want:
		return given, fmt.Sprintf("expect.%s %d disagrees with the path MTU %d from %s", field, given, want, src), nil
	}
	return given, "", nil
}

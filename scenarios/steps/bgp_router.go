// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"

	"podpath/topology"
)

// routerView reads a BGP router's daemon through its own CLI: BIRD's birdc or FRR's
// vtysh. Peers are named by address, whatever the daemon calls its sessions.
type routerView interface {
	// cli is the command line the checks name as what they looked at.
	cli(args string) string
	// sessions gives each peer's session state ("Established" when up).
	sessions(ctx context.Context) (map[netip.Addr]string, string, error)
	// paths gives the paths the daemon holds for exactly prefix: (next hop, peer).
	paths(ctx context.Context, prefix netip.Prefix) ([]routerPath, string, error)
	// closedByNotification says whether peer's session last went down on a NOTIFICATION
	// the peer sent (a Cease from a stopping agent).
	closedByNotification(ctx context.Context, peer netip.Addr) (bool, string, error)
	// kernelProto is how `ip route` marks the routes the daemon installed.
	kernelProto() string
}

type routerPath struct {
	via, peer netip.Addr
}

// viewRouter returns the view of router's daemon.
func viewRouter(t topology.Cluster, router string) routerView {
	spec := t.Spec()
	byProto := map[string]netip.Addr{}
	for _, p := range spec.BGPNeighbors(router) {
		byProto[topology.BIRDProtocolName(p.Name)] = p.Address
	}
	if b := spec.RouterBGP(router); b != nil && b.Daemon == topology.BGPDaemonFRR {
		return &frrView{t: t, router: router, dir: topology.BGPDaemonDir(t.Dir(), router)}
	}
	return &birdView{t: t, router: router, byProto: byProto}
}

type birdView struct {
	t       topology.Cluster
	router  string
	byProto map[string]netip.Addr
}

func (b *birdView) cli(args string) string {
	return "birdc -s " + topology.BIRDSocket(b.t.Dir(), b.router) + " " + args
}
func (b *birdView) kernelProto() string { return topology.RouteProto(topology.BGPDaemonBIRD) }

func (b *birdView) sessions(ctx context.Context) (map[netip.Addr]string, string, error) {
	out, err := birdc(ctx, b.t, b.router, "show", "protocols")
	if err != nil {
		return nil, out, err
	}
	m := map[netip.Addr]string{}
	for name, p := range parseBIRDProtocols(out) {
		if a, ok := b.byProto[name]; ok {
			m[a] = p.info
		}
	}
	return m, out, nil
}

func (b *birdView) paths(ctx context.Context, prefix netip.Prefix) ([]routerPath, string, error) {
	out, err := birdc(ctx, b.t, b.router, "show", "route", "all", "for", prefix.String())
	if strings.Contains(out, "Network not found") {
		return nil, out, nil // birdc's answer (exit status 1) when no route covers it
	}
	if err != nil {
		return nil, out, err
	}
	var ps []routerPath
	for _, r := range parseBIRDRoutes(out) {
		if r.prefix == prefix {
			ps = append(ps, routerPath{via: r.via, peer: b.byProto[r.from]})
		}
	}
	return ps, out, nil
}

func (b *birdView) closedByNotification(ctx context.Context, peer netip.Addr) (bool, string, error) {
	out, err := birdc(ctx, b.t, b.router, "show", "protocols")
	if err != nil {
		return false, out, err
	}
	for name, p := range parseBIRDProtocols(out) {
		if b.byProto[name] == peer {
			return strings.Contains(p.info, "Received:"), out, nil
		}
	}
	return false, out, nil
}

type frrView struct {
	t           topology.Cluster
	router, dir string
}

// cli names the vtysh command that answers what BIRD's args ask.
func (f *frrView) cli(args string) string {
	cmd := args
	switch {
	case strings.HasPrefix(args, "show protocols"):
		cmd = "show bgp ipv4 unicast summary json; show bgp neighbors json"
	case strings.HasPrefix(args, "show route"):
		f := strings.Fields(args)
		cmd = "show bgp ipv4 unicast " + f[len(f)-1] + " json"
	}
	return "vtysh --vty_socket " + f.dir + " -c '" + cmd + "'"
}
func (f *frrView) kernelProto() string { return topology.RouteProto(topology.BGPDaemonFRR) }

func (f *frrView) vtysh(ctx context.Context, cmd string, v any) (string, error) {
	out, err := f.t.Exec(ctx, f.router, "vtysh", "--vty_socket", f.dir, "-c", cmd)
	if err != nil {
		return string(out), fmt.Errorf("vtysh -c %q: %w", cmd, err)
	}
	if err := json.Unmarshal(out, v); err != nil {
		return string(out), fmt.Errorf("vtysh -c %q: %w", cmd, err)
	}
	return string(out), nil
}

func (f *frrView) sessions(ctx context.Context) (map[netip.Addr]string, string, error) {
	var sum struct {
		Peers map[string]struct {
			State string `json:"state"`
		} `json:"peers"`
	}
	out, err := f.vtysh(ctx, "show bgp ipv4 unicast summary json", &sum)
	if err != nil {
		return nil, out, err
	}
	m := map[netip.Addr]string{}
	for a, p := range sum.Peers {
		if ip, err := netip.ParseAddr(a); err == nil {
			m[ip] = p.State
		}
	}
	return m, out, nil
}

func (f *frrView) paths(ctx context.Context, prefix netip.Prefix) ([]routerPath, string, error) {
	var r struct {
		Prefix string `json:"prefix"`
		Paths  []struct {
			Valid    bool `json:"valid"`
			Nexthops []struct {
				IP string `json:"ip"`
			} `json:"nexthops"`
			Peer struct {
				PeerID string `json:"peerId"`
			} `json:"peer"`
		} `json:"paths"`
	}
	out, err := f.vtysh(ctx, "show bgp ipv4 unicast "+prefix.String()+" json", &r)
	if err != nil {
		return nil, out, err
	}
	if r.Prefix != prefix.String() {
		return nil, out, nil
	}
	var ps []routerPath
	for _, p := range r.Paths {
		if len(p.Nexthops) == 0 {
			continue
		}
		via, _ := netip.ParseAddr(p.Nexthops[0].IP)
		peer, _ := netip.ParseAddr(p.Peer.PeerID)
		ps = append(ps, routerPath{via: via, peer: peer})
	}
	return ps, out, nil
}

func (f *frrView) closedByNotification(ctx context.Context, peer netip.Addr) (bool, string, error) {
	var n map[string]struct {
		LastResetDueTo string `json:"lastResetDueTo"`
	}
	out, err := f.vtysh(ctx, "show bgp neighbors "+peer.String()+" json", &n)
	if err != nil {
		return false, out, err
	}
	return strings.Contains(strings.ToLower(n[peer.String()].LastResetDueTo), "notification received"), out, nil
}

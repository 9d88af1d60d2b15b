// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"github.com/osrg/gobgp/v3/pkg/server"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/anypb"
)

// BGPPeeringPolicy is the agent's BGP control plane configuration, in the terms (and
// JSON field names) of Cilium's CiliumBGPPeeringPolicy spec: one virtual router with a
// local ASN, whether it exports the node's PodCIDR, which service addresses it
// announces, and its neighbours. PUT /v1/bgp/policy sets it; it survives restarts
// (bgp.json in the state dir).
type BGPPeeringPolicy struct {
	VirtualRouters []BGPVirtualRouter `json:"virtualRouters"`
}

// BGPVirtualRouter is a CiliumBGPVirtualRouter.
type BGPVirtualRouter struct {
	LocalASN      uint32 `json:"localASN"`
	ExportPodCIDR bool   `json:"exportPodCIDR"`
	// ServiceAdvertisements: LoadBalancerIP (the externalIPs of LoadBalancer services:
	// podpath's services carry their load balancer address there) and ExternalIP (the
	// externalIPs of every service). Each address is announced as a /32 while the
	// service is programmed.
	ServiceAdvertisements []string      `json:"serviceAdvertisements,omitempty"`
	Neighbors             []BGPNeighbor `json:"neighbors"`
}

// BGPNeighbor is a CiliumBGPNeighbor.
type BGPNeighbor struct {
	// PeerAddress is the neighbour's address as a /32 CIDR, e.g. 10.0.1.1/32.
	PeerAddress string `json:"peerAddress"`
	PeerPort    uint16 `json:"peerPort,omitempty"` // 179
	PeerASN     uint32 `json:"peerASN"`
	// EBGPMultihopTTL is the TTL of eBGP packets (1: directly connected).
	EBGPMultihopTTL         uint32      `json:"eBGPMultihopTTL,omitempty"`
	ConnectRetryTimeSeconds uint64      `json:"connectRetryTimeSeconds,omitempty"` // 120
	HoldTimeSeconds         uint64      `json:"holdTimeSeconds,omitempty"`         // 90
	KeepAliveTimeSeconds    uint64      `json:"keepAliveTimeSeconds,omitempty"`    // 30
	Families                []BGPFamily `json:"families,omitempty"`                // ipv4/unicast
}

// BGPFamily is an address family; podpath speaks afi ipv4, safi unicast only.
type BGPFamily struct {
	Afi  string `json:"afi"`
	Safi string `json:"safi"`
}

// BGPPeerStatus is one session as `podpath-agent status` shows it (like `cilium bgp
// peers`): the neighbour, its state, since when, and the routes each way.
type BGPPeerStatus struct {
	LocalASN uint32 `json:"localASN"`
	Peer     string `json:"peer"`
	PeerASN  uint32 `json:"peerASN"`
	// State is the BGP FSM state: idle, connect, active, opensent, openconfirm, established.
	State string `json:"state"`
	// Since is when the session entered (established) or left (other states) that state.
	Since      time.Time `json:"since,omitzero"`
	Family     string    `json:"family"`
	Received   uint64    `json:"received"`
	Accepted   uint64    `json:"accepted"`
	Advertised uint64    `json:"advertised"`
	HoldTime   uint64    `json:"holdTime"` // negotiated, seconds
}

// BGPRoute is a route the speaker installed into the node's kernel table.
type BGPRoute struct {
	Prefix  netip.Prefix `json:"prefix"`
	NextHop netip.Addr   `json:"nextHop"` // as BGP gave it
	Via     netip.Addr   `json:"via"`     // the gateway installed (NextHop resolved)
	Peer    string       `json:"peer"`
}

// Service advertisement kinds.
const (
	BGPAdvertiseLoadBalancerIP = "LoadBalancerIP"
	BGPAdvertiseExternalIP     = "ExternalIP"
	bgpPort                    = 179
	// bgpRouteProto marks the routes BGP learned in the kernel table: `ip route` shows
	// them as `proto bgp`.
	bgpRouteProto netlink.RouteProtocol = unix.RTPROT_BGP
	bgpPolicyFile                       = "bgp.json"
)

// Validate checks the policy; every problem names its field path.
func (p *BGPPeeringPolicy) Validate() error {
	var errs []error
	if len(p.VirtualRouters) != 1 {
		errs = append(errs, fmt.Errorf("virtualRouters: %d given, podpath runs exactly one", len(p.VirtualRouters)))
	}
	for i, vr := range p.VirtualRouters {
		path := fmt.Sprintf("virtualRouters[%d]", i)
		if vr.LocalASN == 0 {
			errs = append(errs, fmt.Errorf("%s.localASN: required", path))
		}
		for j, s := range vr.ServiceAdvertisements {
			if s != BGPAdvertiseLoadBalancerIP && s != BGPAdvertiseExternalIP {
				errs = append(errs, fmt.Errorf("%s.serviceAdvertisements[%d]: %q is not one of %s, %s", path, j, s, BGPAdvertiseLoadBalancerIP, BGPAdvertiseExternalIP))
			}
		}
		seen := map[netip.Addr]bool{}
		for j, n := range vr.Neighbors {
			np := fmt.Sprintf("%s.neighbors[%d]", path, j)
			a, err := n.addr()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.peerAddress: %w", np, err))
			} else if seen[a] {
				errs = append(errs, fmt.Errorf("%s.peerAddress: %s given twice", np, a))
			}
			seen[a] = true
			if n.PeerASN == 0 {
				errs = append(errs, fmt.Errorf("%s.peerASN: required", np))
			}
			if n.HoldTimeSeconds != 0 && (n.HoldTimeSeconds < 3 || n.KeepAliveTimeSeconds >= n.HoldTimeSeconds) {
				errs = append(errs, fmt.Errorf("%s.holdTimeSeconds: %d, want >= 3 and more than keepAliveTimeSeconds %d", np, n.HoldTimeSeconds, n.KeepAliveTimeSeconds))
			}
			for k, f := range n.Families {
				if f.Afi != "ipv4" || f.Safi != "unicast" {
					errs = append(errs, fmt.Errorf("%s.families[%d]: %s/%s: podpath speaks ipv4/unicast only", np, k, f.Afi, f.Safi))
				}
			}
		}
	}
	return errors.Join(errs...)
}

func (n BGPNeighbor) addr() (netip.Addr, error) {
	s := n.PeerAddress
	if !strings.Contains(s, "/") {
		s += "/32"
	}
	p, err := netip.ParsePrefix(s)
	if err != nil || !p.Addr().Is4() || p.Bits() != 32 {
		return netip.Addr{}, fmt.Errorf("%q is not an IPv4 /32 (e.g. 10.0.1.1/32)", n.PeerAddress)
	}
	return p.Addr(), nil
}

// bgpSpeaker is the node's BGP speaker: GoBGP embedded as a library, as Cilium's BGP
// control plane does. It announces the node's PodCIDR and service addresses, and keeps
// the kernel's main table in line with the best paths it learns (proto bgp).
type bgpSpeaker struct {
	log      *slog.Logger
	nl       *netlink.Handle
	nodeIP   netip.Addr
	podCIDR  netip.Prefix
	stateDir string
	srv      *server.BgpServer
	started  time.Time

	mu      sync.Mutex
	policy  *BGPPeeringPolicy
	running uint32 // ASN of the running BGP instance; 0: stopped
	// services are the programmed services as the agent last handed them over; which
	// of their addresses are announced is decided from the policy when announcing, so
	// the order in which a starting agent hands over its services and applies its saved
	// policy does not matter.
	services  []Service
	announced map[netip.Prefix][]byte // prefix -> GoBGP path UUID
	installed map[netip.Prefix]BGPRoute
	kick      chan struct{}
}

func newBGPSpeaker(log *slog.Logger, nl *netlink.Handle, nodeIP netip.Addr, podCIDR netip.Prefix, stateDir string) *bgpSpeaker {
	s := &bgpSpeaker{
		log: log, nl: nl, nodeIP: nodeIP, podCIDR: podCIDR, stateDir: stateDir, started: time.Now(),
		srv:       server.NewBgpServer(server.LoggerOption(&slogGoBGP{log: log})),
		announced: map[netip.Prefix][]byte{}, installed: map[netip.Prefix]BGPRoute{}, kick: make(chan struct{}, 1),
	}
	return s
}

// run serves GoBGP and keeps the kernel routes in line until ctx ends; then it stops
// BGP, which sends every peer a Cease notification: they withdraw this node's routes
// at once instead of after the hold time.
func (s *bgpSpeaker) run(ctx context.Context) {
	go s.srv.Serve()
	if p, err := s.loadPolicy(); err != nil {
		s.log.Warn("bgp: saved policy", "err", err)
	} else if p != nil {
		if err := s.apply(ctx, p); err != nil {
			s.log.Warn("bgp: apply saved policy", "err", err)
		}
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			s.mu.Lock()
			if s.running != 0 {
				_ = s.srv.StopBgp(context.Background(), &api.StopBgpRequest{})
				s.running = 0
			}
			s.mu.Unlock()
			return
		case <-tick.C:
		case <-s.kick:
		}
		if err := s.syncKernel(ctx); err != nil {
			s.log.Warn("bgp: kernel routes", "err", err)
		}
	}
}

func (s *bgpSpeaker) poke() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

func (s *bgpSpeaker) loadPolicy() (*BGPPeeringPolicy, error) {
	b, err := os.ReadFile(filepath.Join(s.stateDir, bgpPolicyFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var p BGPPeeringPolicy
	if err := json.Unmarshal(b, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", bgpPolicyFile, err)
	}
	return &p, nil
}

// setPolicy validates, saves and applies a policy.
func (s *bgpSpeaker) setPolicy(ctx context.Context, p BGPPeeringPolicy) error {
	if err := p.Validate(); err != nil {
		return &InputError{Err: fmt.Errorf("bgp policy: %w", err)}
	}
	b, _ := json.MarshalIndent(p, "", "  ")
	if err := os.WriteFile(filepath.Join(s.stateDir, bgpPolicyFile), b, 0o600); err != nil {
		return fmt.Errorf("save bgp policy: %w", err)
	}
	return s.apply(ctx, &p)
}

// apply (re)starts the BGP instance when the local ASN changed, then makes the peers
// and the announcements match the policy.
func (s *bgpSpeaker) apply(ctx context.Context, p *BGPPeeringPolicy) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	vr := p.VirtualRouters[0]
	if s.running != vr.LocalASN {
		if s.running != 0 {
			if err := s.srv.StopBgp(ctx, &api.StopBgpRequest{}); err != nil {
				return fmt.Errorf("stop bgp: %w", err)
			}
			s.announced = map[netip.Prefix][]byte{}
		}
		err := s.srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
			Asn: vr.LocalASN, RouterId: s.nodeIP.String(), ListenPort: bgpPort, ListenAddresses: []string{"0.0.0.0"},
		}})
		if err != nil {
			return fmt.Errorf("start bgp (AS %d, router id %s): %w", vr.LocalASN, s.nodeIP, err)
		}
		s.running = vr.LocalASN
	}
	s.policy = p
	want := map[netip.Addr]BGPNeighbor{}
	for _, n := range vr.Neighbors {
		a, _ := n.addr()
		want[a] = n
	}
	have := map[netip.Addr]bool{}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.Conf.NeighborAddress); err == nil {
			have[a] = true
			if n, ok := want[a]; !ok || n.PeerASN != p.Conf.PeerAsn {
				have[a] = false // removed or changed: deleted below, re-added
			}
		}
	})
	if err != nil {
		return fmt.Errorf("list peers: %w", err)
	}
	var errs []error
	for a, keep := range have {
		if !keep {
			errs = append(errs, s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}))
		}
	}
	for a, n := range want {
		if have[a] {
			continue
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: gobgpPeer(a, n)}); err != nil {
			errs = append(errs, fmt.Errorf("add peer %s: %w", a, err))
		}
	}
	errs = append(errs, s.announceLocked(ctx))
	s.poke()
	return errors.Join(errs...)
}

func gobgpPeer(a netip.Addr, n BGPNeighbor) *api.Peer {
	hold, keep, retry := n.HoldTimeSeconds, n.KeepAliveTimeSeconds, n.ConnectRetryTimeSeconds
	if hold == 0 {
		hold = 90
	}
	if keep == 0 {
		keep = max(1, hold/3)
	}
	if retry == 0 {
		retry = 120
	}
	p := &api.Peer{
		Conf:   &api.PeerConf{NeighborAddress: a.String(), PeerAsn: n.PeerASN},
		Timers: &api.Timers{Config: &api.TimersConfig{HoldTime: hold, KeepaliveInterval: keep, ConnectRetry: retry, IdleHoldTimeAfterReset: 1}},
		AfiSafis: []*api.AfiSafi{{Config: &api.AfiSafiConfig{
			Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}}},
	}
	if n.PeerPort != 0 && n.PeerPort != bgpPort {
		p.Transport = &api.Transport{RemotePort: uint32(n.PeerPort)}
	}
	if n.EBGPMultihopTTL > 1 {
		p.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: n.EBGPMultihopTTL}
	}
	return p
}

// setServices records the programmed services; the policy's serviceAdvertisements
// select which of their addresses are announced.
func (s *bgpSpeaker) setServices(ctx context.Context, list []Service) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.services = slices.Clone(list)
	return s.announceLocked(ctx)
}

// servicePrefixes are the addresses the policy's serviceAdvertisements select among
// the services: LoadBalancerIP selects the external IPs of LoadBalancer services,
// ExternalIP those of every service.
func servicePrefixes(p *BGPPeeringPolicy, list []Service) []netip.Prefix {
	if p == nil {
		return nil
	}
	adv := p.VirtualRouters[0].ServiceAdvertisements
	var out []netip.Prefix
	for _, svc := range list {
		if !slices.Contains(adv, BGPAdvertiseExternalIP) && !(svc.Type == "LoadBalancer" && slices.Contains(adv, BGPAdvertiseLoadBalancerIP)) {
			continue
		}
		for _, ip := range svc.ExternalIPs {
			out = append(out, netip.PrefixFrom(ip, 32))
		}
	}
	return out
}

// announceLocked adds and withdraws local paths until they are the PodCIDR (with
// exportPodCIDR) and the selected service addresses.
func (s *bgpSpeaker) announceLocked(ctx context.Context) error {
	if s.running == 0 || s.policy == nil {
		return nil
	}
	want := map[netip.Prefix]bool{}
	if s.policy.VirtualRouters[0].ExportPodCIDR {
		want[s.podCIDR] = true
	}
	for _, p := range servicePrefixes(s.policy, s.services) {
		want[p] = true
	}
	var errs []error
	for p, uuid := range s.announced {
		if !want[p] {
			if err := s.srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Uuid: uuid}); err != nil {
				errs = append(errs, fmt.Errorf("withdraw %s: %w", p, err))
				continue
			}
			delete(s.announced, p)
			s.log.Info("bgp: withdrawn", "prefix", p)
		}
	}
	for p := range want {
		if _, ok := s.announced[p]; ok {
			continue
		}
		path, err := localPath(p, s.nodeIP)
		if err != nil {
			return err
		}
		res, err := s.srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path})
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %s: %w", p, err))
			continue
		}
		s.announced[p] = res.Uuid
		s.log.Info("bgp: announced", "prefix", p, "nextHop", s.nodeIP)
	}
	return errors.Join(errs...)
}

func localPath(p netip.Prefix, nextHop netip.Addr) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: p.Addr().String(), PrefixLen: uint32(p.Bits())})
	if err != nil {
		return nil, err
	}
	origin, err := anypb.New(&api.OriginAttribute{Origin: 0}) // IGP
	if err != nil {
		return nil, err
	}
	nh, err := anypb.New(&api.NextHopAttribute{NextHop: nextHop.String()})
	if err != nil {
		return nil, err
	}
	return &api.Path{
		Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST},
		Nlri:   nlri, Pattrs: []*anypb.Any{origin, nh},
	}, nil
}

// syncKernel installs every best path learned from a peer into the main table:
//
//	ip route replace PREFIX via GW dev DEV proto bgp
//
// where GW is the BGP next hop when it is on a connected subnet, else the gateway the
// kernel uses toward it (recursive resolution, as BIRD's `gateway recursive`: an iBGP
// route reflected from a node behind a router). Routes no longer learned are removed;
// the node's own PodCIDR and announced prefixes are never installed. Until every peer
// was established once (or 2 hold times passed) stale routes of a previous agent stay,
// so a restart does not blackhole the pods.
func (s *bgpSpeaker) syncKernel(ctx context.Context) error {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	if running == 0 {
		return nil
	}
	want := map[netip.Prefix]BGPRoute{}
	err := s.srv.ListPath(ctx, &api.ListPathRequest{TableType: api.TableType_GLOBAL,
		Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}}, func(d *api.Destination) {
		p, err := netip.ParsePrefix(d.Prefix)
		if err != nil || p == s.podCIDR {
			return
		}
		for _, path := range d.Paths {
			if !path.Best || path.NeighborIp == "" || path.NeighborIp == "<nil>" || path.IsNexthopInvalid {
				continue
			}
			nh := nextHopOf(path)
			if !nh.IsValid() || nh == s.nodeIP {
				continue
			}
			want[p] = BGPRoute{Prefix: p, NextHop: nh, Peer: path.NeighborIp}
		}
	})
	if err != nil {
		return fmt.Errorf("list paths: %w", err)
	}
	var errs []error
	for p, r := range want {
		got, err := s.nl.RouteGet(r.NextHop.AsSlice())
		if err != nil || len(got) == 0 {
			errs = append(errs, fmt.Errorf("route %s: next hop %s unreachable: %v", p, r.NextHop, err))
			continue
		}
		r.Via = r.NextHop
		if got[0].Gw != nil {
			r.Via, _ = netip.AddrFromSlice(got[0].Gw.To4())
		}
		if old, ok := s.currentRoute(p); ok && old == r {
			continue
		}
		nr := &netlink.Route{Dst: prefixNet(p), Gw: r.Via.AsSlice(), LinkIndex: got[0].LinkIndex, Protocol: bgpRouteProto}
		if err := s.nl.RouteReplace(nr); err != nil {
			errs = append(errs, fmt.Errorf("route %s via %s: %w", p, r.Via, err))
			continue
		}
		s.log.Info("bgp: route installed", "prefix", p, "via", r.Via, "nextHop", r.NextHop, "peer", r.Peer)
		s.setRoute(p, r)
	}
	if !s.settled(ctx) {
		return errors.Join(errs...)
	}
	routes, err := s.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: bgpRouteProto, Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list bgp routes: %w", err))...)
	}
	for _, r := range routes {
		if r.Dst == nil {
			continue
		}
		p, ok := netipPrefix(r.Dst)
		if _, keep := want[p]; ok && !keep {
			if err := s.nl.RouteDel(&r); err != nil {
				errs = append(errs, fmt.Errorf("remove route %s: %w", p, err))
				continue
			}
			s.log.Info("bgp: route removed", "prefix", p)
			s.mu.Lock()
			delete(s.installed, p)
			s.mu.Unlock()
		}
	}
	return errors.Join(errs...)
}

func (s *bgpSpeaker) currentRoute(p netip.Prefix) (BGPRoute, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r, ok := s.installed[p]
	return r, ok
}

func (s *bgpSpeaker) setRoute(p netip.Prefix, r BGPRoute) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.installed[p] = r
}

// settled: the speaker has run for 3 s and every peer has been established for 3 s
// (its initial updates arrived), or two default hold times passed since the start.
func (s *bgpSpeaker) settled(ctx context.Context) bool {
	const settle = 3 * time.Second
	if time.Since(s.started) > 180*time.Second {
		return true
	}
	if time.Since(s.started) < settle {
		return false
	}
	all := true
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		up := p.Timers.GetState().GetUptime()
		if p.State == nil || p.State.SessionState != api.PeerState_ESTABLISHED || up == nil || time.Since(up.AsTime()) < settle {
			all = false
		}
	})
	return all
}

func nextHopOf(p *api.Path) netip.Addr {
	for _, a := range p.Pattrs {
		var nh api.NextHopAttribute
		if a.MessageIs(&nh) && a.UnmarshalTo(&nh) == nil {
			if ip, err := netip.ParseAddr(nh.NextHop); err == nil {
				return ip
			}
		}
		var mp api.MpReachNLRIAttribute
		if a.MessageIs(&mp) && a.UnmarshalTo(&mp) == nil && len(mp.NextHops) > 0 {
			if ip, err := netip.ParseAddr(mp.NextHops[0]); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// peers lists the sessions, sorted by peer address.
func (s *bgpSpeaker) peers(ctx context.Context) ([]BGPPeerStatus, error) {
	s.mu.Lock()
	asn := s.running
	s.mu.Unlock()
	var out []BGPPeerStatus
	if asn == 0 {
		return out, nil
	}
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := BGPPeerStatus{LocalASN: asn, Peer: p.Conf.NeighborAddress, PeerASN: p.Conf.PeerAsn, Family: "ipv4/unicast"}
		if p.State != nil {
			st.State = strings.ToLower(strings.TrimPrefix(p.State.SessionState.String(), "PeerState_"))
		}
		if ts := p.Timers.GetState(); ts != nil {
			st.HoldTime = ts.NegotiatedHoldTime
			t := ts.Downtime
			if st.State == "established" {
				t = ts.Uptime
			}
			if t != nil && t.Seconds > 0 {
				st.Since = t.AsTime()
			}
		}
		for _, af := range p.AfiSafis {
			if af.State != nil {
				st.Received, st.Accepted, st.Advertised = af.State.Received, af.State.Accepted, af.State.Advertised
			}
		}
		out = append(out, st)
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Peer < out[j].Peer })
	return out, err
}

// routes lists the routes the speaker installed, sorted by prefix.
func (s *bgpSpeaker) routes() []BGPRoute {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]BGPRoute, 0, len(s.installed))
	for _, r := range s.installed {
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Prefix.String() < out[j].Prefix.String() })
	return out
}

// slogGoBGP hands GoBGP's log lines to the agent's logger (debug and info as debug).
type slogGoBGP struct {
	log   *slog.Logger
	level gobgplog.LogLevel
}

func (l *slogGoBGP) args(f gobgplog.Fields) []any {
	out := make([]any, 0, 2*len(f))
	for k, v := range f {
		out = append(out, k, v)
	}
	return out
}
func (l *slogGoBGP) Panic(msg string, f gobgplog.Fields) { l.log.Error("gobgp: "+msg, l.args(f)...) }
func (l *slogGoBGP) Fatal(msg string, f gobgplog.Fields) { l.log.Error("gobgp: "+msg, l.args(f)...) }
func (l *slogGoBGP) Error(msg string, f gobgplog.Fields) { l.log.Error("gobgp: "+msg, l.args(f)...) }
func (l *slogGoBGP) Warn(msg string, f gobgplog.Fields)  { l.log.Warn("gobgp: "+msg, l.args(f)...) }
func (l *slogGoBGP) Info(msg string, f gobgplog.Fields)  { l.log.Info("gobgp: "+msg, l.args(f)...) }
func (l *slogGoBGP) Debug(msg string, f gobgplog.Fields) { l.log.Debug("gobgp: "+msg, l.args(f)...) }
func (l *slogGoBGP) SetLevel(level gobgplog.LogLevel)    { l.level = level }
func (l *slogGoBGP) GetLevel() gobgplog.LogLevel         { return gobgplog.InfoLevel }

func netipPrefix(n interface{ String() string }) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(n.String())
	return p, err == nil
}

// startBGP starts the speaker when enable-bgp-control-plane is on; the channel closes
// once it stopped (at once when it is off).
func (a *Agent) startBGP(ctx context.Context) <-chan struct{} {
	done := make(chan struct{})
	if !a.cfg.EnableBGPControlPlane {
		close(done)
		return done
	}
	nodeIP := a.opts.NodeIP
	if a.dp != nil && a.dp.nodeIP.IsValid() {
		nodeIP = a.dp.nodeIP
	}
	a.bgp = newBGPSpeaker(a.opts.Log, a.nl, nodeIP, a.opts.PodCIDR, a.opts.StateDir)
	// The services the agent already programs (its saved state) are known before the
	// saved policy is applied: the first announcement carries them.
	a.bgp.services = a.store.services()
	go func() {
		defer close(done)
		a.bgp.run(ctx)
	}()
	return done
}

// bgpServices hands the programmed services to the speaker (no-op without BGP).
func (a *Agent) bgpServices() error {
	if a.bgp == nil {
		return nil
	}
	return a.bgp.setServices(context.Background(), a.store.services())
}

// errBGPOff refuses BGP requests of an agent that runs no speaker.
var errBGPOff = &InputError{Err: errors.New("bgp: enable-bgp-control-plane is off in the cilium-config: this agent runs no BGP speaker")}

// BGPPolicySet applies a peering policy (PUT /v1/bgp/policy).
func (a *Agent) BGPPolicySet(ctx context.Context, p BGPPeeringPolicy) error {
	if a.bgp == nil {
		return errBGPOff
	}
	if err := a.bgp.setPolicy(ctx, p); err != nil {
		return err
	}
	return a.bgpServices()
}

// BGPPeers lists the sessions (GET /v1/bgp/peers), like `cilium bgp peers`.
func (a *Agent) BGPPeers(ctx context.Context) ([]BGPPeerStatus, error) {
	if a.bgp == nil {
		return nil, errBGPOff
	}
	return a.bgp.peers(ctx)
}

// BGPRoutes lists the routes BGP installed in the node's table (GET /v1/bgp/routes).
func (a *Agent) BGPRoutes() ([]BGPRoute, error) {
	if a.bgp == nil {
		return nil, errBGPOff
	}
	return a.bgp.routes(), nil
}

// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
)

// Names of the maps bpf_lxc, bpf_host and bpf_overlay share (bpf/lib/maps.h, trace.h,
// lb_maps.h, conntrack.h, nat.h), which are also their file names under Options.PinPath.
const (
	MapEndpoints   = bpfobj.LxcMapEndpoints
	MapIPCache     = bpfobj.LxcMapIpcache
	MapNodes       = bpfobj.LxcMapNodes
	MapTraceEvents = bpfobj.LxcMapTraceEvents

	// Service load balancing.
	MapLBServices     = bpfobj.LxcMapLbServices
	MapLBBackendSlots = bpfobj.LxcMapLbBackendSlots
	MapLBBackends     = bpfobj.LxcMapLbBackends
	MapLBRevNat       = bpfobj.LxcMapLbRevNat
	MapLBMaglev       = bpfobj.LxcMapLbMaglev
	MapCTTCP          = bpfobj.LxcMapCtTcp
	MapCTAny          = bpfobj.LxcMapCtAny
	MapSNAT           = bpfobj.LxcMapSnat
	// Service semantics (issue 12): sessionAffinity, loadBalancerSourceRanges.
	MapLBAffinity     = bpfobj.LxcMapLbAffinity
	MapLBSourceRanges = bpfobj.LxcMapLbSourceRanges
	// enable-ipv4-fragment-tracking: first fragments' ports (bpf/lib/lb_frag.h).
	MapLBFrag = bpfobj.LxcMapLbFrag
	// Network policy (bpf/lib/policy.h).
	MapPolicy    = bpfobj.LxcMapPolicy
	MapPolicyCT  = bpfobj.LxcMapPolicyCt
	MapPolicyRev = bpfobj.LxcMapPolicyRev
	// MapEgressGW is the egress gateway policy map (bpf/lib/egressgw.h).
	MapEgressGW = bpfobj.LxcMapEgressGwPolicy
	// MapDPGen holds the datapath generations (bpf/lib/dp_gen.h, maps.BumpGeneration):
	// what conntrack entries cache is valid while they stand still.
	MapDPGen = bpfobj.LxcMapDpGen
)

// lbMaps are the load balancer's maps: derived state the agent rewrites, whose pins
// LoadDatapath replaces when their layout or size changed (see Options.PinPath).
var lbMaps = []string{MapLBServices, MapLBBackendSlots, MapLBBackends, MapLBRevNat, MapLBMaglev, MapCTTCP, MapCTAny, MapSNAT,
	MapLBAffinity, MapLBSourceRanges, MapLBFrag, MapDPGen}

// lruMaps are the preallocated LB maps: with the load balancer disabled and no size
// given they get one entry, so a node without kube-proxy-replacement does not pay
// for conntrack tables it never uses.
var lruMaps = []string{MapCTTCP, MapCTAny, MapSNAT}

// MapSizes overrides the compiled-in max_entries of the shared maps; zero keeps the
// default of bpf/lib/maps.h and trace.h.
type MapSizes struct {
	Endpoints   uint32 // default 65535
	IPCache     uint32 // default 512000 (allocated on use: an LPM trie is never preallocated)
	Nodes       uint32 // default 16384
	TraceEvents uint32 // ring buffer bytes, a power of two multiple of the page size; default 1 MiB

	// Service load balancing; the hash maps are allocated on use, the LRU maps
	// (conntrack, SNAT) preallocated, and sized 1 while the load balancer is disabled
	// unless a size is given here.
	LBServices     uint32 // frontends; default 65536 (Cilium's bpf-lb-map-max)
	LBBackendSlots uint32 // backend slots of all services; default 262144
	LBBackends     uint32 // default 65536
	LBRevNat       uint32 // default 65536
	LBMaglev       uint32 // services with a Maglev table; default 65536
	CTTCP          uint32 // default 524288 (Cilium's bpf-ct-global-tcp-max)
	CTAny          uint32 // default 262144 (Cilium's bpf-ct-global-any-max)
	SNAT           uint32 // default 131072
}

// Options for LoadDatapath.
type Options struct {
	// PinPath is a directory on a bpffs (`mount -t bpf bpf DIR`), one per node, where
	// the shared maps are pinned by name; both objects, and later loads with the same
	// path (an agent restart), use the instances found there. A pinned map whose
	// type, key, value or size differ from the spec fails the load with
	// ebpf.ErrMapIncompatible, except the load balancer's maps (lb_*, ct_*, snat):
	// their pins are replaced by new, empty maps, as Cilium recreates a resized
	// conntrack table (services must be programmed again; flows tracked in a replaced
	// conntrack map lose their backend). Empty: nothing is pinned and the maps live as
	// long as the Datapath, still shared by its objects.
	PinPath string
	// MapSizes overrides map sizes (tests shrink them).
	MapSizes MapSizes

	// GeneveTestOption sets bpf_lxc's GENEVE_TEST_OPT: every Geneve packet then
	// carries one Cilium-class test option (bpf/lib/encap.h), so the fixtures of
	// datapath/progtest exercise the option path. Tests only: no agent sets it.
	GeneveTestOption bool
}

// Datapath is bpf_lxc, bpf_host and bpf_overlay of one node, loaded with one
// bpfconfig.Config and sharing their maps.
type Datapath struct {
	Lxc     bpfobj.LxcObjects
	Host    bpfobj.HostObjects
	Overlay bpfobj.OverlayObjects
	// Sock is bpf_sock (socket-LB): cgroup sock_addr programs sharing the load
	// balancer's maps, attached with AttachSock.
	Sock bpfobj.SockObjects
	// Xdp is bpf_xdp (bpf-lb-acceleration): NodePort served at XDP, sharing the load
	// balancer's maps; the agent attaches XDP with AttachXDP when acceleration is on.
	Xdp bpfobj.XdpObjects

	// The programs, to attach with AttachTCX.
	FromContainer *ebpf.Program // tcx ingress of a pod's host-side veth
	ToContainer   *ebpf.Program // tcx egress of a pod's host-side veth
	FromNetdev    *ebpf.Program // tcx ingress of the node's underlay NIC
	ToNetdev      *ebpf.Program // tcx egress of the node's underlay NIC
	// FromOverlay is for the tcx ingress of the node's collect_md vxlan device
	// (cilium_vxlan) with VXLAN tunnelling: it delivers what the device decapsulated.
	FromOverlay *ebpf.Program
	// FromHostSvc is for the tcx ingress of pp_svc_in, where the node's own packets to
	// ClusterIPs arrive (host-namespace clients without socket-LB, bpf/lib/lb_host.h).
	FromHostSvc *ebpf.Program
	// XDP is for the XDP hook of the node's underlay NIC (AttachXDP).
	XDP *ebpf.Program

	// Maps are the shared endpoint, ipcache and node maps with typed accessors.
	Maps *maps.Maps
	// LB are the service load-balancer maps (services, backends, Maglev tables,
	// reverse NAT, conntrack, SNAT) with typed accessors.
	LB *maps.LB
	// TraceEvents is the shared trace ring buffer (trace.NewReader).
	TraceEvents *ebpf.Map
	// Masq are bpf_host's masquerading maps.
	Masq *maps.Masq
	// EgressGW is the egress gateway policy map (bpf/lib/egressgw.h), shared by
	// bpf_lxc, bpf_host and bpf_overlay.
	EgressGW *maps.EgressGW
}

// LoadDatapath probes the kernel for the features the datapath needs, then loads
// bpf_lxc, bpf_host and bpf_overlay with cfg set in .rodata and their maps shared
// (`bpftool prog loadall bpf_lxc.o DIR pinmaps PINPATH`, once per object). opts may
// be nil. cfg is built by bpfconfig.Build (tests may adjust its fields) and checked
// with bpfconfig.Check. With VXLAN, the vxlan device must exist before the load: its
// ifindex is part of cfg (bpfconfig.Node.VXLANIfindex).
// Close the Datapath when done: programs stay attached only through their links,
// pinned maps stay pinned.
func LoadDatapath(cfg bpfconfig.Config, opts *Options) (*Datapath, error) {
	if opts == nil {
		opts = &Options{}
	}
	if err := bpfconfig.Check(cfg); err != nil {
		return nil, err
	}
	if err := CheckFeatures(); err != nil {
		return nil, fmt.Errorf("load datapath: %w", err)
	}
	lxcSpec, err := bpfobj.LoadLxc()
	if err != nil {
		return nil, fmt.Errorf("load bpf_lxc spec: %w", err)
	}
	hostSpec, err := bpfobj.LoadHost()
	if err != nil {
		return nil, fmt.Errorf("load bpf_host spec: %w", err)
	}
	overlaySpec, err := bpfobj.LoadOverlay()
	if err != nil {
		return nil, fmt.Errorf("load bpf_overlay spec: %w", err)
	}
	sockSpec, err := bpfobj.LoadSock()
	if err != nil {
		return nil, fmt.Errorf("load bpf_sock spec: %w", err)
	}
	xdpSpec, err := bpfobj.LoadXdp()
	if err != nil {
		return nil, fmt.Errorf("load bpf_xdp spec: %w", err)
	}
	if opts.GeneveTestOption {
		if err := lxcSpec.Variables["GENEVE_TEST_OPT"].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("set GENEVE_TEST_OPT: %w", err)
		}
	}
	for _, spec := range []*ebpf.CollectionSpec{lxcSpec, hostSpec, overlaySpec, sockSpec, xdpSpec} {
		if err := setConfig(spec, cfg); err != nil {
			return nil, err
		}
		if err := resizeMaps(spec, opts.MapSizes, cfg); err != nil {
			return nil, err
		}
		if opts.PinPath == "" {
			unpin(spec)
		}
	}
	if opts.PinPath != "" {
		if err := replaceIncompatiblePins(lxcSpec, opts.PinPath, lbMaps); err != nil {
			return nil, err
		}
	}

	d := &Datapath{}
	collOpts := &ebpf.CollectionOptions{Maps: ebpf.MapOptions{PinPath: opts.PinPath}}
	if err := lxcSpec.LoadAndAssign(&d.Lxc, collOpts); err != nil {
		return nil, fmt.Errorf("load bpf_lxc: %w", explainVerifier(err))
	}
	if opts.PinPath == "" {
		// Without pins, bpf_host and bpf_overlay take bpf_lxc's maps directly.
		collOpts.MapReplacements = map[string]*ebpf.Map{
			MapEndpoints:      d.Lxc.Endpoints,
			MapIPCache:        d.Lxc.Ipcache,
			MapNodes:          d.Lxc.Nodes,
			MapTraceEvents:    d.Lxc.TraceEvents,
			MapLBServices:     d.Lxc.LbServices,
			MapLBBackendSlots: d.Lxc.LbBackendSlots,
			MapLBBackends:     d.Lxc.LbBackends,
			MapLBRevNat:       d.Lxc.LbRevNat,
			MapLBMaglev:       d.Lxc.LbMaglev,
			MapCTTCP:          d.Lxc.CtTcp,
			MapCTAny:          d.Lxc.CtAny,
			MapSNAT:           d.Lxc.Snat,
			MapLBAffinity:     d.Lxc.LbAffinity,
			MapLBSourceRanges: d.Lxc.LbSourceRanges,
			MapLBFrag:         d.Lxc.LbFrag,
			MapPolicy:         d.Lxc.Policy,
			MapPolicyCT:       d.Lxc.PolicyCt,
			MapPolicyRev:      d.Lxc.PolicyRev,
			MapEgressGW:       d.Lxc.EgressGwPolicy,
			MapDPGen:          d.Lxc.DpGen,
		}
	}
	if err := hostSpec.LoadAndAssign(&d.Host, collOpts); err != nil {
		d.Lxc.Close()
		return nil, fmt.Errorf("load bpf_host: %w", explainVerifier(err))
	}
	if err := overlaySpec.LoadAndAssign(&d.Overlay, collOpts); err != nil {
		d.Lxc.Close()
		d.Host.Close()
		return nil, fmt.Errorf("load bpf_overlay: %w", explainVerifier(err))
	}
	// bpf_sock has no egress gateway map.
	delete(collOpts.MapReplacements, MapEgressGW)
	if err := sockSpec.LoadAndAssign(&d.Sock, collOpts); err != nil {
		d.Lxc.Close()
		d.Host.Close()
		d.Overlay.Close()
		return nil, fmt.Errorf("load bpf_sock: %w", explainVerifier(err))
	}
	if err := xdpSpec.LoadAndAssign(&d.Xdp, collOpts); err != nil {
		d.Lxc.Close()
		d.Host.Close()
		d.Overlay.Close()
		d.Sock.Close()
		return nil, fmt.Errorf("load bpf_xdp: %w", explainVerifier(err))
	}
	// A new dp_gen is all zeros, which caches nothing: both generations start at 1.
	// A pinned one keeps its count (entries cached before a restart stay valid only
	// while nothing changed).
	if err := maps.StartGenerations(d.Lxc.DpGen); err != nil {
		d.Close()
		return nil, err
	}
	d.XDP = d.Xdp.XdpEntry
	d.FromContainer, d.ToContainer = d.Lxc.FromContainer, d.Lxc.ToContainer
	d.FromNetdev, d.ToNetdev = d.Host.FromNetdev, d.Host.ToNetdev
	d.FromOverlay = d.Overlay.FromOverlay
	d.FromHostSvc = d.Host.FromHostSvc
	d.Maps = &maps.Maps{Endpoints: d.Lxc.Endpoints, IPCache: d.Lxc.Ipcache, Nodes: d.Lxc.Nodes}
	d.LB = &maps.LB{
		Services: d.Lxc.LbServices, BackendSlots: d.Lxc.LbBackendSlots, Backends: d.Lxc.LbBackends,
		RevNat: d.Lxc.LbRevNat, Maglev: d.Lxc.LbMaglev, CTTCP: d.Lxc.CtTcp, CTAny: d.Lxc.CtAny, SNAT: d.Lxc.Snat,
		Affinity: d.Lxc.LbAffinity, SourceRanges: d.Lxc.LbSourceRanges, Gen: d.Lxc.DpGen,
		MaglevTableSize: maglevTableSize(cfg),
	}
	d.TraceEvents = d.Lxc.TraceEvents
	d.Masq = &maps.Masq{NonMasq: d.Host.MasqNonmasq, Addrs: d.Host.MasqAddrs, Stats: d.Host.MasqStats}
	d.EgressGW = &maps.EgressGW{Policy: d.Lxc.EgressGwPolicy}
	return d, nil
}

func resizeMaps(spec *ebpf.CollectionSpec, s MapSizes, cfg bpfconfig.Config) error {
	sizes := map[string]uint32{
		MapEndpoints: s.Endpoints, MapIPCache: s.IPCache, MapNodes: s.Nodes, MapTraceEvents: s.TraceEvents,
		MapLBServices: s.LBServices, MapLBBackendSlots: s.LBBackendSlots, MapLBBackends: s.LBBackends,
		MapLBRevNat: s.LBRevNat, MapLBMaglev: s.LBMaglev, MapCTTCP: s.CTTCP, MapCTAny: s.CTAny, MapSNAT: s.SNAT,
	}
	if cfg.LbEnabled == 0 {
		for _, name := range lruMaps {
			// BPF masquerading keeps its entries in the snat map.
			if sizes[name] == 0 && (name != MapSNAT || cfg.MasqEnabled == 0) {
				sizes[name] = 1
			}
		}
	}
	if m, ok := spec.Maps[MapLBMaglev]; ok && m.InnerMap != nil {
		m.InnerMap.MaxEntries = maglevTableSize(cfg)
	}
	for name, size := range sizes {
		if size == 0 {
			continue
		}
		m, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("resize map %s: not in the object", name)
		}
		m.MaxEntries = size
	}
	return nil
}

// Close releases the objects. Maps pinned under Options.PinPath stay pinned: remove
// them with Unpin.
func (d *Datapath) Close() error {
	return errors.Join(d.Lxc.Close(), d.Host.Close(), d.Overlay.Close(), d.Sock.Close(), d.Xdp.Close())
}

// maglevTableSize is the M of cfg, or the default M while the load balancer is off
// (the inner map template still needs a size).
func maglevTableSize(cfg bpfconfig.Config) uint32 {
	if cfg.LbMaglevTableSize != 0 {
		return cfg.LbMaglevTableSize
	}
	return maglev.DefaultTableSize
}

// replaceIncompatiblePins removes the pins under pinPath of the named maps whose
// pinned instance no longer matches spec (type, key, value, size, flags), so the
// load creates them anew (`rm PINPATH/NAME`).
func replaceIncompatiblePins(spec *ebpf.CollectionSpec, pinPath string, names []string) error {
	for _, name := range names {
		ms, ok := spec.Maps[name]
		if !ok {
			return fmt.Errorf("check pinned map %s: not in the object", name)
		}
		path := filepath.Join(pinPath, name)
		m, err := ebpf.LoadPinnedMap(path, nil)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("check pinned map %s: %w", name, err)
		}
		incompatible := ms.Compatible(m)
		m.Close()
		if incompatible == nil {
			continue
		}
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("replace pinned map %s (%v): %w", name, incompatible, err)
		}
	}
	return nil
}

// Unpin removes the shared maps from the bpffs (`rm PINPATH/{endpoints,...}`); the
// maps live on while loaded programs or open handles use them.
func (d *Datapath) Unpin() error {
	var errs []error
	for _, m := range []*ebpf.Map{d.Lxc.Endpoints, d.Lxc.Ipcache, d.Lxc.Nodes, d.Lxc.TraceEvents,
		d.Lxc.LbServices, d.Lxc.LbBackendSlots, d.Lxc.LbBackends, d.Lxc.LbRevNat, d.Lxc.LbMaglev,
		d.Lxc.CtTcp, d.Lxc.CtAny, d.Lxc.Snat, d.Sock.LbSockRev, d.Host.MasqNonmasq, d.Host.MasqAddrs, d.Host.MasqStats,
		d.Lxc.EgressGwPolicy, d.Lxc.LbAffinity, d.Lxc.LbSourceRanges, d.Lxc.LbFrag, d.Lxc.Policy, d.Lxc.PolicyCt, d.Lxc.PolicyRev, d.Lxc.DpGen} {
		if m != nil && m.IsPinned() {
			if err := m.Unpin(); err != nil {
				errs = append(errs, fmt.Errorf("unpin %s: %w", m, err))
			}
		}
	}
	return errors.Join(errs...)
}

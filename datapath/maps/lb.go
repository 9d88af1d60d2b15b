// SPDX-License-Identifier: Apache-2.0

package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfobj"
	"podpath/datapath/btfnames"
)

// The layouts of bpf/lib/lb_maps.h, conntrack.h and nat.h as bpf2go generates them
// (sizes are checked against BTF in tests).
type (
	serviceKey = bpfobj.LxcLbServiceKey
	serviceVal = bpfobj.LxcLbService
	slotKey    = bpfobj.LxcLbSlotKey
	backendVal = bpfobj.LxcLbBackend
	revNatVal  = bpfobj.LxcLbRevNat
	ctKey      = bpfobj.LxcCtKey
	ctEntry    = bpfobj.LxcCtEntry
)

// LB are one node's service load-balancer maps. The zero value is unusable: get one
// from loader.Datapath.LB or OpenPinnedLB.
//
// How the agent programs a Kubernetes Service (one service ID per backend set):
//
//	BackendUpsert(b) for every endpoint          (ids stable cluster-wide for Maglev)
//	MaglevSet(id, maglev.Table(...))             (SVC_F_MAGLEV services, before the frontend)
//	RevNatUpsert(revNatID, frontend)             (one per frontend)
//	ServiceUpsert(Service{...})                  (one per frontend: ClusterIP:port,
//	                                              each node IP:nodePort, external IPs)
//
// and takes it down in the reverse order: ServiceDelete for each frontend, then
// ServiceBackendsDelete(id), RevNatDelete, BackendDelete for backends no service uses.
// A terminating endpoint: BackendSetState(id, BackendTerminating), then ServiceUpsert
// and MaglevSet without it; its established flows keep it until they end.
type LB struct {
	Services     *ebpf.Map // lb_services: frontend -> service id, backend count, flags, rev NAT id
	BackendSlots *ebpf.Map // lb_backend_slots: (service id, slot 1..n) -> backend id
	Backends     *ebpf.Map // lb_backends: backend id -> address, port, state
	RevNat       *ebpf.Map // lb_rev_nat: rev NAT id -> frontend address and port
	Maglev       *ebpf.Map // lb_maglev: service id -> Maglev table (an inner array map)
	CTTCP        *ebpf.Map // ct_tcp: conntrack of TCP flows
	CTAny        *ebpf.Map // ct_any: conntrack of UDP flows
	SNAT         *ebpf.Map // snat: reply entries of NodePort SNAT flows
	Affinity     *ebpf.Map // lb_affinity: (service id, client) -> backend id, last used (sessionAffinity)
	SourceRanges *ebpf.Map // lb_source_ranges: (service id, CIDR) (loadBalancerSourceRanges)
	// Gen is dp_gen (bpf/lib/dp_gen.h): the backend methods below bump GenBackend
	// themselves, so an established flow never keeps a backend cached from before a
	// change, whoever made it. Nil: no bumps (a datapath built without it).
	Gen *ebpf.Map
	// MaglevTableSize is M, the length of every Maglev table
	// (bpfconfig.Config.LbMaglevTableSize).
	MaglevTableSize uint32
}

// lbPinned are the pin names of the LB maps, in the order of LB's fields.
var lbPinned = []string{"lb_services", "lb_backend_slots", "lb_backends", "lb_rev_nat", "lb_maglev", "ct_tcp", "ct_any", "snat",
	"lb_affinity", "lb_source_ranges", "dp_gen"}

func (l *LB) all() []**ebpf.Map {
	return []**ebpf.Map{&l.Services, &l.BackendSlots, &l.Backends, &l.RevNat, &l.Maglev, &l.CTTCP, &l.CTAny, &l.SNAT,
		&l.Affinity, &l.SourceRanges, &l.Gen}
}

// OpenPinnedLB opens the LB maps a loader pinned under pinPath; maglevTableSize is the
// M the datapath was loaded with. Close the result when done.
func OpenPinnedLB(pinPath string, maglevTableSize uint32) (*LB, error) {
	l := &LB{MaglevTableSize: maglevTableSize}
	for i, dst := range l.all() {
		m, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, lbPinned[i]), nil)
		if err != nil {
			l.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", lbPinned[i], err)
		}
		*dst = m
	}
	return l, nil
}

// Close closes the map handles. Do not close the LB of a loader.Datapath: the
// Datapath owns them.
func (l *LB) Close() error {
	var errs []error
	for _, m := range l.all() {
		if *m != nil {
			errs = append(errs, (*m).Close())
		}
	}
	return errors.Join(errs...)
}

// Proto is an IP protocol number of a frontend or backend.
type Proto uint8

const (
	ProtoTCP Proto = unix.IPPROTO_TCP
	ProtoUDP Proto = unix.IPPROTO_UDP
)

func (p Proto) String() string {
	switch p {
	case ProtoTCP:
		return "tcp"
	case ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("proto(%d)", uint8(p))
}

// ServiceFlags are enum lb_service_flags of bpf/lib/lb_maps.h.
type ServiceFlags uint16

const (
	// ServiceClusterIP: reachable from pods only.
	ServiceClusterIP = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_CLUSTERIP)
	// ServiceNodePort: a node IP:nodePort, reachable from outside through the NIC.
	ServiceNodePort = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_NODEPORT)
	// ServiceExternal: an external or LoadBalancer IP, reachable from outside.
	ServiceExternal = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_EXTERNAL)
	// ServiceMaglev: new flows pick their backend from the service's Maglev table
	// (MaglevSet); without it, at random among its slots.
	ServiceMaglev = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_MAGLEV)
	// ServiceLocal: externalTrafficPolicy/internalTrafficPolicy Local; Backends are this
	// node's only, and none is DROP_SVC_NO_LOCAL_BACKEND rather than a reject.
	ServiceLocal = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_LOCAL)
	// ServiceAffinity: sessionAffinity ClientIP for Service.AffinityTimeout seconds.
	ServiceAffinity = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_AFFINITY)
	// ServiceSourceRange: loadBalancerSourceRanges (SourceRangeSet) apply to clients
	// from outside.
	ServiceSourceRange = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_SOURCE_RANGE)
	// ServiceFallback: no backend is ready; Backends (and the Maglev table) hold the
	// terminating ones, which new flows may then take (KEP-1669).
	ServiceFallback = ServiceFlags(bpfobj.LxcLbServiceFlagsSVC_F_FALLBACK)
)

// String names the flags from BTF, "clusterip|maglev" for SVC_F_CLUSTERIP|SVC_F_MAGLEV.
func (f ServiceFlags) String() string { return btfnames.Flags("lb_service_flags", "SVC_F_", uint64(f)) }

// Scopes of a frontend (enum lb_scope). The datapath looks up ScopeExternal only.
const (
	ScopeExternal = uint8(bpfobj.LxcLbScopeLB_SCOPE_EXTERNAL)
	ScopeInternal = uint8(bpfobj.LxcLbScopeLB_SCOPE_INTERNAL)
)

// ServiceKey is a frontend: address, port and protocol. NodePort frontends are keyed
// on each of the node's IPs explicitly (Addr = the node IP).
type ServiceKey struct {
	Addr  netip.Addr
	Port  uint16
	Proto Proto
	Scope uint8 // ScopeExternal
}

func (k ServiceKey) String() string {
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(k.Addr, k.Port), k.Proto)
}

// Service is a frontend and the backend set new flows to it go to.
type Service struct {
	ServiceKey
	// ID names the backend set: its slots (Backends) and its Maglev table. Frontends
	// of one Kubernetes Service may share it; they then share the slots too, so upsert
	// each with the same Backends.
	ID    uint32
	Flags ServiceFlags
	// RevNatID names the lb_rev_nat entry replies get as their source: this
	// frontend's address and port (RevNatUpsert).
	RevNatID uint32
	// Backends are the backend ids random selection picks from, in slot order (slots
	// 1..len). List active backends only: the datapath skips a non-active one it meets,
	// but only looks at a few slots. Empty: new flows are dropped
	// (DROP_NO_SERVICE_BACKEND) unless the Maglev table gives them a backend.
	Backends []uint32
	// AffinityTimeout is sessionAffinityConfig.clientIP.timeoutSeconds (ServiceAffinity).
	AffinityTimeout uint32
}

// be16 is a port as a __be16 field: the wire bytes in memory order.
func be16(port uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	return binary.NativeEndian.Uint16(b[:])
}

func portFromBE16(v uint16) uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], v)
	return binary.BigEndian.Uint16(b[:])
}

func (k ServiceKey) wire(op string) (serviceKey, error) {
	if err := ipv4(op, k.Addr); err != nil {
		return serviceKey{}, err
	}
	if k.Proto != ProtoTCP && k.Proto != ProtoUDP {
		return serviceKey{}, fmt.Errorf("%s: protocol %s: want tcp or udp", op, k.Proto)
	}
	return serviceKey{Addr: be32(k.Addr), Dport: be16(k.Port), Proto: uint8(k.Proto), Scope: k.Scope}, nil
}

// maxSlots is what the backend_count field can hold.
const maxSlots = 0xffff

// ServiceUpsert adds or replaces the frontend s and the slots of its ID
// (`bpftool map update pinned PINPATH/lb_services key ... value ...`). The slots are
// written before the frontend, so the datapath never sees a count beyond them; slots
// past len(s.Backends) left from a larger set are removed after it.
func (l *LB) ServiceUpsert(s Service) error {
	op := fmt.Sprintf("service upsert %s", s.ServiceKey)
	k, err := s.ServiceKey.wire(op)
	if err != nil {
		return err
	}
	if s.ID == 0 {
		return fmt.Errorf("%s: service id 0 is reserved", op)
	}
	if len(s.Backends) > maxSlots {
		return fmt.Errorf("%s: %d backends, at most %d", op, len(s.Backends), maxSlots)
	}
	for i, id := range s.Backends {
		if id == 0 {
			return fmt.Errorf("%s: backend id 0 in slot %d is reserved", op, i+1)
		}
		if err := l.BackendSlots.Put(slotKey{ServiceId: s.ID, Slot: uint16(i + 1)}, id); err != nil {
			return fmt.Errorf("%s: slot %d: %w", op, i+1, err)
		}
	}
	v := serviceVal{ServiceId: s.ID, BackendCount: uint16(len(s.Backends)), Flags: uint16(s.Flags), RevNatId: s.RevNatID,
		AffinityTimeout: s.AffinityTimeout}
	if err := l.Services.Put(k, v); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := l.deleteSlotsFrom(s.ID, len(s.Backends)+1); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// deleteSlotsFrom removes slots first, first+1, ... of id up to the first missing one.
func (l *LB) deleteSlotsFrom(id uint32, first int) error {
	for slot := first; slot <= maxSlots; slot++ {
		err := l.BackendSlots.Delete(slotKey{ServiceId: id, Slot: uint16(slot)})
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("delete slot %d of service %d: %w", slot, id, err)
		}
	}
	return nil
}

// ServiceDelete removes the frontend k (`bpftool map delete pinned PINPATH/lb_services
// key ...`); its ID's slots and Maglev table stay for the other frontends that may
// share them (ServiceBackendsDelete). A missing frontend is an error matching
// ebpf.ErrKeyNotExist. The datapath looks the frontend up before conntrack, so the
// frontend's flows, established ones included, are no longer translated (as in
// Cilium); replies already in flight are translated back while the rev NAT entry
// exists.
func (l *LB) ServiceDelete(k ServiceKey) error {
	op := fmt.Sprintf("service delete %s", k)
	wk, err := k.wire(op)
	if err != nil {
		return err
	}
	if err := l.Services.Delete(wk); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// ServiceBackendsDelete removes the slots and the Maglev table of service id, once no
// frontend uses it any more.
func (l *LB) ServiceBackendsDelete(id uint32) error {
	op := fmt.Sprintf("service backends delete %d", id)
	if err := l.deleteSlotsFrom(id, 1); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if err := l.Maglev.Delete(id); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("%s: maglev table: %w", op, err)
	}
	return nil
}

// ServiceLookup returns the frontend k with its slots.
func (l *LB) ServiceLookup(k ServiceKey) (Service, error) {
	op := fmt.Sprintf("service lookup %s", k)
	wk, err := k.wire(op)
	if err != nil {
		return Service{}, err
	}
	var v serviceVal
	if err := l.Services.Lookup(wk, &v); err != nil {
		return Service{}, fmt.Errorf("%s: %w", op, err)
	}
	s, err := l.serviceFrom(wk, v)
	if err != nil {
		return Service{}, fmt.Errorf("%s: %w", op, err)
	}
	return s, nil
}

func (l *LB) serviceFrom(k serviceKey, v serviceVal) (Service, error) {
	s := Service{
		ServiceKey: ServiceKey{Addr: addrFromBE32(k.Addr), Port: portFromBE16(k.Dport), Proto: Proto(k.Proto), Scope: k.Scope},
		ID:         v.ServiceId, Flags: ServiceFlags(v.Flags), RevNatID: v.RevNatId,
		AffinityTimeout: v.AffinityTimeout,
	}
	for slot := 1; slot <= int(v.BackendCount); slot++ {
		var id uint32
		err := l.BackendSlots.Lookup(slotKey{ServiceId: v.ServiceId, Slot: uint16(slot)}, &id)
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			id = 0 // a hole: reported as backend 0
		} else if err != nil {
			return Service{}, fmt.Errorf("slot %d: %w", slot, err)
		}
		s.Backends = append(s.Backends, id)
	}
	return s, nil
}

// ServiceList returns every frontend with its slots, by address, port and protocol
// (`bpftool map dump pinned PINPATH/lb_services`).
func (l *LB) ServiceList() ([]Service, error) {
	var (
		k   serviceKey
		v   serviceVal
		out []Service
	)
	it := l.Services.Iterate()
	for it.Next(&k, &v) {
		s, err := l.serviceFrom(k, v)
		if err != nil {
			return nil, fmt.Errorf("service list: %w", err)
		}
		out = append(out, s)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("service list: %w", err)
	}
	slices.SortFunc(out, func(a, b Service) int {
		if c := a.Addr.Compare(b.Addr); c != 0 {
			return c
		}
		if a.Port != b.Port {
			return int(a.Port) - int(b.Port)
		}
		return int(a.Proto) - int(b.Proto)
	})
	return out, nil
}

// BackendState is enum lb_backend_state of bpf/lib/lb_maps.h.
type BackendState uint8

const (
	// BackendActive backends get new flows.
	BackendActive = BackendState(bpfobj.LxcLbBackendStateLB_BACKEND_ACTIVE)
	// BackendTerminating backends get no new flow; flows conntrack gave them go on.
	BackendTerminating = BackendState(bpfobj.LxcLbBackendStateLB_BACKEND_TERMINATING)
	// BackendMaintenance: as terminating, set by the operator.
	BackendMaintenance = BackendState(bpfobj.LxcLbBackendStateLB_BACKEND_MAINTENANCE)
)

// String names the state from BTF: "terminating" for LB_BACKEND_TERMINATING.
func (s BackendState) String() string {
	return btfnames.Short("lb_backend_state", "LB_BACKEND_", uint64(s), "state")
}

// Backend is one endpoint of a service: where translated flows go.
type Backend struct {
	// ID is the key of lb_backends, referenced by slots, Maglev tables and
	// conntrack. 0 is reserved. Maglev needs IDs that are the same on every node.
	ID    uint32
	Addr  netip.Addr
	Port  uint16
	Proto Proto
	State BackendState
}

// BackendUpsert adds or replaces b (`bpftool map update pinned PINPATH/lb_backends ...`).
func (l *LB) BackendUpsert(b Backend) error {
	op := fmt.Sprintf("backend upsert %d (%s)", b.ID, netip.AddrPortFrom(b.Addr, b.Port))
	if err := ipv4(op, b.Addr); err != nil {
		return err
	}
	if b.ID == 0 {
		return fmt.Errorf("%s: backend id 0 is reserved", op)
	}
	if b.State > BackendMaintenance {
		return fmt.Errorf("%s: unknown state %d", op, b.State)
	}
	v := backendVal{Addr: be32(b.Addr), Port: be16(b.Port), Proto: uint8(b.Proto), State: uint8(b.State)}
	var old backendVal
	changed := l.Backends.Lookup(b.ID, &old) == nil && old != v
	if err := l.Backends.Put(b.ID, v); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	if changed {
		return l.bumpBackends(op)
	}
	return nil
}

// bumpBackends invalidates the backends cached in conntrack entries, after the change.
func (l *LB) bumpBackends(op string) error {
	if l.Gen == nil {
		return nil
	}
	if _, err := BumpGeneration(l.Gen, GenBackend); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// BackendDelete removes backend id (`bpftool map delete pinned PINPATH/lb_backends
// key ID`). Flows tracked to it select a new backend with their next packet. A
// missing backend is an error matching ebpf.ErrKeyNotExist.
func (l *LB) BackendDelete(id uint32) error {
	if err := l.Backends.Delete(id); err != nil {
		return fmt.Errorf("backend delete %d: %w", id, err)
	}
	return l.bumpBackends(fmt.Sprintf("backend delete %d", id))
}

// BackendSetState changes the state of the existing backend id: a non-active backend
// gets no new flows and keeps its established ones.
func (l *LB) BackendSetState(id uint32, state BackendState) error {
	op := fmt.Sprintf("backend set state %d %s", id, state)
	if state > BackendMaintenance {
		return fmt.Errorf("%s: unknown state", op)
	}
	var v backendVal
	if err := l.Backends.Lookup(id, &v); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	v.State = uint8(state)
	if err := l.Backends.Update(id, v, ebpf.UpdateExist); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return l.bumpBackends(op)
}

// BackendLookup returns backend id.
func (l *LB) BackendLookup(id uint32) (Backend, error) {
	var v backendVal
	if err := l.Backends.Lookup(id, &v); err != nil {
		return Backend{}, fmt.Errorf("backend lookup %d: %w", id, err)
	}
	return backendFrom(id, v), nil
}

func backendFrom(id uint32, v backendVal) Backend {
	return Backend{ID: id, Addr: addrFromBE32(v.Addr), Port: portFromBE16(v.Port), Proto: Proto(v.Proto), State: BackendState(v.State)}
}

// BackendList returns every backend, by ID (`bpftool map dump pinned PINPATH/lb_backends`).
func (l *LB) BackendList() ([]Backend, error) {
	var (
		k   uint32
		v   backendVal
		out []Backend
	)
	it := l.Backends.Iterate()
	for it.Next(&k, &v) {
		out = append(out, backendFrom(k, v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("backend list: %w", err)
	}
	slices.SortFunc(out, func(a, b Backend) int { return int(a.ID) - int(b.ID) })
	return out, nil
}

// maglevInnerFlags are the inner arrays' flags, as bpf/lib/lb_maps.h declares them:
// BPF_F_INNER_MAP (the outer map takes arrays of any size, so a change of M needs no
// new outer map) and BPF_F_MMAPABLE (fillMmapable).
const maglevInnerFlags = unix.BPF_F_INNER_MAP | unix.BPF_F_MMAPABLE

// MaglevSet gives service id the Maglev table (maglev.Table with M =
// MaglevTableSize), replacing any previous one in one step: a new inner array is
// filled first, then swapped into lb_maglev, so the datapath sees the old table or
// the new one, never a mix (`bpftool map update pinned PINPATH/lb_maglev key ID
// inner_map fd ...`). Entries are backend ids.
func (l *LB) MaglevSet(id uint32, table []uint32) error {
	return l.MaglevSetMany(map[uint32][]uint32{id: table})
}

// maglevBatch bounds the inner maps open at once while MaglevSetMany installs them.
const maglevBatch = 512

// MaglevSetMany installs the Maglev tables of many services (service id -> table).
// Each table is a new inner array; the outer map takes them in batches
// (BPF_MAP_UPDATE_BATCH): the kernel waits for an RCU grace period after every update
// of a map-in-map (programs still running must stop seeing the replaced inner map),
// about 10 ms here, so one update per service would cost 100 s for 10,000 services,
// one per batch of maglevBatch costs 0.2 s.
func (l *LB) MaglevSetMany(tables map[uint32][]uint32) error {
	ids := slices.Sorted(maps.Keys(tables))
	for start := 0; start < len(ids); start += maglevBatch {
		batch := ids[start:min(start+maglevBatch, len(ids))]
		if err := l.maglevInstall(batch, tables); err != nil {
			return err
		}
	}
	return nil
}

func (l *LB) maglevInstall(ids []uint32, tables map[uint32][]uint32) error {
	inners := make([]*ebpf.Map, 0, len(ids))
	defer func() {
		for _, m := range inners {
			m.Close()
		}
	}()
	fds := make([]uint32, 0, len(ids))
	for _, id := range ids {
		op := fmt.Sprintf("maglev set %d", id)
		table := tables[id]
		if uint32(len(table)) != l.MaglevTableSize {
			return fmt.Errorf("%s: table of %d entries, the datapath's M is %d", op, len(table), l.MaglevTableSize)
		}
		inner, err := ebpf.NewMap(&ebpf.MapSpec{
			Name: "lb_maglev_tbl", Type: ebpf.Array, KeySize: 4, ValueSize: 4,
			MaxEntries: l.MaglevTableSize, Flags: maglevInnerFlags,
		})
		if err != nil {
			return fmt.Errorf("%s: create table: %w", op, err)
		}
		inners = append(inners, inner)
		if err := fillMmapable(inner, table); err != nil {
			return fmt.Errorf("%s: fill table: %w", op, err)
		}
		fds = append(fds, uint32(inner.FD()))
	}
	if _, err := l.Maglev.BatchUpdate(ids, fds, nil); err != nil {
		return fmt.Errorf("maglev set %d tables (ids %d..%d): %w", len(ids), ids[0], ids[len(ids)-1], err)
	}
	return nil
}

// fillMmapable writes values into the BPF_F_MMAPABLE array m through a shared
// mapping: element i at i*8 (array elements are 8-byte aligned), one memory copy
// instead of a syscall per element.
func fillMmapable(m *ebpf.Map, values []uint32) error {
	page := os.Getpagesize()
	size := (len(values)*8 + page - 1) / page * page
	mem, err := unix.Mmap(m.FD(), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap: %w", err)
	}
	for i, v := range values {
		binary.NativeEndian.PutUint32(mem[i*8:], v)
	}
	return unix.Munmap(mem)
}

// MaglevLookup returns the Maglev table of service id.
func (l *LB) MaglevLookup(id uint32) ([]uint32, error) {
	op := fmt.Sprintf("maglev lookup %d", id)
	var innerID uint32
	if err := l.Maglev.Lookup(id, &innerID); err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	inner, err := ebpf.NewMapFromID(ebpf.MapID(innerID))
	if err != nil {
		return nil, fmt.Errorf("%s: open table: %w", op, err)
	}
	defer inner.Close()
	out := make([]uint32, inner.MaxEntries())
	for i := range out {
		if err := inner.Lookup(uint32(i), &out[i]); err != nil {
			return nil, fmt.Errorf("%s: entry %d: %w", op, i, err)
		}
	}
	return out, nil
}

// MaglevDelete removes the Maglev table of service id; its new flows then pick at
// random among its slots.
func (l *LB) MaglevDelete(id uint32) error {
	if err := l.Maglev.Delete(id); err != nil {
		return fmt.Errorf("maglev delete %d: %w", id, err)
	}
	return nil
}

// RevNatUpsert sets what replies of rev NAT id get as their source: the frontend
// address and port the client used (`bpftool map update pinned PINPATH/lb_rev_nat ...`).
func (l *LB) RevNatUpsert(id uint32, frontend netip.AddrPort) error {
	op := fmt.Sprintf("rev nat upsert %d %s", id, frontend)
	if err := ipv4(op, frontend.Addr()); err != nil {
		return err
	}
	if id == 0 {
		return fmt.Errorf("%s: rev nat id 0 is reserved", op)
	}
	if err := l.RevNat.Put(id, revNatVal{Addr: be32(frontend.Addr()), Port: be16(frontend.Port())}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// RevNatDelete removes rev NAT id: replies of its flows are no longer translated.
func (l *LB) RevNatDelete(id uint32) error {
	if err := l.RevNat.Delete(id); err != nil {
		return fmt.Errorf("rev nat delete %d: %w", id, err)
	}
	return nil
}

// RevNatList returns every rev NAT entry.
func (l *LB) RevNatList() (map[uint32]netip.AddrPort, error) {
	var (
		k uint32
		v revNatVal
	)
	out := map[uint32]netip.AddrPort{}
	it := l.RevNat.Iterate()
	for it.Next(&k, &v) {
		out[k] = netip.AddrPortFrom(addrFromBE32(v.Addr), portFromBE16(v.Port))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("rev nat list: %w", err)
	}
	return out, nil
}

// CTDir is enum ct_dir of bpf/lib/conntrack.h.
type CTDir uint8

const (
	// CTService entries key a flow as the client sends it, to the frontend.
	CTService = CTDir(bpfobj.LxcCtDirCT_SERVICE)
	// CTReply entries key the backend's replies as they reach the node.
	CTReply = CTDir(bpfobj.LxcCtDirCT_REPLY)
	// CTEgress entries (snat map) key a masqueraded flow as the pod sends it.
	CTEgress = CTDir(bpfobj.LxcCtDirCT_EGRESS)
)

// String names the direction from BTF: "reply" for CT_REPLY.
func (d CTDir) String() string { return btfnames.Short("ct_dir", "CT_", uint64(d), "dir") }

// CTFlags are enum ct_flags of bpf/lib/conntrack.h.
type CTFlags uint16

const (
	CTSynSeen     = CTFlags(bpfobj.LxcCtFlagsCT_F_SYN_SEEN)
	CTEstablished = CTFlags(bpfobj.LxcCtFlagsCT_F_ESTABLISHED)
	CTClosing     = CTFlags(bpfobj.LxcCtFlagsCT_F_CLOSING)
	CTNodePort    = CTFlags(bpfobj.LxcCtFlagsCT_F_NODEPORT)
	CTSNAT        = CTFlags(bpfobj.LxcCtFlagsCT_F_SNAT)
	CTDSR         = CTFlags(bpfobj.LxcCtFlagsCT_F_DSR)
	CTLoopback    = CTFlags(bpfobj.LxcCtFlagsCT_F_LOOPBACK)
	CTMasq        = CTFlags(bpfobj.LxcCtFlagsCT_F_MASQ)
)

// String names the flags from BTF, "syn-seen|established" for
// CT_F_SYN_SEEN|CT_F_ESTABLISHED.
func (f CTFlags) String() string { return btfnames.Flags("ct_flags", "CT_F_", uint64(f)) }

// CTEntry is one entry of ct_tcp, ct_any or snat.
type CTEntry struct {
	Map      string // "ct_tcp", "ct_any" or "snat"
	Src, Dst netip.AddrPort
	Proto    Proto
	Dir      CTDir
	// Lifetime is the expiry in seconds of CLOCK_MONOTONIC (bpf_ktime_get_ns);
	// Remaining is Lifetime minus the time of the listing, negative once expired (an
	// expired entry is treated as missing and overwritten or evicted eventually).
	Lifetime  uint32
	Remaining time.Duration
	Flags     CTFlags
	BackendID uint32
	RevNatID  uint32
	// BackendGen and FIBGen are the dp_gen generations the entry's caches were
	// stored at (CT_SERVICE entries of service flows; 0: nothing cached): its
	// backend's address and locality, and the route to it.
	BackendGen, FIBGen uint32
	// NAT is, for a CT_SERVICE entry with CTSNAT, the source the flow was SNATed to;
	// for an snat map entry, the client its replies are sent back to.
	NAT netip.AddrPort
}

func (e CTEntry) String() string {
	return fmt.Sprintf("%s %s %s -> %s %s backend %d revnat %d %s nat %s expires in %s",
		e.Map, e.Proto, e.Src, e.Dst, e.Dir, e.BackendID, e.RevNatID, e.Flags, e.NAT, e.Remaining)
}

// MonotonicNow is CLOCK_MONOTONIC, the clock of CTEntry.Lifetime.
func MonotonicNow() (time.Duration, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0, fmt.Errorf("read CLOCK_MONOTONIC: %w", err)
	}
	return time.Duration(ts.Nano()), nil
}

// CTList returns every entry of the conntrack and SNAT maps (`bpftool map dump pinned
// PINPATH/ct_tcp` and ct_any, snat), expired ones included, sorted by map, source,
// destination and direction.
func (l *LB) CTList() ([]CTEntry, error) {
	now, err := MonotonicNow()
	if err != nil {
		return nil, fmt.Errorf("ct list: %w", err)
	}
	var out []CTEntry
	for _, m := range []struct {
		name string
		m    *ebpf.Map
	}{{"ct_tcp", l.CTTCP}, {"ct_any", l.CTAny}, {"snat", l.SNAT}} {
		var (
			k ctKey
			v ctEntry
		)
		it := m.m.Iterate()
		for it.Next(&k, &v) {
			e := CTEntry{
				Map:        m.name,
				Src:        netip.AddrPortFrom(addrFromBE32(k.Saddr), portFromBE16(k.Sport)),
				Dst:        netip.AddrPortFrom(addrFromBE32(k.Daddr), portFromBE16(k.Dport)),
				Proto:      Proto(k.Proto),
				Dir:        CTDir(k.Dir),
				Lifetime:   v.Lifetime,
				Remaining:  time.Duration(v.Lifetime)*time.Second - now,
				Flags:      CTFlags(v.Flags),
				BackendID:  v.BackendId,
				RevNatID:   v.RevNatId,
				BackendGen: v.BeGen,
				FIBGen:     v.Fib.Gen,
			}
			if v.NatAddr != 0 || v.NatPort != 0 {
				e.NAT = netip.AddrPortFrom(addrFromBE32(v.NatAddr), portFromBE16(v.NatPort))
			}
			out = append(out, e)
		}
		if err := it.Err(); err != nil {
			return nil, fmt.Errorf("ct list %s: %w", m.name, err)
		}
	}
	slices.SortFunc(out, func(a, b CTEntry) int {
		if c := strings.Compare(a.Map, b.Map); c != 0 {
			return c
		}
		if c := a.Src.Compare(b.Src); c != 0 {
			return c
		}
		if c := a.Dst.Compare(b.Dst); c != 0 {
			return c
		}
		return int(a.Dir) - int(b.Dir)
	})
	return out, nil
}

// CTFlush removes every entry of the conntrack and SNAT maps: established flows pick
// a backend again with their next packet, and SNATed flows break.
func (l *LB) CTFlush() error {
	for _, m := range []*ebpf.Map{l.CTTCP, l.CTAny, l.SNAT} {
		var (
			k    ctKey
			keys []ctKey
		)
		it := m.Iterate()
		var v ctEntry
		for it.Next(&k, &v) {
			keys = append(keys, k)
		}
		if err := it.Err(); err != nil {
			return fmt.Errorf("ct flush %s: %w", m, err)
		}
		for _, k := range keys {
			if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
				return fmt.Errorf("ct flush %s: %w", m, err)
			}
		}
	}
	return nil
}

// AffinityEntry is one client's backend under sessionAffinity ClientIP (lb_affinity).
type AffinityEntry struct {
	ServiceID uint32
	Client    netip.Addr
	BackendID uint32
	// LastUsed is the CLOCK_MONOTONIC second of the client's last new flow.
	LastUsed uint32
}

// AffinityList returns every entry of lb_affinity (`bpftool map dump pinned PINPATH/lb_affinity`).
func (l *LB) AffinityList() ([]AffinityEntry, error) {
	var out []AffinityEntry
	var k bpfobj.LxcLbAffinityKey
	var v bpfobj.LxcLbAffinity
	it := l.Affinity.Iterate()
	for it.Next(&k, &v) {
		out = append(out, AffinityEntry{ServiceID: k.ServiceId, Client: addrFromBE32(k.Client), BackendID: v.BackendId, LastUsed: v.LastUsed})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("affinity list: %w", err)
	}
	return out, nil
}

// AffinityDeleteService removes the affinity entries of service id (its affinity was
// turned off, or the service is gone).
func (l *LB) AffinityDeleteService(id uint32) error {
	list, err := l.AffinityList()
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range list {
		if e.ServiceID != id {
			continue
		}
		k := bpfobj.LxcLbAffinityKey{ServiceId: id, Client: be32(e.Client)}
		if err := l.Affinity.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, fmt.Errorf("affinity delete service %d client %s: %w", id, e.Client, err))
		}
	}
	return errors.Join(errs...)
}

func srcRangeKey(id uint32, p netip.Prefix) bpfobj.LxcLbSrcRangeKey {
	p = p.Masked()
	return bpfobj.LxcLbSrcRangeKey{Prefixlen: 32 + uint32(p.Bits()), ServiceId: id, Addr: be32(p.Addr())}
}

// SourceRangesSet makes ranges the loadBalancerSourceRanges of service id: entries
// not in ranges are removed (`bpftool map update pinned PINPATH/lb_source_ranges ...`).
func (l *LB) SourceRangesSet(id uint32, ranges []netip.Prefix) error {
	op := fmt.Sprintf("source ranges set service %d", id)
	want := map[bpfobj.LxcLbSrcRangeKey]bool{}
	for _, p := range ranges {
		if !p.Addr().Is4() {
			return fmt.Errorf("%s: %s is not an IPv4 prefix", op, p)
		}
		k := srcRangeKey(id, p)
		want[k] = true
		if err := l.SourceRanges.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("%s: %s: %w", op, p, err)
		}
	}
	var stale []bpfobj.LxcLbSrcRangeKey
	var k bpfobj.LxcLbSrcRangeKey
	var v uint8
	it := l.SourceRanges.Iterate()
	for it.Next(&k, &v) {
		if k.ServiceId == id && !want[k] {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	for _, k := range stale {
		if err := l.SourceRanges.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

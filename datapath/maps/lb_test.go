// SPDX-License-Identifier: Apache-2.0

package maps_test

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/internal/testutil"
)

const testM = 251

// lbConfig is a node on 192.168.50.1 with the load balancer on and M = testM.
func lbConfig(t *testing.T) bpfconfig.Config {
	t.Helper()
	c := config.Default()
	c.RoutingMode, c.NativeRoutingCIDR = config.RoutingNative, netip.MustParsePrefix("0.0.0.0/0")
	c.KubeProxyReplacement, c.MaglevTableSize = config.KPRTrue, testM
	cfg, err := bpfconfig.Build(c, bpfconfig.Node{IP: netip.MustParseAddr("192.168.50.1")})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func loadLB(t *testing.T) *maps.LB {
	t.Helper()
	testutil.RequireRoot(t)
	cfg := lbConfig(t)
	d, err := loader.LoadDatapath(cfg, &loader.Options{MapSizes: loader.MapSizes{
		Endpoints: 16, IPCache: 16, Nodes: 16, TraceEvents: 1 << 14,
		LBServices: 16, LBBackendSlots: 64, LBBackends: 16, LBRevNat: 16, LBMaglev: 2048, CTTCP: 64, CTAny: 64, SNAT: 64,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.LB
}

var (
	vip      = netip.MustParseAddr("10.96.0.10")
	be1, be2 = netip.MustParseAddr("10.244.1.20"), netip.MustParseAddr("10.244.2.30")
)

func TestServiceCRUD(t *testing.T) {
	l := loadLB(t)
	svc := maps.Service{
		ServiceKey: maps.ServiceKey{Addr: vip, Port: 80, Proto: maps.ProtoTCP},
		ID:         7, Flags: maps.ServiceClusterIP | maps.ServiceMaglev, RevNatID: 70, Backends: []uint32{1, 2, 3},
	}
	if err := l.ServiceUpsert(svc); err != nil {
		t.Fatal(err)
	}
	got, err := l.ServiceLookup(svc.ServiceKey)
	if err != nil || !reflect.DeepEqual(got, svc) {
		t.Fatalf("lookup: want %+v, got %+v (%v)", svc, got, err)
	}
	// The raw entry is what the datapath reads: address and port as on the wire.
	var raw bpfobj.LxcLbService
	key := bpfobj.LxcLbServiceKey{Addr: wire(vip), Dport: binary.NativeEndian.Uint16([]byte{0, 80}), Proto: 6}
	if err := l.Services.Lookup(key, &raw); err != nil || raw.BackendCount != 3 || raw.ServiceId != 7 || raw.RevNatId != 70 || raw.Flags != 1|8 {
		t.Errorf("raw entry %+v (%v)", raw, err)
	}

	// Shrinking the backend set removes the slots past its end.
	svc.Backends = []uint32{3}
	if err := l.ServiceUpsert(svc); err != nil {
		t.Fatal(err)
	}
	var id uint32
	for slot, want := range map[uint16]bool{1: true, 2: false, 3: false} {
		err := l.BackendSlots.Lookup(bpfobj.LxcLbSlotKey{ServiceId: 7, Slot: slot}, &id)
		if (err == nil) != want {
			t.Errorf("slot %d: present %v, want %v", slot, err == nil, want)
		}
	}
	udp := svc
	udp.Proto, udp.ID, udp.RevNatID, udp.Backends = maps.ProtoUDP, 8, 80, nil
	if err := l.ServiceUpsert(udp); err != nil {
		t.Fatal(err)
	}
	list, err := l.ServiceList()
	if err != nil {
		t.Fatal(err)
	}
	if want := []maps.Service{svc, udp}; !reflect.DeepEqual(list, want) {
		t.Errorf("list:\nwant %+v\ngot  %+v", want, list)
	}
	if err := l.ServiceDelete(svc.ServiceKey); err != nil {
		t.Fatal(err)
	}
	if err := l.ServiceDelete(svc.ServiceKey); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("second delete: want ErrKeyNotExist, got %v", err)
	}
	// The slots outlive the frontend until ServiceBackendsDelete.
	if err := l.BackendSlots.Lookup(bpfobj.LxcLbSlotKey{ServiceId: 7, Slot: 1}, &id); err != nil {
		t.Errorf("slot 1 after the frontend's delete: %v", err)
	}
	if err := l.ServiceBackendsDelete(7); err != nil {
		t.Fatal(err)
	}
	if err := l.BackendSlots.Lookup(bpfobj.LxcLbSlotKey{ServiceId: 7, Slot: 1}, &id); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("slot 1 after ServiceBackendsDelete: %v", err)
	}
}

func TestServiceUpsertValidates(t *testing.T) {
	l := loadLB(t)
	ok := maps.ServiceKey{Addr: vip, Port: 80, Proto: maps.ProtoTCP}
	for _, tc := range []struct {
		s    maps.Service
		want string
	}{
		{maps.Service{ServiceKey: maps.ServiceKey{Addr: netip.MustParseAddr("fd00::1"), Port: 80, Proto: maps.ProtoTCP}, ID: 1}, "not an IPv4 address"},
		{maps.Service{ServiceKey: maps.ServiceKey{Addr: vip, Port: 80, Proto: 1}, ID: 1}, "want tcp or udp"},
		{maps.Service{ServiceKey: ok}, "service id 0"},
		{maps.Service{ServiceKey: ok, ID: 1, Backends: []uint32{4, 0}}, "backend id 0 in slot 2"},
	} {
		if err := l.ServiceUpsert(tc.s); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want an error about %q, got %v", tc.s, tc.want, err)
		}
	}
}

func TestBackendCRUD(t *testing.T) {
	l := loadLB(t)
	b1 := maps.Backend{ID: 1, Addr: be1, Port: 8080, Proto: maps.ProtoTCP}
	b2 := maps.Backend{ID: 2, Addr: be2, Port: 8080, Proto: maps.ProtoTCP, State: maps.BackendMaintenance}
	for _, b := range []maps.Backend{b2, b1} {
		if err := l.BackendUpsert(b); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.BackendSetState(1, maps.BackendTerminating); err != nil {
		t.Fatal(err)
	}
	b1.State = maps.BackendTerminating
	list, err := l.BackendList()
	if err != nil {
		t.Fatal(err)
	}
	if want := []maps.Backend{b1, b2}; !reflect.DeepEqual(list, want) {
		t.Errorf("list:\nwant %+v\ngot  %+v", want, list)
	}
	if err := l.BackendSetState(9, maps.BackendActive); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("set state of a missing backend: want ErrKeyNotExist, got %v", err)
	}
	if err := l.BackendUpsert(maps.Backend{Addr: be1}); err == nil {
		t.Error("backend id 0 should be refused")
	}
	if err := l.BackendDelete(1); err != nil {
		t.Fatal(err)
	}
	if _, err := l.BackendLookup(1); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("lookup after delete: %v", err)
	}
}

func TestMaglevSetReplacesTheTable(t *testing.T) {
	l := loadLB(t)
	if l.MaglevTableSize != testM {
		t.Fatalf("MaglevTableSize %d, want %d", l.MaglevTableSize, testM)
	}
	table := make([]uint32, testM)
	for i := range table {
		table[i] = uint32(i%3 + 1)
	}
	if err := l.MaglevSet(5, table); err != nil {
		t.Fatal(err)
	}
	var firstID uint32
	if err := l.Maglev.Lookup(uint32(5), &firstID); err != nil {
		t.Fatal(err)
	}
	got, err := l.MaglevLookup(5)
	if err != nil || !reflect.DeepEqual(got, table) {
		t.Fatalf("lookup: %v (%v)", got, err)
	}
	for i := range table {
		table[i] = 9
	}
	if err := l.MaglevSet(5, table); err != nil {
		t.Fatal(err)
	}
	var secondID uint32
	if err := l.Maglev.Lookup(uint32(5), &secondID); err != nil {
		t.Fatal(err)
	}
	if secondID == firstID {
		t.Error("MaglevSet should swap in a new inner map, not rewrite the old one in place")
	}
	if got, _ := l.MaglevLookup(5); !reflect.DeepEqual(got, table) {
		t.Errorf("after replace: %v", got)
	}
	if err := l.MaglevSet(5, table[:testM-1]); err == nil || !strings.Contains(err.Error(), "M is 251") {
		t.Errorf("a table of the wrong size: want an error naming M, got %v", err)
	}
	if err := l.MaglevDelete(5); err != nil {
		t.Fatal(err)
	}
	if _, err := l.MaglevLookup(5); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("after delete: %v", err)
	}
}

// More tables than one batch of the outer map: every service gets its own, and a
// second call replaces them.
func TestMaglevSetMany(t *testing.T) {
	l := loadLB(t)
	const n = 1100
	for round := uint32(0); round < 2; round++ {
		tables := map[uint32][]uint32{}
		for id := uint32(1); id <= n; id++ {
			table := make([]uint32, testM)
			for i := range table {
				table[i] = id*10 + round
			}
			tables[id] = table
		}
		start := time.Now()
		if err := l.MaglevSetMany(tables); err != nil {
			t.Fatal(err)
		}
		t.Logf("round %d: %d tables of M=%d in %s", round, n, testM, time.Since(start))
		for _, id := range []uint32{1, 511, 512, 513, 1024, n} {
			got, err := l.MaglevLookup(id)
			if err != nil || !reflect.DeepEqual(got, tables[id]) {
				t.Fatalf("round %d: service %d: table %v... (%v)", round, id, got[:min(len(got), 3)], err)
			}
		}
	}
	bad := map[uint32][]uint32{7: make([]uint32, testM), 8: make([]uint32, testM+1)}
	if err := l.MaglevSetMany(bad); err == nil || !strings.Contains(err.Error(), "maglev set 8: table of 252 entries") {
		t.Errorf("a table of the wrong size: want an error naming the service, got %v", err)
	}
}

func TestRevNatCRUD(t *testing.T) {
	l := loadLB(t)
	fe := netip.AddrPortFrom(vip, 80)
	if err := l.RevNatUpsert(3, fe); err != nil {
		t.Fatal(err)
	}
	list, err := l.RevNatList()
	if err != nil || !reflect.DeepEqual(list, map[uint32]netip.AddrPort{3: fe}) {
		t.Errorf("list %v (%v)", list, err)
	}
	if err := l.RevNatDelete(3); err != nil {
		t.Fatal(err)
	}
	if err := l.RevNatDelete(3); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("second delete: %v", err)
	}
}

func TestCTListAndFlush(t *testing.T) {
	l := loadLB(t)
	now, err := maps.MonotonicNow()
	if err != nil {
		t.Fatal(err)
	}
	lifetime := uint32(now/time.Second) + 60
	k := bpfobj.LxcCtKey{Saddr: wire(be1), Daddr: wire(vip), Sport: binary.NativeEndian.Uint16([]byte{0x9c, 0x40}),
		Dport: binary.NativeEndian.Uint16([]byte{0, 80}), Proto: 6, Dir: 1}
	v := bpfobj.LxcCtEntry{Lifetime: lifetime, Flags: 1 | 2, BackendId: 2, RevNatId: 3}
	if err := l.CTTCP.Put(k, v); err != nil {
		t.Fatal(err)
	}
	k.Proto = 17
	if err := l.CTAny.Put(k, v); err != nil {
		t.Fatal(err)
	}
	snatV := v
	snatV.NatAddr, snatV.NatPort = wire(be2), binary.NativeEndian.Uint16([]byte{0x12, 0x34})
	if err := l.SNAT.Put(k, snatV); err != nil {
		t.Fatal(err)
	}
	list, err := l.CTList()
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 3 {
		t.Fatalf("want 3 entries, got %v", list)
	}
	e := list[0]
	if e.Map != "ct_any" || e.Src != netip.MustParseAddrPort("10.244.1.20:40000") || e.Dst != netip.MustParseAddrPort("10.96.0.10:80") ||
		e.Proto != maps.ProtoUDP || e.Dir != maps.CTService || e.Flags != maps.CTSynSeen|maps.CTEstablished ||
		e.BackendID != 2 || e.RevNatID != 3 || e.NAT.IsValid() || e.Remaining <= 58*time.Second || e.Remaining > 60*time.Second {
		t.Errorf("entry %s", e)
	}
	if list[2].Map != "snat" || list[2].NAT != netip.MustParseAddrPort("10.244.2.30:4660") {
		t.Errorf("snat entry %s", list[2])
	}
	if err := l.CTFlush(); err != nil {
		t.Fatal(err)
	}
	if list, _ := l.CTList(); len(list) != 0 {
		t.Errorf("after flush: %v", list)
	}
}

func TestOpenPinnedLB(t *testing.T) {
	testutil.RequireRoot(t)
	pin := mountBPFFS(t)
	cfg := lbConfig(t)
	d, err := loader.LoadDatapath(cfg, &loader.Options{PinPath: pin, MapSizes: loader.MapSizes{
		TraceEvents: 1 << 14, CTTCP: 64, CTAny: 64, SNAT: 64,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	defer d.Unpin()
	if err := d.LB.RevNatUpsert(1, netip.AddrPortFrom(vip, 80)); err != nil {
		t.Fatal(err)
	}
	l, err := maps.OpenPinnedLB(pin, testM)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if list, err := l.RevNatList(); err != nil || len(list) != 1 {
		t.Errorf("pinned rev nat: %v (%v)", list, err)
	}
	if err := l.MaglevSet(1, make([]uint32, testM)); err != nil {
		t.Errorf("MaglevSet through the pinned maps: %v", err)
	}
}

// mountBPFFS mounts a private bpffs instance, unmounted at the end.
func mountBPFFS(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		t.Fatalf("mount bpffs on %s: %v", dir, err)
	}
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// The LB layouts are bpf2go's; they must match the BTF of every object that holds
// the maps, in size and in map key/value sizes.
func TestLBLayoutsMatchBTF(t *testing.T) {
	goSizes := map[string]int{
		"lb_service_key": binary.Size(bpfobj.LxcLbServiceKey{}),
		"lb_service":     binary.Size(bpfobj.LxcLbService{}),
		"lb_slot_key":    binary.Size(bpfobj.LxcLbSlotKey{}),
		"lb_backend":     binary.Size(bpfobj.LxcLbBackend{}),
		"lb_rev_nat":     binary.Size(bpfobj.LxcLbRevNat{}),
		"ct_key":         binary.Size(bpfobj.LxcCtKey{}),
		"ct_entry":       binary.Size(bpfobj.LxcCtEntry{}),
		"__u32":          4,
	}
	for name, size := range map[string]int{
		"lb_service_key": binary.Size(bpfobj.HostLbServiceKey{}), "lb_service": binary.Size(bpfobj.OverlayLbService{}),
		"lb_backend": binary.Size(bpfobj.HostLbBackend{}), "ct_key": binary.Size(bpfobj.OverlayCtKey{}),
		"ct_entry": binary.Size(bpfobj.HostCtEntry{}),
	} {
		if goSizes[name] != size {
			t.Errorf("%s: bindings of the objects differ (%d vs %d)", name, goSizes[name], size)
		}
	}
	want := map[string][2]string{
		"lb_services":      {"lb_service_key", "lb_service"},
		"lb_backend_slots": {"lb_slot_key", "__u32"},
		"lb_backends":      {"__u32", "lb_backend"},
		"lb_rev_nat":       {"__u32", "lb_rev_nat"},
		"ct_tcp":           {"ct_key", "ct_entry"},
		"ct_any":           {"ct_key", "ct_entry"},
		"snat":             {"ct_key", "ct_entry"},
	}
	for obj, load := range map[string]func() (*ebpf.CollectionSpec, error){"lxc": bpfobj.LoadLxc, "host": bpfobj.LoadHost, "overlay": bpfobj.LoadOverlay} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		testrun.CheckMapLayouts(t, obj, spec, want, goSizes)
		mg := spec.Maps["lb_maglev"]
		if mg == nil || mg.Type != ebpf.HashOfMaps || mg.InnerMap == nil || mg.InnerMap.Type != ebpf.Array ||
			mg.InnerMap.KeySize != 4 || mg.InnerMap.ValueSize != 4 || mg.InnerMap.Flags != 0x1000|0x400 {
			t.Errorf("%s: lb_maglev is not a hash of BPF_F_INNER_MAP|BPF_F_MMAPABLE u32 arrays (what MaglevSet creates): %+v", obj, mg)
		}
	}
}

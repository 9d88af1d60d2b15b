// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/loader"
	"podpath/datapath/maglev"
	"podpath/datapath/testrun"
	"podpath/internal/testutil"
)

// lbSharedMaps are the load balancer's maps as bpf_lxc, bpf_host and bpf_overlay see them.
func lbSharedMaps(d *loader.Datapath) map[string][3]*ebpf.Map {
	return map[string][3]*ebpf.Map{
		"lb_services":      {d.Lxc.LbServices, d.Host.LbServices, d.Overlay.LbServices},
		"lb_backend_slots": {d.Lxc.LbBackendSlots, d.Host.LbBackendSlots, d.Overlay.LbBackendSlots},
		"lb_backends":      {d.Lxc.LbBackends, d.Host.LbBackends, d.Overlay.LbBackends},
		"lb_rev_nat":       {d.Lxc.LbRevNat, d.Host.LbRevNat, d.Overlay.LbRevNat},
		"lb_maglev":        {d.Lxc.LbMaglev, d.Host.LbMaglev, d.Overlay.LbMaglev},
		"ct_tcp":           {d.Lxc.CtTcp, d.Host.CtTcp, d.Overlay.CtTcp},
		"ct_any":           {d.Lxc.CtAny, d.Host.CtAny, d.Overlay.CtAny},
		"snat":             {d.Lxc.Snat, d.Host.Snat, d.Overlay.Snat},
		"lb_frag":          {d.Lxc.LbFrag, d.Host.LbFrag, d.Overlay.LbFrag},
	}
}

func TestLoadDatapathSharesLBMaps(t *testing.T) {
	testutil.RequireRoot(t)
	for _, pinned := range []bool{false, true} {
		opts := &loader.Options{MapSizes: testSizes}
		if pinned {
			opts.PinPath = filepath.Join(testrun.MountBPFFS(t), "node1")
			if err := os.Mkdir(opts.PinPath, 0o700); err != nil {
				t.Fatal(err)
			}
		}
		d, err := loader.LoadDatapath(lbConfig(t, lbOpts{}), opts)
		if err != nil {
			t.Fatal(err)
		}
		for name, m := range lbSharedMaps(d) {
			if a, b, c := mapID(t, m[0]), mapID(t, m[1]), mapID(t, m[2]); a != b || a != c {
				t.Errorf("pinned %v: %s: bpf_lxc uses map %d, bpf_host map %d, bpf_overlay map %d: want one instance", pinned, name, a, b, c)
			}
			if m[0].IsPinned() != pinned {
				t.Errorf("pinned %v: %s pinned %v", pinned, name, m[0].IsPinned())
			}
		}
		if pinned {
			if err := d.Unpin(); err != nil {
				t.Fatal(err)
			}
			if entries, _ := os.ReadDir(opts.PinPath); len(entries) != 0 {
				t.Errorf("after Unpin the pin path still holds %d files", len(entries))
			}
		}
		d.Close()
	}
}

func TestLoadDatapathLBMapSizes(t *testing.T) {
	testutil.RequireRoot(t)
	small := loader.MapSizes{TraceEvents: 1 << 14, LBServices: 8, LBBackendSlots: 9, LBBackends: 10, LBRevNat: 11,
		LBMaglev: 12, CTTCP: 13, CTAny: 14, SNAT: 15}
	// lb_frag keeps its compiled size (LB_FRAG_MAP_SIZE, Cilium's bpf-fragments-map-max
	// default): podpath does not read that key.
	for _, tc := range []struct {
		name  string
		cfg   bpfconfig.Config
		sizes loader.MapSizes
		want  map[string]uint32
		m     uint32
	}{
		{"disabled: conntrack and snat get one entry", fixtureConfig(), loader.MapSizes{TraceEvents: 1 << 14},
			map[string]uint32{"lb_services": 65536, "lb_backend_slots": 262144, "lb_backends": 65536, "lb_rev_nat": 65536,
				"lb_maglev": 65536, "ct_tcp": 1, "ct_any": 1, "snat": 1, "lb_frag": 8192}, maglev.DefaultTableSize},
		{"enabled: the defaults", lbConfig(t, lbOpts{MaglevTableSize: 16381}), loader.MapSizes{TraceEvents: 1 << 14},
			map[string]uint32{"lb_services": 65536, "lb_backend_slots": 262144, "lb_backends": 65536, "lb_rev_nat": 65536,
				"lb_maglev": 65536, "ct_tcp": 524288, "ct_any": 262144, "snat": 131072, "lb_frag": 8192}, 16381},
		{"given sizes", lbConfig(t, lbOpts{MaglevTableSize: 509}), small,
			map[string]uint32{"lb_services": 8, "lb_backend_slots": 9, "lb_backends": 10, "lb_rev_nat": 11,
				"lb_maglev": 12, "ct_tcp": 13, "ct_any": 14, "snat": 15, "lb_frag": 8192}, 509},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := loader.LoadDatapath(tc.cfg, &loader.Options{MapSizes: tc.sizes})
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			for name, m := range lbSharedMaps(d) {
				if got := m[0].MaxEntries(); got != tc.want[name] {
					t.Errorf("%s has %d entries, want %d", name, got, tc.want[name])
				}
			}
			if d.LB.MaglevTableSize != tc.m {
				t.Errorf("LB.MaglevTableSize %d, want %d", d.LB.MaglevTableSize, tc.m)
			}
		})
	}
}

// The load balancer's pins are derived state: a load with other sizes replaces them
// (empty) instead of failing, and a load with the same sizes keeps them and their
// contents.
func TestLoadDatapathReplacesIncompatibleLBPins(t *testing.T) {
	testutil.RequireRoot(t)
	pin := filepath.Join(testrun.MountBPFFS(t), "node1")
	if err := os.Mkdir(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := lbConfig(t, lbOpts{})
	opts := &loader.Options{PinPath: pin, MapSizes: testSizes}
	d1, err := loader.LoadDatapath(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close()
	fe := netip.MustParseAddrPort("10.96.0.10:80")
	if err := d1.LB.RevNatUpsert(1, fe); err != nil {
		t.Fatal(err)
	}
	d2, err := loader.LoadDatapath(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if list, _ := d2.LB.RevNatList(); list[1] != fe {
		t.Errorf("a load with the same sizes lost the rev nat entry: %v", list)
	}
	if mapID(t, d1.Lxc.CtTcp) != mapID(t, d2.Host.CtTcp) {
		t.Error("a load with the same sizes made a new ct_tcp")
	}

	bigger := *opts
	bigger.MapSizes.CTTCP *= 2
	bigger.MapSizes.LBRevNat *= 2
	d3, err := loader.LoadDatapath(cfg, &bigger)
	if err != nil {
		t.Fatalf("a load with other conntrack sizes: %v", err)
	}
	defer d3.Close()
	if d3.LB.CTTCP.MaxEntries() != 2*testSizes.CTTCP || mapID(t, d3.Lxc.CtTcp) == mapID(t, d1.Lxc.CtTcp) {
		t.Error("ct_tcp was not replaced")
	}
	if list, _ := d3.LB.RevNatList(); len(list) != 0 {
		t.Errorf("the replaced rev nat map should start empty: %v", list)
	}
	if mapID(t, d3.Lxc.LbServices) != mapID(t, d1.Lxc.LbServices) {
		t.Error("lb_services kept its size and should have been kept")
	}
	// The other maps keep refusing another size.
	endpoints := *opts
	endpoints.MapSizes.Endpoints *= 2
	if d4, err := loader.LoadDatapath(cfg, &endpoints); !errors.Is(err, ebpf.ErrMapIncompatible) {
		if d4 != nil {
			d4.Close()
		}
		t.Errorf("endpoints of another size: want ErrMapIncompatible, got %v", err)
	}
	_ = d3.Unpin()
}

// LoadDatapath checks the load-balancer fields it is given (bpfconfig.Check).
func TestLoadDatapathRejectsInvalidLBConfig(t *testing.T) {
	cfg := lbConfig(t, lbOpts{})
	bad := cfg
	bad.CtTimeoutAny = 0
	if _, err := loader.LoadDatapath(bad, nil); err == nil || !strings.Contains(err.Error(), "conntrack timeouts") {
		t.Errorf("LoadDatapath with a zero timeout: want a config error, got %v", err)
	}
}

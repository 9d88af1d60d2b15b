// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/internal/testutil"
)

func mapID(t *testing.T, m *ebpf.Map) ebpf.MapID {
	t.Helper()
	info, err := m.Info()
	if err != nil {
		t.Fatal(err)
	}
	id, ok := info.ID()
	if !ok {
		t.Fatal("kernel reports no map id")
	}
	return id
}

// sharedMaps are each shared map as bpf_lxc, bpf_host and bpf_overlay see it.
func sharedMaps(d *loader.Datapath) map[string][3]*ebpf.Map {
	return map[string][3]*ebpf.Map{
		"endpoints":    {d.Lxc.Endpoints, d.Host.Endpoints, d.Overlay.Endpoints},
		"ipcache":      {d.Lxc.Ipcache, d.Host.Ipcache, d.Overlay.Ipcache},
		"nodes":        {d.Lxc.Nodes, d.Host.Nodes, d.Overlay.Nodes},
		"trace_events": {d.Lxc.TraceEvents, d.Host.TraceEvents, d.Overlay.TraceEvents},
	}
}

func TestLoadDatapathUnpinnedSharesMaps(t *testing.T) {
	d := loadDatapath(t, fixtureConfig())
	shared := sharedMaps(d)
	// The egress gateway map has a fixed size (EGW_POLICY_SIZE), so it is not in
	// sharedMaps, whose sizes MapSizes sets.
	shared["egress_gw_policy"] = [3]*ebpf.Map{d.Lxc.EgressGwPolicy, d.Host.EgressGwPolicy, d.Overlay.EgressGwPolicy}
	for name, m := range shared {
		if a, b, c := mapID(t, m[0]), mapID(t, m[1]), mapID(t, m[2]); a != b || a != c {
			t.Errorf("%s: bpf_lxc uses map %d, bpf_host map %d, bpf_overlay map %d: want one instance", name, a, b, c)
		}
		if m[0].IsPinned() {
			t.Errorf("%s: pinned without a pin path", name)
		}
	}
	for _, p := range []struct {
		name string
		prog *ebpf.Program
	}{{"from_container", d.FromContainer}, {"to_container", d.ToContainer}, {"from_netdev", d.FromNetdev},
		{"to_netdev", d.ToNetdev}, {"from_overlay", d.FromOverlay}} {
		if p.prog == nil {
			t.Errorf("program %s not exposed", p.name)
		}
	}
}

func TestLoadDatapathPinnedSharesMapsAcrossLoads(t *testing.T) {
	testutil.RequireRoot(t)
	pin := filepath.Join(testrun.MountBPFFS(t), "node1")
	if err := os.Mkdir(pin, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := &loader.Options{PinPath: pin, MapSizes: testSizes}
	d1, err := loader.LoadDatapath(fixtureConfig(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d1.Close()
	for name, m := range sharedMaps(d1) {
		if a, b, c := mapID(t, m[0]), mapID(t, m[1]), mapID(t, m[2]); a != b || a != c {
			t.Errorf("%s: bpf_lxc uses map %d, bpf_host map %d, bpf_overlay map %d: want one pinned instance", name, a, b, c)
		}
		if _, err := os.Stat(filepath.Join(pin, name)); err != nil {
			t.Errorf("%s not pinned: %v", name, err)
		}
	}

	// A second load (an agent restart) finds the same maps and their contents.
	if err := d1.Maps.EndpointUpsert(podBEndpoint); err != nil {
		t.Fatal(err)
	}
	d2, err := loader.LoadDatapath(fixtureConfig(), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer d2.Close()
	if a, b := mapID(t, d1.Lxc.Endpoints), mapID(t, d2.Host.Endpoints); a != b {
		t.Errorf("reload: endpoints map %d, want the pinned %d", b, a)
	}
	if _, err := d2.Maps.EndpointLookup(podBIP); err != nil {
		t.Errorf("reload lost the endpoint: %v", err)
	}
	opened, err := maps.OpenPinned(pin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := opened.EndpointLookup(podBIP); err != nil {
		t.Errorf("maps.OpenPinned: %v", err)
	}
	opened.Close()

	// Sizes that differ from the pinned maps are refused, by name.
	bigger := &loader.Options{PinPath: pin, MapSizes: loader.MapSizes{Endpoints: 2 * testSizes.Endpoints}}
	if d3, err := loader.LoadDatapath(fixtureConfig(), bigger); !errors.Is(err, ebpf.ErrMapIncompatible) {
		if d3 != nil {
			d3.Close()
		}
		t.Errorf("loading over pins of another size: want ErrMapIncompatible, got %v", err)
	}

	if err := d1.Unpin(); err != nil {
		t.Fatal(err)
	}
	if entries, _ := os.ReadDir(pin); len(entries) != 0 {
		t.Errorf("after Unpin the pin path still holds %d files", len(entries))
	}
}

func TestLoadDatapathMapSizes(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		sizes loader.MapSizes
		want  map[string]uint32
	}{
		{loader.MapSizes{}, map[string]uint32{"endpoints": 65535, "ipcache": 512000, "nodes": 16384, "trace_events": 1 << 20}},
		{loader.MapSizes{Endpoints: 8, IPCache: 16, Nodes: 4, TraceEvents: 1 << 14}, map[string]uint32{"endpoints": 8, "ipcache": 16, "nodes": 4, "trace_events": 1 << 14}},
	} {
		d, err := loader.LoadDatapath(fixtureConfig(), &loader.Options{MapSizes: tc.sizes})
		if err != nil {
			t.Fatal(err)
		}
		for name, m := range sharedMaps(d) {
			if got := m[0].MaxEntries(); got != tc.want[name] {
				t.Errorf("sizes %+v: %s has %d entries, want %d", tc.sizes, name, got, tc.want[name])
			}
		}
		d.Close()
	}
}

func TestLoadDatapathRejectsInvalidConfig(t *testing.T) {
	for _, tc := range []struct {
		mutate func(*bpfconfig.Config)
		want   string
	}{
		{func(c *bpfconfig.Config) { c.MonitorAggregation = 4 }, "monitor aggregation 4"},
		{func(c *bpfconfig.Config) { c.HostRouting = 2 }, "host routing 2"},
		{func(c *bpfconfig.Config) { c.RoutingMode = 7 }, "routing mode 7"},
		{func(c *bpfconfig.Config) { c.NativeRoutingCidrLen = 33 }, "native-routing CIDR length 33"},
	} {
		cfg := fixtureConfig()
		tc.mutate(&cfg)
		_, err := loader.LoadDatapath(cfg, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %q, got %v", tc.want, err)
		}
	}
}

// Every object carries the same config struct and trace record: Go decodes and sets
// them through one generated type, so their BTF sizes must match it.
func TestSharedStructsMatchBTF(t *testing.T) {
	specs := map[string]func() (*ebpf.CollectionSpec, error){
		"probe": bpfobj.LoadProbe, "lxc": bpfobj.LoadLxc, "host": bpfobj.LoadHost, "overlay": bpfobj.LoadOverlay,
	}
	for name, load := range specs {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			btfName string
			goSize  int
		}{
			{"podpath_config", binary.Size(bpfconfig.Config{})},
			{"trace_record", binary.Size(bpfobj.LxcTraceRecord{})},
		} {
			var s *btf.Struct
			if err := spec.Types.TypeByName(tc.btfName, &s); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if int(s.Size) != tc.goSize {
				t.Errorf("%s: struct %s is %d bytes in BTF, %d in Go", name, tc.btfName, s.Size, tc.goSize)
			}
		}
		if v := spec.Variables["CONFIG"]; v == nil || int(v.Size()) != binary.Size(bpfconfig.Config{}) {
			t.Errorf("%s: CONFIG variable missing or of another size", name)
		}
	}
}

func TestLoadDatapathRejectsInvalidTunnelConfig(t *testing.T) {
	geneveEnum, vxlanEnum := uint32(bpfobj.LxcTunnelProtocolTUNNEL_GENEVE), uint32(bpfobj.LxcTunnelProtocolTUNNEL_VXLAN)
	for _, tc := range []struct {
		mutate func(*bpfconfig.Config)
		want   string
	}{
		{func(c *bpfconfig.Config) { c.TunnelProtocol = 4 }, "tunnel protocol 4"},
		{func(c *bpfconfig.Config) { c.TunnelProtocol, c.TunnelPort, c.TunnelMtu = geneveEnum, 0, 1450 }, "tunnel port 0"},
		{func(c *bpfconfig.Config) { c.TunnelProtocol, c.TunnelPort, c.TunnelMtu = geneveEnum, 6081, 0 }, "tunnel MTU 0"},
		{func(c *bpfconfig.Config) { c.TunnelProtocol, c.TunnelPort, c.TunnelMtu = vxlanEnum, 8472, 1450 }, "collect_md vxlan device"},
		{func(c *bpfconfig.Config) {
			c.TunnelProtocol, c.TunnelPort, c.TunnelMtu, c.NodeIp = geneveEnum, 6081, 1450, [4]uint8{}
		}, "node IP"},
	} {
		cfg := fixtureConfig()
		cfg.RoutingMode = uint32(bpfobj.LxcRoutingModeROUTING_MODE_TUNNEL)
		tc.mutate(&cfg)
		if _, err := loader.LoadDatapath(cfg, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("want an error naming %q, got %v", tc.want, err)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package maps_test

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/internal/testutil"
)

func load(t *testing.T) *maps.Maps {
	t.Helper()
	testutil.RequireRoot(t)
	d, err := loader.LoadDatapath(bpfconfig.Config{}, &loader.Options{
		MapSizes: loader.MapSizes{Endpoints: 16, IPCache: 16, Nodes: 16, TraceEvents: 1 << 14},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d.Maps
}

var (
	ip1  = netip.MustParseAddr("10.244.1.10")
	ip2  = netip.MustParseAddr("10.244.1.2")
	mac1 = net.HardwareAddr{2, 0, 0, 0, 1, 10}
	mac2 = net.HardwareAddr{2, 0, 0, 0, 0xaa, 10}
)

func TestEndpointCRUD(t *testing.T) {
	m := load(t)
	ep1 := maps.Endpoint{IP: ip1, Ifindex: 7, MAC: mac1, HostMAC: mac2, Identity: 1234}
	host := maps.Endpoint{IP: ip2, Flags: maps.EndpointHost, Identity: 1, MAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}, HostMAC: net.HardwareAddr{0, 0, 0, 0, 0, 0}}
	for _, ep := range []maps.Endpoint{ep1, {IP: ip2, Flags: maps.EndpointHost, Identity: 1}} {
		if err := m.EndpointUpsert(ep); err != nil {
			t.Fatal(err)
		}
	}
	got, err := m.EndpointLookup(ip1)
	if err != nil || !reflect.DeepEqual(got, ep1) {
		t.Fatalf("lookup: want %+v, got %+v (%v)", ep1, got, err)
	}
	list, err := m.EndpointList()
	if err != nil {
		t.Fatal(err)
	}
	if want := []maps.Endpoint{host, ep1}; !reflect.DeepEqual(list, want) {
		t.Errorf("list:\nwant %+v\ngot  %+v", want, list)
	}
	ep1.Ifindex = 8
	if err := m.EndpointUpsert(ep1); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.EndpointLookup(ip1); got.Ifindex != 8 {
		t.Errorf("upsert did not replace: %+v", got)
	}
	if err := m.EndpointDelete(ip1); err != nil {
		t.Fatal(err)
	}
	if _, err := m.EndpointLookup(ip1); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("lookup after delete: want ErrKeyNotExist, got %v", err)
	}
	if err := m.EndpointDelete(ip1); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("second delete: want ErrKeyNotExist, got %v", err)
	}
}

func TestEndpointUpsertValidates(t *testing.T) {
	m := load(t)
	for _, tc := range []struct {
		ep   maps.Endpoint
		want string
	}{
		{maps.Endpoint{IP: netip.MustParseAddr("fd00::1"), Ifindex: 1, MAC: mac1, HostMAC: mac2}, "not an IPv4 address"},
		{maps.Endpoint{IP: ip1, Ifindex: 1, MAC: mac1[:5], HostMAC: mac2}, "pod MAC"},
		{maps.Endpoint{IP: ip1, Ifindex: 1, MAC: mac1}, "host veth MAC"},
		{maps.Endpoint{IP: ip1, MAC: mac1, HostMAC: mac2}, "needs the ifindex"},
	} {
		if err := m.EndpointUpsert(tc.ep); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want an error about %q, got %v", tc.ep, tc.want, err)
		}
	}
}

func TestIPCacheCRUD(t *testing.T) {
	m := load(t)
	node2 := netip.MustParseAddr("192.168.50.2")
	entries := []maps.IPCacheEntry{
		{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Identity: 2},
		{Prefix: netip.MustParsePrefix("10.244.1.0/24"), Identity: 5},
		{Prefix: netip.MustParsePrefix("10.244.2.0/24"), Identity: 6, TunnelEndpoint: node2},
		{Prefix: netip.MustParsePrefix("10.244.2.30/32"), Identity: 1001, TunnelEndpoint: node2},
	}
	for _, e := range entries {
		if err := m.IPCacheUpsert(e); err != nil {
			t.Fatal(err)
		}
	}
	// Host bits are masked: this replaces 10.244.1.0/24.
	if err := m.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.MustParsePrefix("10.244.1.99/24"), Identity: 7}); err != nil {
		t.Fatal(err)
	}
	entries[1].Identity = 7
	list, err := m.IPCacheList()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(list, entries) {
		t.Errorf("list:\nwant %+v\ngot  %+v", entries, list)
	}
	// The kernel does longest-prefix match on the trie.
	var v bpfobj.LxcIpcacheInfo
	if err := m.IPCache.Lookup(bpfobj.LxcIpcacheKey{Prefixlen: 32, Ip4: wire(netip.MustParseAddr("10.244.2.31"))}, &v); err != nil || v.SecIdentity != 6 {
		t.Errorf("LPM lookup of 10.244.2.31: want identity 6, got %+v (%v)", v, err)
	}
	if err := m.IPCacheDelete(netip.MustParsePrefix("10.244.2.30/32")); err != nil {
		t.Fatal(err)
	}
	if err := m.IPCacheDelete(netip.MustParsePrefix("10.244.2.30/32")); !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("second delete: want ErrKeyNotExist, got %v", err)
	}
	if list, _ := m.IPCacheList(); len(list) != 3 {
		t.Errorf("after delete: want 3 entries, got %+v", list)
	}
	if err := m.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.MustParsePrefix("fd00::/64")}); err == nil {
		t.Error("an IPv6 prefix should be refused")
	}
}

func TestNodeCRUD(t *testing.T) {
	m := load(t)
	n1 := maps.Node{IP: netip.MustParseAddr("192.168.50.1"), ID: 1}
	n2 := maps.Node{IP: netip.MustParseAddr("192.168.50.2"), ID: 2, Flags: 1, MTU: 1350}
	for _, n := range []maps.Node{n2, n1} {
		if err := m.NodeUpsert(n); err != nil {
			t.Fatal(err)
		}
	}
	list, err := m.NodeList()
	if err != nil {
		t.Fatal(err)
	}
	if want := []maps.Node{n1, n2}; !reflect.DeepEqual(list, want) {
		t.Errorf("list: want %+v, got %+v", want, list)
	}
	if err := m.NodeDelete(n1.IP); err != nil {
		t.Fatal(err)
	}
	if list, _ := m.NodeList(); !reflect.DeepEqual(list, []maps.Node{n2}) {
		t.Errorf("after delete: %+v", list)
	}
	if err := m.NodeUpsert(maps.Node{IP: netip.MustParseAddr("::1")}); err == nil {
		t.Error("an IPv6 node should be refused")
	}
}

func wire(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

// The Go layouts are bpf2go's; they must match the BTF of every object that holds the
// maps, in size and in map key/value sizes.
func TestLayoutsMatchBTF(t *testing.T) {
	goSizes := map[string]int{
		"endpoint_key":  binary.Size(bpfobj.LxcEndpointKey{}),
		"endpoint_info": binary.Size(bpfobj.LxcEndpointInfo{}),
		"ipcache_key":   binary.Size(bpfobj.LxcIpcacheKey{}),
		"ipcache_info":  binary.Size(bpfobj.LxcIpcacheInfo{}),
		"node_key":      binary.Size(bpfobj.LxcNodeKey{}),
		"node_info":     binary.Size(bpfobj.LxcNodeInfo{}),
	}
	hostSizes := map[string]int{
		"endpoint_key":  binary.Size(bpfobj.HostEndpointKey{}),
		"endpoint_info": binary.Size(bpfobj.HostEndpointInfo{}),
		"ipcache_key":   binary.Size(bpfobj.HostIpcacheKey{}),
		"ipcache_info":  binary.Size(bpfobj.HostIpcacheInfo{}),
		"node_key":      binary.Size(bpfobj.HostNodeKey{}),
		"node_info":     binary.Size(bpfobj.HostNodeInfo{}),
	}
	if !reflect.DeepEqual(goSizes, hostSizes) {
		t.Errorf("bpf_lxc and bpf_host bindings differ: %v vs %v", goSizes, hostSizes)
	}
	want := map[string][2]string{ // map -> key, value struct
		"endpoints": {"endpoint_key", "endpoint_info"},
		"ipcache":   {"ipcache_key", "ipcache_info"},
		"nodes":     {"node_key", "node_info"},
	}
	for obj, load := range map[string]func() (*ebpf.CollectionSpec, error){"lxc": bpfobj.LoadLxc, "host": bpfobj.LoadHost} {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		testrun.CheckMapLayouts(t, obj, spec, want, goSizes)
	}
}

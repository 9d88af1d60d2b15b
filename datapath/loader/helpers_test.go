// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
	"podpath/internal/testutil"
)

// The loader's own tests load the datapath of one node and look at its maps and
// links; the programs' fixtures live in datapath/progtest.

// nsName is the name of a test namespace: pptest-ld-<pid>-<suffix>.
func nsName(suffix string) string { return fmt.Sprintf("pptest-ld-%d-%s", os.Getpid(), suffix) }

// Small maps keep the many loads of a test run cheap.
var testSizes = loader.MapSizes{Endpoints: 64, IPCache: 64, Nodes: 16, TraceEvents: 1 << 16,
	LBServices: 64, LBBackendSlots: 256, LBBackends: 64, LBRevNat: 64, LBMaglev: 16, CTTCP: 256, CTAny: 256, SNAT: 256}

var (
	podBIP       = netip.MustParseAddr("10.244.1.20")
	hostIP       = netip.MustParseAddr("192.168.50.1")
	podBEndpoint = maps.Endpoint{IP: podBIP, Ifindex: 4242, MAC: []byte{2, 0, 0, 0, 1, 0x14}, HostMAC: []byte{2, 0, 0, 0, 0xaa, 0x14}, Identity: 1001}
)

// fixtureSettings are native routing over 10.244.0.0/16, every packet traced.
func fixtureSettings() *config.Config {
	c := config.Default()
	c.RoutingMode, c.NativeRoutingCIDR = config.RoutingNative, netip.MustParsePrefix("10.244.0.0/16")
	return c
}

// fixtureConfig is node 42 (192.168.50.1) with fixtureSettings.
func fixtureConfig() bpfconfig.Config {
	cfg, err := bpfconfig.Build(fixtureSettings(), bpfconfig.Node{ID: 42, IP: hostIP})
	if err != nil {
		panic(err)
	}
	return cfg
}

// lbOpts are the load-balancer settings of lbConfig; zero fields get
// bpfconfig.Build's values, and M = 251.
type lbOpts struct {
	MaglevTableSize uint32
}

// lbConfig is the fixture node with kube-proxy replacement on (the load balancer).
func lbConfig(tb testing.TB, lb lbOpts) bpfconfig.Config {
	tb.Helper()
	c := fixtureSettings()
	c.KubeProxyReplacement, c.MaglevTableSize = config.KPRTrue, 251
	if lb.MaglevTableSize != 0 {
		c.MaglevTableSize = int(lb.MaglevTableSize)
	}
	cfg, err := bpfconfig.Build(c, bpfconfig.Node{ID: 42, IP: hostIP})
	if err != nil {
		tb.Fatal(err)
	}
	return cfg
}

// loadDatapath loads the objects unpinned with testSizes, closed when the test ends.
func loadDatapath(tb testing.TB, cfg bpfconfig.Config) *loader.Datapath {
	tb.Helper()
	testutil.RequireRoot(tb)
	d, err := loader.LoadDatapath(cfg, &loader.Options{MapSizes: testSizes})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close() })
	return d
}

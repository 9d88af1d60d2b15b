// SPDX-License-Identifier: Apache-2.0

package bpfconfig_test

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
)

// oldPath is the translation as agent openDatapath and the loader setters did it.
func oldPath(c *config.Config, n bpfconfig.Node) (loader.Config, error) {
	cfg := loader.Config{NodeId: n.ID, MonitorAggregation: uint32(c.MonitorAggregation), NodeIp: n.IP.As4()}
	cfg.HostRouting = loader.HostRoutingBPF
	if c.HostRouting == config.HostRoutingLegacy {
		cfg.HostRouting = loader.HostRoutingLegacy
	}
	cfg.RoutingMode = loader.RoutingTunnel
	if c.RoutingMode == config.RoutingNative {
		cfg.RoutingMode = loader.RoutingNative
		if err := loader.SetNativeRoutingCIDR(&cfg, c.NativeRoutingCIDR); err != nil {
			return cfg, err
		}
	}
	if c.RoutingMode == config.RoutingTunnel {
		port := c.TunnelPort
		if port == 0 {
			port = loader.PortVXLAN
			if c.TunnelProtocol == config.TunnelGeneve {
				port = loader.PortGeneve
			}
		}
		var err error
		if c.TunnelProtocol == config.TunnelGeneve {
			err = loader.SetTunnel(&cfg, loader.TunnelGeneve, port, 0, n.TunnelMTU)
		} else {
			err = loader.SetTunnel(&cfg, loader.TunnelVXLAN, port, n.VXLANIfindex, n.TunnelMTU)
		}
		if err != nil {
			return cfg, err
		}
	}
	if c.KubeProxyReplacement == config.KPRTrue {
		lb := loader.LBConfig{MaglevTableSize: uint32(c.MaglevTableSize)}
		switch c.LBMode {
		case config.LBModeDSR:
			lb.Mode = loader.LBModeDSR
		case config.LBModeHybrid:
			lb.Mode = loader.LBModeHybrid
		}
		if c.LBMode.UsesDSR() && c.RoutingMode == config.RoutingNative && c.DSRDispatch == config.DSRDispatchGeneve {
			return cfg, fmt.Errorf("geneve dispatch with native routing")
		}
		if c.MaglevHashSeedSet {
			lb.MaglevSeed = c.MaglevHashSeed
		}
		if err := loader.SetLB(&cfg, lb); err != nil {
			return cfg, err
		}
	}
	return cfg, loader.ValidateConfig(cfg)
}

// TestBuildMatchesOldPath compares Build with the old translation for every catalog
// config and the settings matrix, and writes the golden file from the old path.
func TestBuildMatchesOldPath(t *testing.T) {
	var b strings.Builder
	for _, in := range translationInputs(t) {
		c, ok := resolveInput(t, in)
		if !ok {
			fmt.Fprintf(&b, "%s: invalid config\n", in.name)
			continue
		}
		n := nodeFor(c)
		old, oldErr := oldPath(c, n)
		got, err := bpfconfig.Build(c, n)
		switch {
		case oldErr != nil && err == nil:
			t.Errorf("%s: old path refused (%v), Build accepted", in.name, oldErr)
		case oldErr == nil && err != nil:
			t.Errorf("%s: old path accepted, Build refused: %v", in.name, err)
		case oldErr == nil && got != old:
			t.Errorf("%s:\n Build %+v\n old   %+v", in.name, got, old)
		}
		if oldErr != nil {
			fmt.Fprintf(&b, "%s: %v\n", in.name, err) // Build's wording, checked to refuse alike
			continue
		}
		fmt.Fprintf(&b, "%s: %v\n", in.name, old)
	}
	if *update {
		if err := os.WriteFile("testdata/translation.golden", []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"

	"podpath/datapath/config"
)

func TestPlanMTU(t *testing.T) {
	dev := func(name string, mtu int) netlink.Link {
		return &netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name, MTU: mtu}}
	}
	cfg := func(mut func(c *config.Config)) *config.Config {
		c := config.Default()
		mut(c)
		return c
	}
	ip := netip.MustParseAddr("10.0.1.11")
	for _, tc := range []struct {
		name             string
		c                *config.Config
		dev              netlink.Link
		opts             int
		device, route    int
		deviceSourceHas  string
		overheadContains string
	}{
		{"vxlan on 1500", cfg(func(c *config.Config) {}), dev("eth1", 1500), 0, 1500, 1450, "eth1, the device holding node IP 10.0.1.11", "vxlan over IPv4"},
		{"vxlan on jumbo", cfg(func(c *config.Config) {}), dev("eth0", 9000), 0, 9000, 8950, "eth0", "vxlan"},
		{"geneve without options", cfg(func(c *config.Config) { c.TunnelProtocol = config.TunnelGeneve }), dev("eth0", 1500), 0, 1500, 1450, "eth0", "geneve over IPv4"},
		{"geneve with a DSR option", cfg(func(c *config.Config) { c.TunnelProtocol = config.TunnelGeneve }), dev("eth0", 1500), 8, 1500, 1442, "eth0", "50 + 8 bytes of options"},
		{"native", cfg(func(c *config.Config) { c.RoutingMode = config.RoutingNative }), dev("eth0", 1500), 0, 1500, 1500, "eth0", "no encapsulation"},
		{"mtu key wins", cfg(func(c *config.Config) { c.MTU = 1400 }), dev("eth0", 9000), 0, 1400, 1350, "mtu key", "vxlan"},
		{"ipip on 1500", cfg(func(c *config.Config) { c.TunnelProtocol = config.TunnelIPIP }), dev("eth0", 1500), 0, 1500, 1480, "eth0", "ipip over IPv4: outer IPv4 20"},
		{"ipip cross-subnet: pods get the device MTU", cfg(func(c *config.Config) {
			c.TunnelProtocol, c.TunnelMode = config.TunnelIPIP, config.TunnelCrossSubnet
		}), dev("eth0", 1500), 0, 1500, 1500, "eth0", "pods get the device MTU"},
		{"vxlan cross-subnet", cfg(func(c *config.Config) { c.TunnelMode = config.TunnelCrossSubnet }), dev("eth0", 1500), 0, 1500, 1500, "eth0", "cross-subnet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := planMTU(tc.c, tc.dev, ip, tc.opts)
			if m.Device != tc.device || m.Route != tc.route {
				t.Errorf("device/route MTU: want %d/%d, got %d/%d", tc.device, tc.route, m.Device, m.Route)
			}
			if want := tc.device - m.Overhead; tc.c.RoutingMode == config.RoutingTunnel && m.Tunnel != want {
				t.Errorf("tunnel MTU: want %d, got %d", want, m.Tunnel)
			}
			if !strings.Contains(m.DeviceSource, tc.deviceSourceHas) || !strings.Contains(m.OverheadSource, tc.overheadContains) {
				t.Errorf("sources: %q / %q", m.DeviceSource, m.OverheadSource)
			}
		})
	}
}

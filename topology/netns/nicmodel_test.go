// SPDX-License-Identifier: Apache-2.0

package netns_test

import (
	"context"
	"testing"

	"podpath/datapath/config"
	"podpath/datapath/config/configs"
	"podpath/internal/nicmodel"
	"podpath/internal/testutil"
	"podpath/topology"
	"podpath/topology/netns"
)

// nicModelSpec: node1 on a 1500-byte segment with a client, node2 on a jumbo one
// (a veth refuses an XDP program without multi-buffer support when its peer's MTU
// exceeds a page, so the model must still attach there), a router between them.
func nicModelSpec() *topology.Spec {
	return &topology.Spec{
		Name: "nicmodel",
		Segments: []topology.SegmentSpec{
			{Name: "a", CIDR: "10.0.1.0/24"},
			{Name: "b", CIDR: "10.0.2.0/24", MTU: 9000},
		},
		Routers: []topology.RouterSpec{{Name: "r1", Interfaces: []topology.InterfaceSpec{{Segment: "a"}, {Segment: "b"}}}},
		Nodes: []topology.NodeSpec{
			{Name: "node1", PodCIDR: "10.244.1.0/24", Interfaces: []topology.InterfaceSpec{{Segment: "a"}}},
			{Name: "node2", PodCIDR: "10.244.2.0/24", Interfaces: []topology.InterfaceSpec{{Segment: "b"}}},
		},
		Clients: []topology.ClientSpec{{Name: "ext", Interfaces: []topology.InterfaceSpec{{Segment: "a"}}}},
	}
}

// TestNICModelFollowsAcceleration brings the topology up for a cilium-config with
// bpf-lb-acceleration on (xdp-snat) and for Cilium's defaults, and reads the kernel:
// with acceleration, every node device's bridge port has an XDP program
// (IFLA_XDP_PROG_ID) and every member end on those segments has transmit checksum
// offload off (ETHTOOL_GTXCSUM); without, no port has XDP and offload stays on.
func TestNICModelFollowsAcceleration(t *testing.T) {
	testutil.RequireRoot(t)
	data, err := configs.Read("xdp-snat")
	if err != nil {
		t.Fatal(err)
	}
	accel, _, err := config.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  *config.Config
		on   bool
	}{{"acceleration native", accel, true}, {"acceleration disabled", config.Default(), false}} {
		t.Run(tc.name, func(t *testing.T) {
			topo, err := netns.Up(context.Background(), nicModelSpec().WithDatapath(tc.cfg))
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := topo.Down(context.Background()); err != nil {
					t.Errorf("down: %v", err)
				}
			}()
			for _, m := range []string{"node1", "node2", "ext", "r1"} {
				mm, _ := topo.Member(m)
				ifs, err := topo.Interfaces(m)
				if err != nil {
					t.Fatal(err)
				}
				for _, ifc := range ifs {
					seg, _ := topo.Member(ifc.Segment)
					id, err := nicmodel.XDPProgID(seg.NsPath, ifc.Peer)
					if err != nil {
						t.Fatal(err)
					}
					csum, err := nicmodel.TxChecksumOn(mm.NsPath, ifc.Name)
					if err != nil {
						t.Fatal(err)
					}
					// Only nodes' devices carry XDP acceleration; every end on
					// their segments sends complete checksums.
					wantXDP := tc.on && (m == "node1" || m == "node2")
					t.Logf("%s/%s (segment %s, MTU %d): bridge port %s xdp prog id %d, tx-checksumming %v", m, ifc.Name, ifc.Segment, ifc.MTU, ifc.Peer, id, csum)
					if (id != 0) != wantXDP {
						t.Errorf("%s/%s: bridge port %s has XDP program id %d, want attached %v", m, ifc.Name, ifc.Peer, id, wantXDP)
					}
					if csum != !tc.on {
						t.Errorf("%s/%s: tx checksum offload %v, want %v", m, ifc.Name, csum, !tc.on)
					}
				}
			}
		})
	}
}

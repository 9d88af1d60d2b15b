// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"fmt"
	"net/netip"

	"podpath/scenarios"
	"podpath/topology"
)

// Calico's CrossSubnet (tunnel-mode cross-subnet, issue 14) in the shared MTU checks:
// what the topology's oracle says about a node pair that the tunnel skips.

// crossSubnetNative says whether the oracle sends node's pod traffic to dst without a
// tunnel although the stage tunnels (tunnel-mode cross-subnet, a peer on node's own
// subnet).
func crossSubnetNative(o *topology.Oracle, node string, dst netip.Addr) (bool, error) {
	if !o.Options().CrossSubnet {
		return false, nil
	}
	ps, err := o.PathTo(node, dst)
	if err != nil {
		return false, err
	}
	return !ps.Encapsulated(), nil
}

// nativeKernelRoute checks that node n's kernel routes peer's pods (dst) natively with
// the underlay path MTU: no tunnel overhead is taken off (a route without an mtu
// metric inherits the device's, which must then be the path MTU).
func nativeKernelRoute(ctx context.Context, s *scenarios.Stage, label string, n topology.Node, peer string, dst netip.Addr, under topology.Paths) {
	want := under.MTU()
	got, out, err := kernelRouteMTU(ctx, s.T, n.Name, dst)
	if err == nil && got == 0 {
		got = internalIface(n).MTU
	}
	if err == nil && got != want {
		err = fmt.Errorf("route mtu %d, want the underlay path MTU %d (cross-subnet: %s is on %s's subnet, reached natively):\n%s\n  ip route get %s:\n%s",
			got, want, peer, n.Name, indent(under.String()), dst, indent(out))
	}
	s.Check(fmt.Sprintf("%s: %s's kernel route to %s's pods carries the underlay path MTU %d (cross-subnet: same subnet, no tunnel)", label, n.Name, peer, want),
		fmt.Sprintf("%s: ip route get %s (netlink RTM_GETROUTE, the mtu metric)", n.Name, dst), err)
}

// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"context"
	"fmt"

	"podpath/datapath/endpoint"
)

// pods plumbs every pod as a CNI plugin would (datapath/endpoint): a veth whose eth0 end
// is born in the pod namespace with the pod IP as /32 and a default route via the node's
// pod gateway (onlink), and whose host end lives in the node with a /32 route to the pod.
// The node holds the gateway as /32 on lo, so the host veth answers ARP for it. With
// podNetwork "agent" the pod namespaces stay empty: the node's agent plumbs them.
func (u *upper) pods(ctx context.Context) error {
	if u.t.spec.PodNetwork == topology.PodNetworkAgent {
		return nil
	}
	for _, n := range u.t.nodes {
		if len(n.Pods) == 0 {
			continue
		}
		nh, _, err := u.handle(n.Name)
		if err != nil {
			return err
		}
		if err := endpoint.EnsureGateway(nh, n.Gateway); err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		for _, p := range n.Pods {
			if err := ctx.Err(); err != nil {
				return err
			}
			u.t.progress("creating pod %s on node %s (%s, host veth %s)", p.Name, n.Name, p.IP, p.HostVeth)
			_, pfd, err := u.handle(p.Name)
			if err != nil {
				return err
			}
			if err := endpoint.Plumb(nh, pfd, podVeth(p, u.ifindex())); err != nil {
				return fmt.Errorf("pod %s on node %s: %w", p.Name, n.Name, err)
			}
		}
	}
	return nil
}

// podVeth is the pod's veth pair as datapath/endpoint plumbs it; hostIndex 0 lets the
// kernel choose (an explicit index keeps it distinct from the peer's, see ifindex).
func podVeth(p topology.Pod, hostIndex int) endpoint.Veth {
	return endpoint.Veth{
		HostName: p.HostVeth, HostMAC: p.HostMAC, HostIndex: hostIndex,
		PodMAC: p.MAC, PodIP: p.IP, MTU: p.MTU, Gateway: p.Gateway,
	}
}

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Host-namespace clients of services: the node's own packets to a frontend, translated on the node NIC's egress. */
#ifndef PODPATH_LB_HOST_H
#define PODPATH_LB_HOST_H

#include "common.h"
#include "config.h"
#include "endpoint.h"
#include "lb.h"
#include "nodeport.h"
#include "parse.h"
#include "trace.h"

/* to-netdev: a TCP/UDP packet the node itself sends (source = the node IP) to a
 * service frontend, routed out of this NIC (the agent routes ClusterIPs there; a
 * hostNetwork client without socket-LB), is translated as a pod's would be
 * (lb_service_xlate(): no SNAT, conntrack's reply entry brings the answer back,
 * reversed by from-container for a local backend and by from-netdev for a remote
 * one), then forwarded:
 *   a pod of this node -> its host-side veth (bpf_redirect; redirect_peer is an
 *                         ingress-only helper), MACs set as a router would;
 *   anything else      -> lb_forward() (FIB, or the tunnel).
 * Everything else is only traced, as before (observe()). Returns the tcx verdict. */
static __always_inline int lb_host_egress(struct __sk_buff *skb, enum obs_point point)
{
	const struct endpoint_info *ep;
	const struct lb_service *svc;
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	if (parse_frame(skb, &p, &sum, NULL, &reason) != PARSE_IPV4 || !CONFIG.lb_enabled ||
	    sum.saddr != config_node_ip() || !lb_l4(&p, &sum) || !(svc = lb_service_lookup(&sum))) {
		trace_pass(skb, point, PASS_NONE, &sum);
		return PP_TCX_NEXT;
	}
	reason = lb_service_xlate(skb, &p, &sum, svc);
	if (reason != DROP_NONE) {
		trace_drop(skb, point, reason, &sum);
		return PP_TCX_DROP;
	}
	ep = endpoint_lookup(sum.daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST)) {
		eth_set_macs(p.eth, ep->node_mac, ep->mac);
		trace_redirect(skb, point, VERDICT_REDIRECT, ep->ifindex, &sum);
		return bpf_redirect(ep->ifindex, 0);
	}
	return lb_forward(skb, &p, &sum, point, PP_TCX_NEXT, NULL);
}

#endif /* PODPATH_LB_HOST_H */

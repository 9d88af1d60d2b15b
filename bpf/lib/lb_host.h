/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Host-namespace clients of services: the node's own packets to a ClusterIP, translated where the agent routes them. */
#ifndef PODPATH_LB_HOST_H
#define PODPATH_LB_HOST_H

#include "common.h"
#include "config.h"
#include "drop.h"
#include "lb.h"
#include "nodeport.h"
#include "parse.h"
#include "trace.h"

/* Ingress of pp_svc_in: the agent routes every ClusterIP out of its peer pp_svc
 * (`ip route CIP/32 dev pp_svc src NODEIP`, a permanent neighbour), so a client of the
 * node's own namespace without socket-LB (a hostNetwork pod, curl on the node) sends
 * here. On ingress the packet has no route attached yet, so it is forwarded as
 * from-container forwards a pod's: lb_service_xlate() (no SNAT: the node is the
 * client, conntrack's reply entry brings the answer back, reversed by from-container
 * for a local backend and by from-netdev for a remote one), then lb_forward() (a
 * local pod with redirect_peer, else the tunnel or the FIB). What the load balancer
 * does not translate (not TCP/UDP, no such frontend) has nowhere to go:
 * DROP_HOST_SVC_UNTRANSLATED. Non-IPv4 frames (neighbour discovery) go to the stack. */
static __always_inline int lb_host_svc(struct __ctx_buff *skb, enum obs_point point)
{
	const struct lb_service *svc;
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	switch (parse_frame(skb, &p, &sum, NULL, &reason)) {
	case PARSE_DROP:
		goto drop;
	case PARSE_NOT_IPV4:
		trace_pass(skb, point, PASS_NOT_IPV4, &sum);
		return PP_TCX_PASS;
	case PARSE_IPV4:
		break;
	}
	reason = lb_frag_track(&p, &sum);
	if (reason != DROP_NONE)
		goto drop;
	reason = DROP_HOST_SVC_UNTRANSLATED;
	if (!CONFIG.lb_enabled || !lb_l4(&p, &sum) || !(svc = lb_service_lookup(&sum)))
		goto drop;
	reason = lb_service_xlate(skb, &p, &sum, svc);
	if (reason != DROP_NONE)
		goto drop;
	return lb_forward(skb, &p, &sum, point, PP_TCX_PASS, NULL);

drop:
	trace_drop(skb, point, reason, &sum);
	return CTX_ACT_DROP;
}

#endif /* PODPATH_LB_HOST_H */

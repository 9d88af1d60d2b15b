// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bpf_lxc: the pod's host-side veth (lxc...). from_container runs on its tcx ingress
 * (packets the pod sends), translates service traffic (nodeport.h, lb.h) and routes it: to a pod of this node with
 * bpf_redirect_peer, across nodes with a FIB lookup (native routing) or encapsulated
 * in VXLAN or Geneve (tunnel mode), everything else to the stack. to_container runs on
 * its tcx egress and only traces what the stack delivers. */

#include "common.h"
#include "config.h"
#include "drop.h"
#include "egressgw.h"
#include "encap.h"
#include "endpoint.h"
#include "fib.h"
#include "maps.h"
#include "nodeport.h"
#include "parse.h"
#include "policy.h"
#include "trace.h"

/* Packets the program does not forward itself go to the stack with TCX_PASS: this
 * program is the pod's router, so no later tcx program on the veth gets a say. */
#define LXC_PASS PP_TCX_PASS

SEC("tc")
int from_container(struct __sk_buff *skb)
{
	const struct endpoint_info *ep;
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;
	__be32 egw_gateway = 0;
	int local;

	switch (parse_frame(skb, &p, &sum, NULL, &reason)) {
	case PARSE_DROP:
		goto drop;
	case PARSE_NOT_IPV4:
		trace_pass(skb, OBS_FROM_CONTAINER, PASS_NOT_IPV4, &sum);
		return LXC_PASS;
	case PARSE_IPV4:
		break;
	}

	/* Service translation comes first, whatever the routing: what follows forwards
	 * the translated packet (see lb_from_container()). */
	if (CONFIG.lb_enabled) {
		int verdict;

		if (lb_from_container(skb, &p, &sum, LXC_PASS, &verdict) == LB_DONE)
			return verdict;
	}

	/* Policy, on the translated packet (as Cilium: policy sees the backend, not the
	 * service): the pod's egress, and for a pod of this node also that pod's ingress,
	 * both on one conntrack lookup; peers' identities from the ipcache. */
	ep = endpoint_lookup(sum.daddr);
	local = ep && !(ep->flags & ENDPOINT_F_HOST);
	if (CONFIG.policy_enabled) {
		reason = local ? policy_check_local(skb, skb->ifindex, ep->ifindex, &sum)
			       : policy_check(skb, OBS_FROM_CONTAINER, skb->ifindex, POLICY_EGRESS, 0, &sum);
		if (reason != DROP_NONE)
			goto drop;
	}

	/* Egress gateway: a flow a policy selects leaves through its gateway node,
	 * reached through the tunnel (tunnel_from_container() towards the gateway) or
	 * natively (egw_forward_native()); no gateway node is a drop. */
	if (!ep && CONFIG.egress_gw_enabled) {
		reason = egw_request(&sum, &egw_gateway);
		if (reason != DROP_NONE)
			goto drop;
		if (egw_gateway && (!tunnel_enabled() || tunnel_peer_native(egw_gateway)))
			return egw_forward_native(skb, &p, &sum, egw_gateway, LXC_PASS);
	}

	/* Legacy host routing hands everything to the stack, except, in tunnel mode,
	 * what must be encapsulated: the stack cannot add the tunnel (no Geneve driver,
	 * and the vxlan device needs the metadata only BPF sets), as in Cilium. */
	if (CONFIG.host_routing == HOST_ROUTING_LEGACY && !tunnel_enabled()) {
		trace_pass(skb, OBS_FROM_CONTAINER, PASS_LEGACY_HOST_ROUTING, &sum);
		return LXC_PASS;
	}

	if (ep) {
		if (CONFIG.host_routing == HOST_ROUTING_LEGACY) {
			trace_pass(skb, OBS_FROM_CONTAINER, PASS_LEGACY_HOST_ROUTING, &sum);
			return LXC_PASS;
		}
		if (!local) {
			trace_pass(skb, OBS_FROM_CONTAINER, PASS_TO_HOST, &sum);
			return LXC_PASS;
		}
		return endpoint_deliver(skb, &p, ep, &sum, OBS_FROM_CONTAINER, LXC_PASS, NULL);
	}

	if (CONFIG.routing_mode != ROUTING_MODE_NATIVE)
		return tunnel_from_container(skb, &p, &sum, egw_gateway, LXC_PASS);
	if (!in_native_routing_cidr(sum.daddr)) {
		trace_pass(skb, OBS_FROM_CONTAINER, PASS_OUTSIDE_NATIVE_CIDR, &sum);
		return LXC_PASS;
	}
	return fib_redirect(skb, &p, &sum, OBS_FROM_CONTAINER, LXC_PASS);

drop:
	trace_drop(skb, OBS_FROM_CONTAINER, reason, &sum);
	return PP_TCX_DROP;
}

/* Observer: what the stack hands to the pod (legacy host routing, ARP, traffic from
 * the node). bpf_redirect_peer deliveries bypass this hook. */
SEC("tc")
int to_container(struct __sk_buff *skb)
{
	return observe(skb, OBS_TO_CONTAINER);
}

char __license[] SEC("license") = "Dual BSD/GPL";

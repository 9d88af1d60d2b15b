// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bpf_host: the node's underlay NIC. from_netdev runs on its tcx ingress, serves
 * NodePort and external-IP frontends (nodeport.h), and hands packets for a pod of this node straight into the pod with bpf_redirect_peer,
 * decapsulating Geneve or IPIP first in tunnel mode (VXLAN goes to the stack, whose vxlan
 * device decapsulates: bpf_overlay takes over there); to_netdev runs on its tcx egress,
 * masquerades pods' traffic leaving the cluster (masq.h) and traces. With
 * masquerading, from_netdev translates replies to masqueraded flows back first. */

#include "common.h"
#include "config.h"
#include "decap.h"
#include "drop.h"
#include "endpoint.h"
#include "lb_host.h"
#include "maps.h"
#include "masq.h"
#include "nodeport.h"
#include "parse.h"
#include "trace.h"

/* Packets not for a local pod continue with TCX_NEXT, not TCX_PASS: the NIC is
 * shared with the rest of the node, and another tcx program attached after this one
 * (a host firewall, a capture tool) still sees them. With none, NEXT is PASS. */
#define HOST_PASS PP_TCX_NEXT

/* Geneve for this node (tunnel_for_this_node()), decapsulated in BPF: geneve_decap()
 * checks and removes the outer headers; a DSR option's flow is recorded on this, the
 * backend's, node (lb_dsr_learn(), DSR modes); the load balancer translates replies
 * (lb_ingress_reply()); then tunnel_deliver(). Drops carry the tunnel part. */
static __always_inline int from_netdev_geneve(struct __sk_buff *skb, struct parsed *p,
					      struct pkt_summary *sum)
{
	struct decap_result d = {};
	enum drop_reason reason;

	reason = geneve_decap(skb, p, sum, &d);
	if (reason == DROP_NONE && d.dsr_opt && lb_dsr_enabled())
		reason = lb_dsr_learn(skb, p, sum, &d.dsr);
	if (reason != DROP_NONE) {
		trace_drop_tun(skb, OBS_FROM_NETDEV, reason, sum, &d.tun);
		return PP_TCX_DROP;
	}
	if (CONFIG.lb_enabled) {
		int verdict;

		if (lb_ingress_reply(skb, p, sum, OBS_FROM_NETDEV, HOST_PASS, &verdict) == LB_DONE)
			return verdict;
	}
	return tunnel_deliver(skb, p, sum, &d.tun, OBS_FROM_NETDEV, HOST_PASS);
}

/* IPIP for this node (tunnel_for_this_node()), decapsulated in BPF: ipip_decap()
 * checks and removes the outer IPv4 header; the load balancer translates replies
 * (lb_ingress_reply()); then tunnel_deliver(). Drops carry the tunnel part. */
static __always_inline int from_netdev_ipip(struct __sk_buff *skb, struct parsed *p,
					    struct pkt_summary *sum)
{
	struct decap_result d = {};
	enum drop_reason reason;

	reason = ipip_decap(skb, p, sum, &d);
	if (reason != DROP_NONE) {
		trace_drop_tun(skb, OBS_FROM_NETDEV, reason, sum, &d.tun);
		return PP_TCX_DROP;
	}
	if (CONFIG.lb_enabled) {
		int verdict;

		if (lb_ingress_reply(skb, p, sum, OBS_FROM_NETDEV, HOST_PASS, &verdict) == LB_DONE)
			return verdict;
	}
	return tunnel_deliver(skb, p, sum, &d.tun, OBS_FROM_NETDEV, HOST_PASS);
}

/* from_netdev_decap: Geneve and IPIP for this node, in a program of its own that
 * from_netdev tail-calls. Every path of the node's ingress inlined into one program
 * (decapsulation and delivery with policy beside NodePort, masquerading and local
 * delivery) would pass the 32K-instruction reach of a BPF jump; a tail call also
 * starts with a fresh 512-byte stack, which from_netdev has nearly used up. */
SEC("tc")
int from_netdev_decap(struct __sk_buff *skb)
{
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason = DROP_NONE;

	if (parse_frame(skb, &p, &sum, NULL, &reason) != PARSE_IPV4) {
		trace_drop(skb, OBS_FROM_NETDEV, reason != DROP_NONE ? reason : DROP_NOT_IPV4, &sum);
		return PP_TCX_DROP;
	}
	if (CONFIG.tunnel_protocol == TUNNEL_GENEVE)
		return from_netdev_geneve(skb, &p, &sum);
	return from_netdev_ipip(skb, &p, &sum);
}

/* from_netdev_egw_reply: at an egress gateway in tunnel mode, a reply masq_ingress()
 * translated back to a pod of another node goes to that node through the tunnel (the
 * way the request came), with the world's identity (2) in the VNI, as Cilium's
 * gateway does. A program of its own for the same reason as from_netdev_decap. */
SEC("tc")
int from_netdev_egw_reply(struct __sk_buff *skb)
{
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason = DROP_NONE;

	if (parse_frame(skb, &p, &sum, NULL, &reason) != PARSE_IPV4) {
		trace_drop(skb, OBS_FROM_NETDEV, reason != DROP_NONE ? reason : DROP_NOT_IPV4, &sum);
		return PP_TCX_DROP;
	}
	return tunnel_encap(skb, &p, &sum, OBS_FROM_NETDEV, IDENTITY_WORLD, NULL, 0, HOST_PASS);
}

#define HOST_TAIL_DECAP     0
#define HOST_TAIL_EGW_REPLY 1

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 2);
	__uint(key_size, sizeof(__u32));
	__array(values, int(struct __sk_buff *));
} host_tails SEC(".maps") = {
	.values = {
		[HOST_TAIL_DECAP] = (void *)&from_netdev_decap,
		[HOST_TAIL_EGW_REPLY] = (void *)&from_netdev_egw_reply,
	},
};

SEC("tc")
int from_netdev(struct __sk_buff *skb)
{
	const struct endpoint_info *ep = NULL;
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	switch (parse_frame(skb, &p, &sum, NULL, &reason)) {
	case PARSE_DROP:
		goto drop;
	case PARSE_NOT_IPV4:
		trace_pass(skb, OBS_FROM_NETDEV, PASS_NOT_IPV4, &sum);
		return HOST_PASS;
	case PARSE_IPV4:
		break;
	}

	/* Replies to masqueraded flows, and ICMP errors about them, before anything
	 * else: from here on they are packets for a pod of this node. */
	if (CONFIG.masq_enabled) {
		reason = masq_ingress(skb, &p, &sum);
		if (reason != DROP_NONE)
			goto drop;
		/* At an egress gateway in tunnel mode, a reply for a pod of another node
		 * goes back through the tunnel (from_netdev_egw_reply). */
		if (CONFIG.egress_gw_enabled && tunnel_enabled() && sum.lb.action == TRACE_LB_REV_MASQ) {
			const struct ipcache_info *ic = ipcache_lookup(sum.daddr);

			if (ic && ic->tunnel_endpoint && ic->tunnel_endpoint != config_node_ip() &&
			    !tunnel_peer_native(ic->tunnel_endpoint)) {
				bpf_tail_call(skb, &host_tails, HOST_TAIL_EGW_REPLY);
				reason = DROP_MISSED_TAIL_CALL;
				goto drop;
			}
		}
	}

	if (tunnel_enabled() && tunnel_for_this_node(&sum)) {
		if (CONFIG.tunnel_protocol == TUNNEL_GENEVE || CONFIG.tunnel_protocol == TUNNEL_IPIP) {
			bpf_tail_call(skb, &host_tails, HOST_TAIL_DECAP);
			reason = DROP_MISSED_TAIL_CALL;
			goto drop;
		}
		/* VXLAN: the stack hands it to the vxlan device's socket. */
		trace_pass(skb, OBS_FROM_NETDEV, PASS_TO_OVERLAY, &sum);
		return HOST_PASS;
	}

	/* NodePort and external-IP frontends, and replies to translated flows, before
	 * anything else: they are forwarded in BPF whatever the host routing (see
	 * lb_from_netdev(), which also looks up the destination's endpoint). */
	if (CONFIG.lb_enabled) {
		int verdict;

		if (lb_from_netdev(skb, &p, &sum, HOST_PASS, &verdict, &ep) == LB_DONE)
			return verdict;
	}

	if (CONFIG.host_routing == HOST_ROUTING_LEGACY) {
		trace_pass(skb, OBS_FROM_NETDEV, PASS_LEGACY_HOST_ROUTING, &sum);
		return HOST_PASS;
	}

	if (!CONFIG.lb_enabled)
		ep = endpoint_lookup(sum.daddr);
	if (!ep) {
		trace_pass(skb, OBS_FROM_NETDEV, PASS_NOT_ENDPOINT, &sum);
		return HOST_PASS;
	}
	if (ep->flags & ENDPOINT_F_HOST) {
		trace_pass(skb, OBS_FROM_NETDEV, PASS_TO_HOST, &sum);
		return HOST_PASS;
	}
	/* The addresses of this node and its pods never arrive from the wire. The stack
	 * would drop such a packet as a martian source, but redirect_peer skips the stack,
	 * so the check sits here, on local delivery only: what goes to the stack meets
	 * the stack's own checks, and other packets pay no extra lookup. */
	if (sum.saddr == config_node_ip() || endpoint_lookup(sum.saddr)) {
		reason = DROP_SPOOFED_SOURCE;
		goto drop;
	}
	/* In tunnel mode a remote pod's packets only ever arrive encapsulated (decapsulated
	 * by the overlay or the Geneve path, never here): a plain one is forged. Nodes
	 * themselves still reach pods plain, with their own addresses; with tunnel-mode
	 * cross-subnet, so do the pods of peers in this node's own subnet. */
	if (tunnel_enabled()) {
		const struct ipcache_info *src = ipcache_lookup(sum.saddr);

		if (src && src->tunnel_endpoint && !tunnel_peer_native(src->tunnel_endpoint)) {
			reason = DROP_SPOOFED_SOURCE;
			goto drop;
		}
	}
	return endpoint_redirect(skb, &p, ep, &sum, OBS_FROM_NETDEV, HOST_PASS, NULL);

drop:
	trace_drop(skb, OBS_FROM_NETDEV, reason, &sum);
	return PP_TCX_DROP;
}

/* What leaves the node on the underlay: traced, and with masquerading, pods' packets
 * leaving the cluster get the egress device's address (masq_egress()). */
SEC("tc")
int to_netdev(struct __sk_buff *skb)
{
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	if (!CONFIG.masq_enabled)
		return observe(skb, OBS_TO_NETDEV);
	if (parse_frame(skb, &p, &sum, NULL, &reason) == PARSE_IPV4) {
		reason = masq_egress(skb, &p, &sum);
		if (reason != DROP_NONE) {
			trace_drop(skb, OBS_TO_NETDEV, reason, &sum);
			return PP_TCX_DROP;
		}
	}
	trace_pass(skb, OBS_TO_NETDEV, PASS_NONE, &sum);
	return PP_TCX_NEXT;
}

/* The node's own packets to ClusterIPs (host-namespace clients without socket-LB):
 * tcx ingress of pp_svc_in, the peer of the pp_svc veth the agent routes ClusterIPs
 * to (lb_host_svc()). */
SEC("tc")
int from_host_svc(struct __sk_buff *skb)
{
	return lb_host_svc(skb, OBS_FROM_HOST_SVC);
}

char __license[] SEC("license") = "Dual BSD/GPL";

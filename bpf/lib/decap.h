/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Decapsulation: Geneve in BPF at from-netdev, and delivery of decapsulated packets
 * (Geneve, or VXLAN from the vxlan device) to the local pod they are for. */
#ifndef PODPATH_DECAP_H
#define PODPATH_DECAP_H

#include "common.h"
#include "config.h"
#include "csum.h"
#include "drop.h"
#include "endpoint.h"
#include "geneve.h"
#include "maps.h"
#include "nodeport.h"
#include "parse.h"
#include "trace.h"
#include "tunnel.h"

#ifndef PACKET_HOST
#define PACKET_HOST 0
#endif

/* Delivers a decapsulated packet (p and sum describe the inner IPv4 packet behind an
 * Ethernet header) as from-netdev delivers a native one:
 *   a reply to a translated flow (lb_enabled) -> translated back first, see
 *                                   lb_ingress_reply(); SNAT replies forwarded there;
 *   legacy host routing          -> stack, PASS_LEGACY_HOST_ROUTING;
 *   the node itself              -> stack, PASS_TO_HOST;
 *   a pod of this node           -> endpoint_redirect(): MACs, TTL - 1, redirect_peer;
 *   anything else                -> DROP_TUNNEL_WRONG_NODE: the sender's ipcache named
 *                                   this node for an address that is not here.
 * What goes to the stack is marked PACKET_HOST: the inner Ethernet destination is the
 * sending node's gateway MAC, which the vxlan device's eth_type_trans() judged
 * "other host" and ip_rcv() would drop. */
static __always_inline int tunnel_deliver(struct __sk_buff *skb, struct parsed *p,
					  struct pkt_summary *sum, const struct trace_tun *tun,
					  enum obs_point point, int pass_ret)
{
	const struct endpoint_info *ep;

	if (CONFIG.lb_enabled) {
		int verdict;

		if (lb_ingress_reply(skb, p, sum, point, pass_ret, &verdict) == LB_DONE)
			return verdict;
	}
	if (CONFIG.host_routing == HOST_ROUTING_LEGACY) {
		bpf_skb_change_type(skb, PACKET_HOST);
		trace_pass_tun(skb, point, PASS_LEGACY_HOST_ROUTING, sum, tun);
		return pass_ret;
	}
	ep = endpoint_lookup(sum->daddr);
	if (!ep) {
		trace_drop_tun(skb, point, DROP_TUNNEL_WRONG_NODE, sum, tun);
		return PP_TCX_DROP;
	}
	if (ep->flags & ENDPOINT_F_HOST) {
		bpf_skb_change_type(skb, PACKET_HOST);
		trace_pass_tun(skb, point, PASS_TO_HOST, sum, tun);
		return pass_ret;
	}
	return endpoint_redirect(skb, p, ep, sum, point, pass_ret, tun);
}

/* RFC 6040 decapsulation of ECN, as the kernel's INET_ECN_decapsulate(): an outer CE
 * mark is copied into an ECN-capable inner packet (checksum fixed by hand, so packet
 * pointers stay valid); a not-ECT inner packet with an outer CE is dropped. */
static __always_inline enum drop_reason tunnel_ecn_decap(struct iphdr *ip, __u8 outer_tos)
{
	__be16 old, new;

	if ((outer_tos & PP_ECN_MASK) != PP_ECN_CE || (ip->tos & PP_ECN_MASK) == PP_ECN_CE)
		return DROP_NONE;
	if ((ip->tos & PP_ECN_MASK) == 0)
		return DROP_TUNNEL_ECN;
	old = *(__be16 *)ip;
	ip->tos |= PP_ECN_CE;
	new = *(__be16 *)ip;
	csum_replace2(&ip->check, old, new);
	return DROP_NONE;
}

/* Geneve decapsulation at from-netdev, for UDP to the tunnel port and this node's IP
 * (tunnel_for_this_node()). p and sum describe the outer packet on entry. Checks, in
 * order, each with its drop reason:
 *   an outer fragment                          DROP_TUNNEL_FRAGMENT
 *   UDP + Geneve base header inside the packet DROP_TRUNCATED_GENEVE
 *   version 0                                  DROP_GENEVE_VERSION
 *   O clear (no control message)               DROP_GENEVE_CONTROL
 *   C clear (no critical option)               DROP_GENEVE_CRITICAL_OPT
 *   protocol 0x6558                            DROP_GENEVE_PROTOCOL
 *   options inside the packet, well formed,
 *   none critical                              DROP_GENEVE_OPT_LEN, _CRITICAL_OPT
 *   (a Cilium DSR option first among them is read: the flow is recorded by
 *   lb_dsr_learn() once the inner packet is known, in DSR modes)
 *   inner Ethernet + IPv4 header present       DROP_TRUNCATED_INNER
 *   inner EtherType IPv4                       DROP_NOT_IPV4
 *   VNI (source identity) not 0                DROP_BAD_VNI
 *   outer source a node of the cluster         DROP_UNKNOWN_TUNNEL_PEER
 * then bpf_skb_adjust_room() removes outer IPv4, UDP, Geneve, options and the inner
 * Ethernet header (the outer Ethernet header stays in front, its MACs rewritten on
 * delivery), the inner IPv4 header is parsed like any other, ECN is decapsulated, and
 * tunnel_deliver() takes over. The reserved fields are ignored (RFC 8926), and so is a
 * non-zero UDP checksum: it is not verified. */
static __always_inline int geneve_decap(struct __sk_buff *skb, struct parsed *p,
					struct pkt_summary *sum, enum obs_point point, int pass_ret)
{
	struct trace_tun tun = { .kind = TRACE_DECAP_GENEVE, .endpoint = sum->saddr, .pkt_len = skb->len };
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct dsr_geneve_data dsr = {};
	struct genevehdr *gh;
	struct ethhdr *ieth;
	enum drop_reason reason;
	__u32 opt_len, inner_off, dsr_off = 0;
	__u8 outer_tos;

	if (p->ip->frag_off & bpf_htons(PP_IP_MF | PP_IP_OFFSET)) {
		reason = DROP_TUNNEL_FRAGMENT;
		goto drop;
	}
	outer_tos = p->ip->tos;
	gh = data + p->l4_off + sizeof(struct udphdr);
	if ((void *)(gh + 1) > data_end) {
		reason = DROP_TRUNCATED_GENEVE;
		goto drop;
	}
	tun.identity = geneve_vni(gh);
	if (gh->ver_optlen >> 6) {
		reason = DROP_GENEVE_VERSION;
		goto drop;
	}
	if (gh->flags & GENEVE_F_OAM) {
		reason = DROP_GENEVE_CONTROL;
		goto drop;
	}
	if (gh->flags & GENEVE_F_CRITICAL) {
		reason = DROP_GENEVE_CRITICAL_OPT;
		goto drop;
	}
	if (gh->proto != bpf_htons(GENEVE_PROTO_ETH)) {
		reason = DROP_GENEVE_PROTOCOL;
		goto drop;
	}
	opt_len = (gh->ver_optlen & 0x3f) * 4;
	inner_off = p->l4_off + sizeof(struct udphdr) + sizeof(struct genevehdr) + opt_len;
	if (data + inner_off > data_end) {
		reason = DROP_GENEVE_OPT_LEN;
		goto drop;
	}
	if (opt_len) {
		reason = geneve_opts_check(skb, p->l4_off + sizeof(struct udphdr) + sizeof(struct genevehdr),
					   opt_len);
		if (reason != DROP_NONE)
			goto drop;
		dsr_off = geneve_dsr_opt(skb, p->l4_off + sizeof(struct udphdr) + sizeof(struct genevehdr),
					 opt_len, &dsr);
		data = ctx_data(skb);
		data_end = ctx_data_end(skb);
	}
	ieth = data + inner_off;
	if ((void *)(ieth + 1) + sizeof(struct iphdr) > data_end) {
		reason = DROP_TRUNCATED_INNER;
		goto drop;
	}
	if (ieth->h_proto != bpf_htons(ETH_P_IP)) {
		reason = DROP_NOT_IPV4;
		goto drop;
	}
	reason = tunnel_check_peer(&tun);
	if (reason != DROP_NONE)
		goto drop;

	if (bpf_skb_adjust_room(skb, -(__s32)inner_off, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) < 0) {
		reason = DROP_DECAP_FAILED;
		goto drop;
	}
	__builtin_memset(sum, 0, sizeof(*sum));
	reason = parse_eth(skb, p, sum);
	if (reason == DROP_NONE)
		reason = parse_ipv4(skb, p, sum);
	if (reason == DROP_NONE)
		reason = tunnel_ecn_decap(p->ip, outer_tos);
	if (reason == DROP_NONE && dsr_off && lb_dsr_enabled()) {
		struct dsr_service fe = { .addr = dsr.addr, .port = dsr.port };

		reason = lb_dsr_learn(skb, p, sum, &fe);
	}
	if (reason != DROP_NONE)
		goto drop;
	return tunnel_deliver(skb, p, sum, &tun, point, pass_ret);

drop:
	trace_drop_tun(skb, point, reason, sum, &tun);
	return PP_TCX_DROP;
}

#endif /* PODPATH_DECAP_H */

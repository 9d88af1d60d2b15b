/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Decapsulation: Geneve in BPF at from-netdev, and delivery of decapsulated packets
 * (Geneve, or VXLAN from the vxlan device) to the local pod they are for. The load
 * balancer's part (replies, DSR) is the entry program's: decap.h never calls it. */
#ifndef PODPATH_DECAP_H
#define PODPATH_DECAP_H

#include "common.h"
#include "config.h"
#include "csum.h"
#include "drop.h"
#include "dsr.h"
#include "egressgw.h"
#include "endpoint.h"
#include "geneve.h"
#include "ipv4.h"
#include "maps.h"
#include "parse.h"
#include "trace.h"
#include "tunnel.h"

#ifndef PACKET_HOST
#define PACKET_HOST 0
#endif

/* Delivers a decapsulated packet (p and sum describe the inner IPv4 packet behind an
 * Ethernet header) as from-netdev delivers a native one. The entry program gave the
 * load balancer its look first (lb_enabled: lb_ingress_reply() translates replies
 * back and forwards SNAT replies itself); what continues goes:
 *   legacy host routing          -> stack, PASS_LEGACY_HOST_ROUTING;
 *   the node itself              -> stack, PASS_TO_HOST;
 *   a pod of this node           -> endpoint_redirect(): MACs, TTL - 1, redirect_peer;
 *   a flow this node is the egress
 *   gateway of (egw_at_gateway()) -> stack, PASS_EGRESS_GATEWAY: routed out, SNATed
 *                                   to the egress IP at to-netdev;
 *   anything else                -> DROP_TUNNEL_WRONG_NODE: the sender's ipcache named
 *                                   this node for an address that is not here.
 * What goes to the stack is marked PACKET_HOST: the inner Ethernet destination is the
 * sending node's gateway MAC, which the vxlan device's eth_type_trans() judged
 * "other host" and ip_rcv() would drop. */
static __always_inline int tunnel_deliver(struct __ctx_buff *skb, struct parsed *p,
					  struct pkt_summary *sum, const struct trace_tun *tun,
					  enum obs_point point, int pass_ret)
{
	const struct endpoint_info *ep;

	if (CONFIG.host_routing == HOST_ROUTING_LEGACY) {
		ctx_change_type(skb, PACKET_HOST);
		trace_pass_tun(skb, point, PASS_LEGACY_HOST_ROUTING, sum, tun);
		return pass_ret;
	}
	ep = endpoint_lookup(sum->daddr);
	if (!ep && egw_at_gateway(sum)) {
		bpf_skb_change_type(skb, PACKET_HOST);
		trace_pass_tun(skb, point, PASS_EGRESS_GATEWAY, sum, tun);
		return pass_ret;
	}
	if (!ep) {
		trace_drop_tun(skb, point, DROP_TUNNEL_WRONG_NODE, sum, tun);
		return CTX_ACT_DROP;
	}
	if (ep->flags & ENDPOINT_F_HOST) {
		ctx_change_type(skb, PACKET_HOST);
		trace_pass_tun(skb, point, PASS_TO_HOST, sum, tun);
		return pass_ret;
	}
	return endpoint_redirect(skb, p, ep, sum, point, pass_ret, tun);
}

/* RFC 6040 decapsulation of ECN, as the kernel's INET_ECN_decapsulate(): an outer CE
 * mark is copied into an ECN-capable inner packet (checksum fixed by hand, so packet
 * pointers stay valid); a not-ECT inner packet with an outer CE is dropped (DROP_TUNNEL_ECN). writes: ecn.inner.ipv4.tos ecn.inner.ipv4.checksum */
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

/* What geneve_decap() hands back besides the inner packet. */
struct decap_result {
	struct trace_tun tun;   /* the tunnel part of the inner packet's trace records */
	struct dsr_service dsr; /* the service a Cilium DSR option named (dsr_opt) */
	__u8 dsr_opt;           /* the options began with the DSR option */
};

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
 *   (a Cilium DSR option first among them is read into d->dsr: the caller
 *   records the flow, lb_dsr_learn(), in DSR modes)
 *   inner Ethernet + IPv4 header present       DROP_TRUNCATED_INNER
 *   inner EtherType IPv4                       DROP_NOT_IPV4
 *   VNI (source identity) not 0                DROP_BAD_VNI
 *   outer source a node of the cluster         DROP_UNKNOWN_TUNNEL_PEER
 * then bpf_skb_adjust_room() removes outer IPv4, UDP, Geneve, options and the inner
 * Ethernet header (the outer Ethernet header stays in front, its MACs rewritten on
 * delivery), the inner IPv4 header is parsed like any other and ECN is decapsulated.
 * The reserved fields are ignored (RFC 8926), and so is a non-zero UDP checksum: it
 * is not verified. Returns DROP_NONE with p and sum describing the inner packet, for
 * tunnel_deliver(), or the reason to drop; d->tun is filled for the trace record
 * either way (sum as far as it got). */
static __always_inline enum drop_reason geneve_decap(struct __ctx_buff *skb, struct parsed *p,
						     struct pkt_summary *sum, struct decap_result *d)
{
	struct trace_tun *tun = &d->tun;
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct dsr_geneve_data dsr = {};
	struct genevehdr *gh;
	struct ethhdr *ieth;
	enum drop_reason reason;
	__u32 opt_len, inner_off, dsr_found = 0;
	__u8 outer_tos;

	tun->kind = TRACE_DECAP_GENEVE;
	tun->endpoint = sum->saddr;
	tun->pkt_len = ctx_len(skb);
	if (p->ip->frag_off & bpf_htons(PP_IP_MF | PP_IP_OFFSET))
		return DROP_TUNNEL_FRAGMENT;
	outer_tos = p->ip->tos;
	gh = data + p->l4_off + sizeof(struct udphdr);
	if ((void *)(gh + 1) > data_end)
		return DROP_TRUNCATED_GENEVE;
	tun->identity = geneve_vni(gh);
	if (gh->ver_optlen >> 6)
		return DROP_GENEVE_VERSION;
	if (gh->flags & GENEVE_F_OAM)
		return DROP_GENEVE_CONTROL;
	if (gh->flags & GENEVE_F_CRITICAL)
		return DROP_GENEVE_CRITICAL_OPT;
	if (gh->proto != bpf_htons(GENEVE_PROTO_ETH))
		return DROP_GENEVE_PROTOCOL;
	opt_len = (gh->ver_optlen & 0x3f) * 4;
	inner_off = p->l4_off + sizeof(struct udphdr) + sizeof(struct genevehdr) + opt_len;
	if (data + inner_off > data_end)
		return DROP_GENEVE_OPT_LEN;
	if (opt_len) {
		reason = geneve_opts_check(skb, p->l4_off + sizeof(struct udphdr) + sizeof(struct genevehdr),
					   opt_len);
		if (reason != DROP_NONE)
			return reason;
		dsr_found = geneve_dsr_opt(skb, p->l4_off + sizeof(struct udphdr) + sizeof(struct genevehdr),
					 opt_len, &dsr);
		data = ctx_data(skb);
		data_end = ctx_data_end(skb);
	}
	ieth = data + inner_off;
	if ((void *)(ieth + 1) + sizeof(struct iphdr) > data_end)
		return DROP_TRUNCATED_INNER;
	if (ieth->h_proto != bpf_htons(ETH_P_IP))
		return DROP_NOT_IPV4;
	reason = tunnel_check_peer(tun);
	if (reason != DROP_NONE)
		return reason;

	if (ctx_adjust_room(skb, -(__s32)inner_off, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		return DROP_DECAP_FAILED;
	__builtin_memset(sum, 0, sizeof(*sum));
	reason = parse_eth(skb, p, sum);
	if (reason == DROP_NONE)
		reason = parse_ipv4(skb, p, sum);
	if (reason == DROP_NONE)
		reason = tunnel_ecn_decap(p->ip, outer_tos);
	if (reason == DROP_NONE && dsr_found) {
		d->dsr_opt = 1;
		d->dsr.addr = dsr.addr;
		d->dsr.port = dsr.port;
	}
	return reason;
}

/* IPIP decapsulation at from-netdev (podpath extension, Calico's IPIP mode), for
 * IPv4 protocol 4 to this node's IP (tunnel_for_this_node()). p and sum describe the
 * outer packet on entry. Checks, in order, each with its drop reason:
 *   an outer fragment                          DROP_TUNNEL_FRAGMENT
 *   an IPv4 header's worth of payload          DROP_IPIP_TRUNCATED_INNER
 *   the payload's version field 4              DROP_IPIP_INNER_NOT_IPV4
 *   outer source a node of the cluster         DROP_IPIP_UNKNOWN_PEER
 * then bpf_skb_adjust_room() removes the outer IPv4 header (the outer Ethernet header
 * stays in front, its MACs rewritten on delivery), the inner IPv4 header is parsed
 * like any other (parse_ipv4()'s reasons: IHL, total length, L4) and ECN is
 * decapsulated (RFC 6040). IPIP carries no identity: d->tun.identity stays 0 in the
 * trace record (an ipcache lookup of the inner source would cost an LPM lookup per
 * packet, and nothing on this path reads it). Returns
 * DROP_NONE with p and sum describing the inner packet, for tunnel_deliver(), or the
 * reason to drop. */
static __always_inline enum drop_reason ipip_decap(struct __ctx_buff *skb, struct parsed *p,
						   struct pkt_summary *sum, struct decap_result *d)
{
	struct trace_tun *tun = &d->tun;
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	enum drop_reason reason;
	struct iphdr *inner;
	__u32 outer_len;
	__u8 outer_tos;

	tun->kind = TRACE_DECAP_IPIP;
	tun->endpoint = sum->saddr;
	tun->pkt_len = ctx_len(skb);
	if (p->ip->frag_off & bpf_htons(PP_IP_MF | PP_IP_OFFSET))
		return DROP_TUNNEL_FRAGMENT;
	outer_tos = p->ip->tos;
	outer_len = p->l4_off - sizeof(struct ethhdr);
	inner = data + p->l4_off;
	if ((void *)(inner + 1) > data_end)
		return DROP_IPIP_TRUNCATED_INNER;
	if (inner->version != 4)
		return DROP_IPIP_INNER_NOT_IPV4;
	if (!node_lookup(tun->endpoint))
		return DROP_IPIP_UNKNOWN_PEER;

	if (ctx_adjust_room(skb, -(__s32)outer_len, BPF_ADJ_ROOM_MAC, BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		return DROP_DECAP_FAILED;
	__builtin_memset(sum, 0, sizeof(*sum));
	reason = parse_eth(skb, p, sum);
	if (reason == DROP_NONE)
		reason = parse_ipv4(skb, p, sum);
	if (reason == DROP_NONE)
		reason = tunnel_ecn_decap(p->ip, outer_tos);
	return reason;
}

#endif /* PODPATH_DECAP_H */

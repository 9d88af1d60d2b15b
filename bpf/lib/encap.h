/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Overlay encapsulation of cross-node pod traffic: VXLAN through the kernel's collect_md
 * vxlan device, Geneve written in BPF. */
#ifndef PODPATH_ENCAP_H
#define PODPATH_ENCAP_H

#include "common.h"
#include "config.h"
#include "csum.h"
#include "drop.h"
#include "dsr.h"
#include "endpoint.h"
#include "fib.h"
#include "geneve.h"
#include "ipv4.h"
#include "maps.h"
#include "parse.h"
#include "trace.h"
#include "tunnel.h"

/* Test hook, zero in every loader: when set, from-container adds one Cilium-class
 * option (type GENEVE_OPT_TYPE_TEST, the shape of the DSR option: inner destination
 * address and port) to every Geneve packet, so fixtures exercise the option path that
 * DSR will use. The option bytes count against the tunnel MTU. */
volatile const __u32 GENEVE_TEST_OPT = 0;

/* The tunnel MTU towards a node: its own (node_info.mtu, the underlay path MTU to that
 * node less the overhead, learnt by the agent) when set and smaller than the global
 * CONFIG.tunnel_mtu (the node's own device MTU less the overhead), else the global
 * one. A path that narrows on the way (a smaller leg behind a router) so gets DF
 * packets handed to the stack, which answers with the per-peer route's MTU, instead
 * of encapsulated into a black hole. */
static __always_inline __u32 node_tunnel_mtu(const struct node_info *node)
{
	if (node && node->mtu && node->mtu < CONFIG.tunnel_mtu)
		return node->mtu;
	return CONFIG.tunnel_mtu;
}

/* The MTU contract. A packet is encapsulated as it is when its inner IPv4 packet, plus
 * the option bytes it will carry, fits the tunnel MTU towards its node (mtu,
 * node_tunnel_mtu(): the per-node MTU or CONFIG.tunnel_mtu); a GSO packet when each
 * segment it will be cut into does (IPv4 + TCP/UDP header + gso_size, the rule of
 * skb_gso_validate_network_len()), so GSO traffic is encapsulated whole and cut after
 * the outer headers are on. A larger packet goes to the stack:
 *   DF set   -> PASS_FRAG_NEEDED_TUNNEL. The agent routes every remote PodCIDR with
 *               the tunnel MTU towards its node (`ip route replace 10.244.2.0/24 ...
 *               mtu 1450`, or the smaller per-peer MTU), so the stack's forwarding
 *               path answers the pod with ICMP destination unreachable, fragmentation
 *               needed (type 3 code 4, next-hop MTU = that MTU), and the pod's path
 *               MTU to that destination drops to it;
 *   DF clear -> PASS_FRAGMENT_TUNNEL: the stack fragments to the route's MTU and sends
 *               the fragments along that route (from-container does not see them
 *               again, so they leave unencapsulated).
 * An outer packet longer than an IPv4 total length can say counts as too big too.
 * Returns 0 when the packet fits, else the pass reason. */
static __always_inline enum pass_reason tunnel_fits(const struct __ctx_buff *skb,
						    const struct parsed *p, __u32 opt_len,
						    __u32 mtu)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct iphdr *ip = p->ip;
	__u32 len;

	if (ctx_gso_size(skb)) {
		len = p->l4_off - sizeof(struct ethhdr) + ctx_gso_size(skb);
		if (ip->protocol == IPPROTO_TCP) {
			struct tcphdr *th = data + p->l4_off;

			if ((void *)(th + 1) > data_end)
				return PASS_FRAG_NEEDED_TUNNEL;
			len += th->doff * 4;
		} else if (ip->protocol == IPPROTO_UDP) {
			len += sizeof(struct udphdr);
		}
	} else {
		len = bpf_ntohs(ip->tot_len);
	}
	if (len + opt_len <= mtu &&
	    ctx_len(skb) - sizeof(struct ethhdr) + TUNNEL_OVERHEAD + opt_len <= 0xffff)
		return PASS_NONE;
	return (ip->frag_off & bpf_htons(PP_IP_DF)) ? PASS_FRAG_NEEDED_TUNNEL : PASS_FRAGMENT_TUNNEL;
}

/* The outer UDP source port: the flow's hash spread over [32768, 60999) exactly as
 * the kernel's udp_flow_src_port() does for its own tunnels, so a flow keeps one
 * port and the underlay's ECMP spreads flows. The hash is the skb's when it has one
 * (a socket's sk_txhash, set on everything a pod's TCP/UDP socket sends, or the
 * NIC's), else the flow dissector's (bpf_get_hash_recalc(), ~190 ns here). */
static __always_inline __be16 tunnel_src_port(struct __ctx_buff *skb)
{
	__u32 hash = ctx_hash(skb);
	/* writes: geneve.outer.udp.sport */
	if (!hash)
		hash = ctx_get_hash_recalc(skb);

	hash ^= hash << 16;
	return bpf_htons((__u16)((((__u64)hash * (TUNNEL_SPORT_MAX - TUNNEL_SPORT_MIN)) >> 32) +
				 TUNNEL_SPORT_MIN));
}

/* RFC 6040 normal-mode encapsulation of ECN, as the kernel's INET_ECN_encapsulate():
 * the inner ECN field is copied, CE becomes ECT(0). DSCP stays 0, as the kernel's
 * vxlan device does with a tunnel key of TOS 0. */
static __always_inline __u8 tunnel_outer_tos(__u8 inner_tos)
{
	__u8 ecn = inner_tos & PP_ECN_MASK;
	/* writes: geneve.outer.ipv4.tos */
	return ecn == PP_ECN_CE ? PP_ECN_ECT_0 : ecn;
}

/* VXLAN: the tunnel key goes on the skb as metadata and the collect_md vxlan device
 * (`ip link add cilium_vxlan type vxlan external dstport 8472`) builds the outer
 * headers: VNI = tunnel_id = the source identity, outer source = this node, outer
 * destination = the tunnel endpoint, TTL 64, outer DF set, UDP checksum 0
 * (BPF_F_ZERO_CSUM_TX, as Cilium; legal for IPv4, RFC 7348). The device takes the
 * outer UDP source port from the flow hash (udp_flow_src_port()), copies the inner ECN
 * field (RFC 6040), computes the outer IPv4 checksum and routes the outer packet. The
 * inner frame keeps the pod's Ethernet header; only TTL (and so the IPv4 checksum)
 * change. */
static __always_inline int vxlan_encap_redirect(struct __ctx_buff *skb, const struct parsed *p,
						const struct pkt_summary *sum,
						const struct trace_tun *tun, enum obs_point point,
						int pass_ret)
{
	struct bpf_tunnel_key key = {
		.tunnel_id   = tun->identity,
		.remote_ipv4 = bpf_ntohl(tun->endpoint),
		.tunnel_ttl  = TUNNEL_TTL,
		.local_ipv4  = bpf_ntohl(config_node_ip()),
	};
	__u32 ifindex = CONFIG.vxlan_ifindex;
	enum drop_reason reason;
	/* writes: vxlan.vni vxlan.outer.ipv4.addrs vxlan.outer.ipv4.ttl vxlan.outer.ipv4.df vxlan.outer.udp.checksum */
	if (ctx_set_tunnel_key(skb, &key, sizeof(key), BPF_F_ZERO_CSUM_TX | BPF_F_DONT_FRAGMENT) < 0) {
		reason = DROP_TUNNEL_KEY;
		goto drop;
	}
	ipv4_dec_ttl(p->ip);
	trace_redirect_tun(skb, point, VERDICT_REDIRECT, ifindex, sum, tun);
	return ctx_redirect(skb, ifindex, 0);

drop:
	trace_drop_tun(skb, point, reason, sum, tun);
	return CTX_ACT_DROP;
}

/* Geneve, all in BPF:
 *   1. bpf_fib_lookup() of the outer packet (this node -> tunnel endpoint) from the
 *      ingress device, as fib_redirect() does for native routing; anything but
 *      SUCCESS or NO_NEIGH leaves the packet untouched and goes to the stack;
 *   2. inner TTL - 1;
 *   3. bpf_skb_adjust_room() inserts 50 + options bytes after the Ethernet header,
 *      marking the skb as UDP-tunnelled Ethernet (ENCAP_L3_IPV4 | ENCAP_L4_UDP |
 *      ENCAP_L2_ETH | ENCAP_L2(14)) so GSO segments it as a UDP tunnel, with
 *      FIXED_GSO: tunnel_fits() made sure the pod's segment size fits as it is;
 *   4. the outer headers are written:
 *        Ethernet  the FIB's MACs (NO_NEIGH: the neighbour subsystem writes them)
 *        IPv4      this node -> tunnel endpoint, TTL 64, DF set, ID = the inner ID,
 *                  TOS = the inner ECN field (RFC 6040, CE -> ECT(0)), checksum;
 *        UDP       source port from the flow hash, destination the tunnel port,
 *                  checksum 0 (legal over IPv4: RFC 8926 3.3, RFC 768);
 *        Geneve    version 0, options length, O and C clear, protocol 0x6558,
 *                  VNI = the source identity;
 *        options   opts, as built by geneve_opt_append();
 *        Ethernet  the pod's own header, unchanged;
 *   5. bpf_redirect() (or bpf_redirect_neigh()) out of the FIB's device.
 * DF is set on the outer header, unlike the kernel's geneve/vxlan default (df unset):
 * tunnel_fits() makes every outer packet fit the underlay MTU exactly, so DF costs
 * nothing there, and an underlay with a smaller MTU shows up as ICMP errors to the
 * node instead of outer fragments, which BPF decapsulation does not reassemble. */
static __always_inline int geneve_encap_redirect(struct __ctx_buff *skb, const struct parsed *p,
						 const struct pkt_summary *sum,
						 const struct trace_tun *tun,
						 const struct geneve_opts *opts, enum obs_point point,
						 int pass_ret)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4 |
			    BPF_F_ADJ_ROOM_ENCAP_L4_UDP | BPF_F_ADJ_ROOM_ENCAP_L2_ETH |
			    BPF_F_ADJ_ROOM_ENCAP_L2(sizeof(struct ethhdr));
	struct bpf_fib_lookup fib = {
		.family      = AF_INET,
		.l4_protocol = IPPROTO_UDP,
		.dport       = bpf_htons(CONFIG.tunnel_port),
		.ifindex     = ctx_ingress_ifindex(skb) ?: ctx_ifindex(skb),
	};
	struct bpf_redir_neigh nh = {};
	struct ethhdr inner_eth;
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	struct udphdr *uh;
	struct genevehdr *gh;
	enum drop_reason reason;
	__be16 sport, id;
	__u32 opt_len, ifindex;
	__u8 tos;
	long ret;

	fib.ipv4_src = config_node_ip();
	fib.ipv4_dst = tun->endpoint;
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH) {
		trace_pass_tun(skb, point, fib_pass_reason(ret), sum, tun);
		return pass_ret;
	}
	ifindex = fib.ifindex;

	__builtin_memcpy(&inner_eth, p->eth, sizeof(inner_eth));
	tos = tunnel_outer_tos(p->ip->tos);
	id = p->ip->id;
	sport = tunnel_src_port(skb);
	ipv4_dec_ttl(p->ip);

	opt_len = opts->len;
	if (opt_len > GENEVE_MAX_OPT_BYTES || opt_len % 4) {
		reason = DROP_ENCAP_FAILED;
		goto drop;
	}
	if (ctx_adjust_room(skb, TUNNEL_OVERHEAD + opt_len, BPF_ADJ_ROOM_MAC, flags) < 0) {
		reason = DROP_ENCAP_FAILED;
		goto drop;
	}
	/* writes: geneve.outer.eth.macs */
	data = ctx_data(skb);
	data_end = ctx_data_end(skb);
	eth = data;
	ip = (void *)(eth + 1);
	uh = (void *)(ip + 1);
	gh = (void *)(uh + 1);
	if ((void *)(gh + 1) > data_end) {
		reason = DROP_ENCAP_FAILED;
		goto drop;
	}
	if (ret == BPF_FIB_LKUP_RET_SUCCESS)
		eth_set_macs(eth, fib.smac, fib.dmac);
	else
		eth_set_macs(eth, inner_eth.h_source, inner_eth.h_dest);
	eth->h_proto = bpf_htons(ETH_P_IP);
	/* writes: geneve.outer.ipv4.version_ihl geneve.outer.ipv4.tos geneve.outer.ipv4.tot_len geneve.outer.ipv4.id geneve.outer.ipv4.df geneve.outer.ipv4.ttl geneve.outer.ipv4.protocol geneve.outer.ipv4.checksum geneve.outer.ipv4.addrs */
	*(__u8 *)ip = 0x45; /* version 4, IHL 5 */
	ip->tos = tos;
	ip->tot_len = bpf_htons(ctx_len(skb) - sizeof(struct ethhdr));
	ip->id = id;
	ip->frag_off = bpf_htons(PP_IP_DF);
	ip->ttl = TUNNEL_TTL;
	ip->protocol = IPPROTO_UDP;
	ip->check = 0;
	ip->saddr = config_node_ip();
	ip->daddr = tun->endpoint;
	ip->check = ipv4_csum_20(ip);
	/* writes: geneve.outer.udp.sport geneve.outer.udp.dport geneve.outer.udp.len geneve.outer.udp.checksum */
	uh->source = sport;
	uh->dest = bpf_htons(CONFIG.tunnel_port);
	uh->len = bpf_htons(ctx_len(skb) - sizeof(struct ethhdr) - sizeof(struct iphdr));
	uh->check = 0;
	/* writes: geneve.hdr.version geneve.hdr.optlen geneve.hdr.flags geneve.hdr.protocol geneve.hdr.vni */
	gh->ver_optlen = opt_len / 4;
	gh->flags = 0;
	gh->proto = bpf_htons(GENEVE_PROTO_ETH);
	geneve_set_vni(gh, tun->identity);
	gh->reserved = 0;
	/* writes: geneve.opt.dsr */
	if (opt_len) {
		if (ctx_store_bytes(skb, TUNNEL_OVERHEAD, opts->data, opt_len, 0) < 0) {
			reason = DROP_ENCAP_FAILED;
			goto drop;
		}
		data = ctx_data(skb);
		data_end = ctx_data_end(skb);
	}
	eth = data + TUNNEL_OVERHEAD + opt_len;
	if ((void *)(eth + 1) > data_end) {
		reason = DROP_ENCAP_FAILED;
		goto drop;
	}
	__builtin_memcpy(eth, &inner_eth, sizeof(inner_eth));

	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		trace_redirect_tun(skb, point, VERDICT_REDIRECT, ifindex, sum, tun);
		return ctx_redirect(skb, ifindex, 0);
	}
	nh.nh_family = fib.family;
	__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, sizeof(nh.ipv6_nh));
	trace_redirect_tun(skb, point, VERDICT_REDIRECT_NEIGH, ifindex, sum, tun);
	return ctx_redirect_neigh(ifindex, &nh, sizeof(nh), 0);

drop:
	trace_drop_tun(skb, point, reason, sum, tun);
	return CTX_ACT_DROP;
}

/* IPIP (podpath extension, Calico's IPIP mode; this kernel has no ipip driver), all
 * in BPF like Geneve:
 *   1. bpf_fib_lookup() of the outer packet (this node -> tunnel endpoint, protocol
 *      4) from the ingress device; anything but SUCCESS or NO_NEIGH goes to the stack;
 *   2. inner TTL - 1;
 *   3. bpf_skb_adjust_room() inserts the 20-byte outer IPv4 header after the Ethernet
 *      header, marking the skb as IPv4-in-IPv4 (ENCAP_L3_IPV4 with no L4 or inner L2:
 *      GSO segments it as SKB_GSO_IPXIP4), with FIXED_GSO: tunnel_fits() made sure
 *      each segment fits as it is;
 *   4. the outer headers are written: Ethernet with the FIB's MACs (NO_NEIGH: the
 *      neighbour subsystem writes them); IPv4 this node -> tunnel endpoint, protocol
 *      4, TTL 64, DF set, ID = the inner ID, TOS = the inner ECN field (RFC 6040),
 *      checksum over the 20 bytes. The inner IPv4 packet is not touched beyond its
 *      TTL (and so its checksum); the pod's Ethernet header is gone: IPIP carries no
 *      L2, and so no VNI: the source identity does not travel;
 *   5. bpf_redirect() (or bpf_redirect_neigh()) out of the FIB's device. */
static __always_inline int ipip_encap_redirect(struct __ctx_buff *skb, const struct parsed *p,
					       const struct pkt_summary *sum,
					       const struct trace_tun *tun, enum obs_point point,
					       int pass_ret)
{
	const __u64 flags = BPF_F_ADJ_ROOM_FIXED_GSO | BPF_F_ADJ_ROOM_ENCAP_L3_IPV4;
	struct bpf_fib_lookup fib = {
		.family      = AF_INET,
		.l4_protocol = IPPROTO_IPIP,
		.ifindex     = ctx_ingress_ifindex(skb) ?: ctx_ifindex(skb),
	};
	struct bpf_redir_neigh nh = {};
	__u8 smac[ETH_ALEN], dmac[ETH_ALEN];
	void *data, *data_end;
	struct ethhdr *eth;
	struct iphdr *ip;
	__be16 id;
	__u32 ifindex;
	__u8 tos;
	long ret;

	fib.ipv4_src = config_node_ip();
	fib.ipv4_dst = tun->endpoint;
	ret = bpf_fib_lookup(skb, &fib, sizeof(fib), 0);
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH) {
		trace_pass_tun(skb, point, fib_pass_reason(ret), sum, tun);
		return pass_ret;
	}
	ifindex = fib.ifindex;
	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		__builtin_memcpy(smac, fib.smac, ETH_ALEN);
		__builtin_memcpy(dmac, fib.dmac, ETH_ALEN);
	} else {
		__builtin_memcpy(smac, p->eth->h_source, ETH_ALEN);
		__builtin_memcpy(dmac, p->eth->h_dest, ETH_ALEN);
	}
	tos = tunnel_outer_tos(p->ip->tos);
	id = p->ip->id;
	ipv4_dec_ttl(p->ip);

	if (ctx_adjust_room(skb, IPIP_OVERHEAD, BPF_ADJ_ROOM_MAC, flags) < 0)
		goto drop;
	data = ctx_data(skb);
	data_end = ctx_data_end(skb);
	eth = data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) + sizeof(struct iphdr) > data_end)
		goto drop;
	eth_set_macs(eth, smac, dmac);
	eth->h_proto = bpf_htons(ETH_P_IP);
	/* writes: ipip.outer.ipv4.header ipip.outer.ipv4.protocol ipip.outer.ipv4.addrs ipip.outer.ipv4.checksum ipip.outer.ipv4.tos ipip.outer.ipv4.id */
	*(__u8 *)ip = 0x45; /* version 4, IHL 5 */
	ip->tos = tos;
	ip->tot_len = bpf_htons(ctx_len(skb) - sizeof(struct ethhdr));
	ip->id = id;
	ip->frag_off = bpf_htons(PP_IP_DF);
	ip->ttl = TUNNEL_TTL;
	ip->protocol = IPPROTO_IPIP;
	ip->check = 0;
	ip->saddr = config_node_ip();
	ip->daddr = tun->endpoint;
	ip->check = ipv4_csum_20(ip);

	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		trace_redirect_tun(skb, point, VERDICT_REDIRECT, ifindex, sum, tun);
		return ctx_redirect(skb, ifindex, 0);
	}
	nh.nh_family = fib.family;
	__builtin_memcpy(nh.ipv6_nh, fib.ipv6_dst, sizeof(nh.ipv6_nh));
	trace_redirect_tun(skb, point, VERDICT_REDIRECT_NEIGH, ifindex, sum, tun);
	return ctx_redirect_neigh(ifindex, &nh, sizeof(nh), 0);

drop:
	trace_drop_tun(skb, point, DROP_ENCAP_FAILED, sum, tun);
	return CTX_ACT_DROP;
}

/* Tunnel mode, for a destination that is not a local endpoint (from-container; and
 * from-netdev for load-balanced packets, whose source identity is the node's):
 *   no tunnel protocol                      -> stack, PASS_TUNNEL_MODE
 *   ipcache: no entry, no tunnel endpoint,
 *   or this node as the endpoint            -> stack, PASS_NO_TUNNEL_ENDPOINT (world)
 *   tunnel endpoint not in the nodes map    -> DROP_UNKNOWN_TUNNEL_ENDPOINT
 *   identity (the source pod's, or for
 *   load-balanced traffic the source's as
 *   lb_source_identity() says) 0 or wider
 *   than the 24-bit VNI                     -> DROP_NO_SOURCE_IDENTITY
 *   larger than the tunnel MTU towards the
 *   endpoint (node_tunnel_mtu())            -> stack, see tunnel_fits()
 *   TTL <= 1                                -> stack, PASS_TTL_EXPIRED
 *   else encapsulated towards the endpoint, VNI = the source pod's identity; a DSR
 *   request (dsr, Geneve only) carries the service in Cilium's Geneve DSR option.
 * endpoint, when not 0, is the tunnel endpoint to use instead of the ipcache's (the
 * egress gateway node a policy sends the packet to, whatever its destination).
 * Same-node traffic never gets here: the caller delivered it already. */
static __always_inline int tunnel_encap(struct __ctx_buff *skb, const struct parsed *p,
					const struct pkt_summary *sum, enum obs_point point,
					__u32 identity, const struct dsr_service *dsr, __be32 endpoint,
					int pass_ret)
{
	__u32 proto = CONFIG.tunnel_protocol;
	const struct ipcache_info *info;
	const struct node_info *node;
	struct geneve_opts opts = {};
	struct trace_tun tun = {};
	enum pass_reason too_big;

	if (proto == TUNNEL_NONE) {
		trace_pass(skb, point, PASS_TUNNEL_MODE, sum);
		return pass_ret;
	}
	if (!endpoint) {
		info = ipcache_lookup(sum->daddr);
		if (!info || !info->tunnel_endpoint || info->tunnel_endpoint == config_node_ip()) {
			trace_pass(skb, point, PASS_NO_TUNNEL_ENDPOINT, sum);
			return pass_ret;
		}
		endpoint = info->tunnel_endpoint;
	}
	tun.kind = proto == TUNNEL_VXLAN ? TRACE_ENCAP_VXLAN :
		   proto == TUNNEL_IPIP ? TRACE_ENCAP_IPIP : TRACE_ENCAP_GENEVE;
	tun.pkt_len = ctx_len(skb);
	tun.endpoint = endpoint;
	tun.identity = identity;
	node = node_lookup(tun.endpoint);
	if (!node) {
		trace_drop_tun(skb, point, DROP_UNKNOWN_TUNNEL_ENDPOINT, sum, &tun);
		return CTX_ACT_DROP;
	}
	/* tunnel-mode cross-subnet: a node on this node's own subnet is reached natively,
	 * through the FIB's route to its PodCIDR (via that node, the underlay's MTU). */
	if (tunnel_peer_native(tun.endpoint))
		return fib_redirect(skb, p, sum, point, pass_ret);
	if (tun.identity == 0 || tun.identity > 0xffffff) {
		trace_drop_tun(skb, point, DROP_NO_SOURCE_IDENTITY, sum, &tun);
		return CTX_ACT_DROP;
	}

	if (proto == TUNNEL_GENEVE && dsr) {
		struct dsr_geneve_data opt = { .addr = dsr->addr, .port = dsr->port };

		geneve_opt_append(&opts, GENEVE_OPT_CLASS_CILIUM, DSR_GENEVE_OPT_TYPE, &opt, sizeof(opt));
	} else if (proto == TUNNEL_GENEVE && GENEVE_TEST_OPT) {
		struct {
			__be32 addr;
			__be16 port;
			__u16  pad;
		} dsr = { .addr = sum->daddr, .port = sum->dport };

		geneve_opt_append(&opts, GENEVE_OPT_CLASS_CILIUM, GENEVE_OPT_TYPE_TEST, &dsr, sizeof(dsr));
	}
	too_big = tunnel_fits(skb, p, opts.len, node_tunnel_mtu(node));
	if (too_big != PASS_NONE) {
		trace_pass_tun(skb, point, too_big, sum, &tun);
		return pass_ret;
	}
	if (sum->ttl <= 1) {
		trace_pass_tun(skb, point, PASS_TTL_EXPIRED, sum, &tun);
		return pass_ret;
	}
	if (proto == TUNNEL_VXLAN)
		return vxlan_encap_redirect(skb, p, sum, &tun, point, pass_ret);
	if (proto == TUNNEL_IPIP)
		return ipip_encap_redirect(skb, p, sum, &tun, point, pass_ret);
	return geneve_encap_redirect(skb, p, sum, &tun, &opts, point, pass_ret);
}

/* From-container: the source pod's identity goes into the VNI (0 when the source is
 * no endpoint: dropped). */
static __always_inline int tunnel_from_container(struct __ctx_buff *skb, const struct parsed *p,
						 const struct pkt_summary *sum, __be32 endpoint, int pass_ret)
{
	const struct endpoint_info *src = endpoint_lookup(sum->saddr);

	return tunnel_encap(skb, p, sum, OBS_FROM_CONTAINER, src ? src->sec_identity : 0, NULL, endpoint, pass_ret);
}

#endif /* PODPATH_ENCAP_H */

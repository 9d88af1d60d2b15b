/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Direct server return: the DSR IPv4 and Geneve options (Cilium's formats), inserting and reading them, and the ICMP fragmentation-needed answer for packets that no longer fit. */
#ifndef PODPATH_DSR_H
#define PODPATH_DSR_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "csum.h"
#include "drop.h"
#include "geneve.h"
#include "parse.h"
#include "trace.h"

/* The IPv4 option, 8 bytes right after the base header: type 0x9a (copied flag, class
 * 0, number 26, as Cilium), length 8, the service port, the service address. The
 * backend's node removes it after reading it (dsr_opt_strip()). */
#define DSR_IPV4_OPT_TYPE 0x9a
#define DSR_IPV4_OPT_LEN  8

struct dsr_ipv4_opt {
	__u8   type;
	__u8   len;
	__be16 port;
	__be32 addr;
};

/* The Geneve option: Cilium's class 0x014B, type 1, data = address, port, 2 bytes of
 * padding (8 bytes, length 2 words). 12 bytes on the wire with the option header. */
#define DSR_GENEVE_OPT_TYPE GENEVE_OPT_TYPE_DSR
#define DSR_GENEVE_OPT_LEN  12

struct dsr_geneve_data {
	__be32 addr;
	__be16 port;
	__u16  _pad;
};

/* Reads the Geneve DSR option when it is the first of the opt_len option bytes at off
 * (where tunnel_encap() puts it, like Cilium; walking every option for it would cost
 * the verifier a state per option). Returns 1 and fills d when present. */
static __always_inline int geneve_dsr_opt(struct __ctx_buff *skb, __u32 off, __u32 opt_len,
					  struct dsr_geneve_data *d)
{
	struct geneve_opt_hdr h;

	if (opt_len < DSR_GENEVE_OPT_LEN || ctx_load_bytes(skb, off, &h, sizeof(h)) < 0)
		return 0;
	if (h.opt_class != bpf_htons(GENEVE_OPT_CLASS_CILIUM) || h.type != GENEVE_OPT_TYPE_DSR ||
	    (h.length & 0x1f) != sizeof(*d) / 4)
		return 0;
	return ctx_load_bytes(skb, off + sizeof(h), d, sizeof(*d)) == 0;
}

/* The service a DSR request was sent to: what the backend's replies get as source. */
struct dsr_service {
	__be32 addr;
	__be16 port;
	__u16  _pad;
};

/* Whether a DSR flow's packet carries the option: a TCP SYN (the backend's node learns
 * the flow from it, later packets find its conntrack entry), or any UDP datagram (no
 * handshake re-creates a lost entry). */
static __always_inline int dsr_needs_opt(__u8 proto, __u8 tcp_flags)
{
	if (proto == IPPROTO_TCP)
		return (tcp_flags & (PP_TCP_SYN | PP_TCP_ACK)) == PP_TCP_SYN;
	return 1;
}

/* The IPv4 length of the largest packet that leaves for this one: the packet itself,
 * or for a GSO packet each segment it will be cut into (IPv4 + TCP/UDP header +
 * gso_size, as skb_gso_validate_network_len() counts). */
static __always_inline __u32 ipv4_seg_len(const struct __ctx_buff *skb, const struct parsed *p)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	__u32 len;

	if (!ctx_gso_size(skb))
		return bpf_ntohs(p->ip->tot_len);
	len = p->l4_off - sizeof(struct ethhdr) + ctx_gso_size(skb);
	if (p->ip->protocol == IPPROTO_TCP) {
		struct tcphdr *th = data + p->l4_off;

		if ((void *)(th + 1) > data_end)
			return 0xffff;
		len += th->doff * 4;
	} else if (p->ip->protocol == IPPROTO_UDP) {
		len += sizeof(struct udphdr);
	}
	return len;
}

/* Inserts the IPv4 option right after the 20-byte base header (options the packet
 * already had follow it), then fixes IHL, total length and the header checksum. The
 * TCP/UDP checksum does not cover IPv4 options. GSO packets keep their segment size
 * (the caller checked the segments fit with the option) and every segment carries
 * the option. p is refreshed. */
static __always_inline enum drop_reason dsr_opt_insert(struct __ctx_buff *skb, struct parsed *p,
						       const struct dsr_service *svc)
{
	struct dsr_ipv4_opt opt = {
		.type = DSR_IPV4_OPT_TYPE, .len = DSR_IPV4_OPT_LEN, .port = svc->port, .addr = svc->addr,
	};
	void *data, *data_end;
	struct iphdr *ip;
	__u32 ihl = p->ip->ihl;
	/* writes: dsr.ipv4opt.bytes */
	if (ihl + DSR_IPV4_OPT_LEN / 4 > 15)
		return DROP_DSR_OPT_NO_ROOM;
	if (ctx_adjust_room(skb, DSR_IPV4_OPT_LEN, BPF_ADJ_ROOM_NET, BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		return DROP_DSR_OPT_FAILED;
	data = ctx_data(skb);
	data_end = ctx_data_end(skb);
	ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) + sizeof(opt) > data_end)
		return DROP_DSR_OPT_FAILED;
	__builtin_memcpy((void *)(ip + 1), &opt, sizeof(opt));
	/* Header words change: IHL (with the version byte), total length, and the two
	 * option words join the sum. */
	{
		__be16 old_vihl = *(__be16 *)ip, old_len = ip->tot_len;
		__u32 diff;
	/* writes: dsr.ipv4opt.ihl dsr.ipv4opt.tot_len dsr.ipv4opt.checksum */
		ip->ihl = ihl + DSR_IPV4_OPT_LEN / 4;
		ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) + DSR_IPV4_OPT_LEN);
		diff = csum_add(csum_diff2(old_vihl, *(__be16 *)ip), csum_diff2(old_len, ip->tot_len));
		diff = csum_add(diff, csum_add(((__u32 *)&opt)[0], ((__u32 *)&opt)[1]));
		csum_apply_diff(&ip->check, diff);
	}
	p->eth = data;
	p->ip = ip;
	p->l4_off += DSR_IPV4_OPT_LEN;
	return DROP_NONE;
}

/* Reads the DSR IPv4 option of a packet arriving at the backend's node. Like Cilium,
 * only the first option is looked at: that is where dsr_opt_insert() puts it.
 * Returns 1 and fills svc when present. */
static __always_inline int dsr_opt_read(struct __ctx_buff *skb, const struct parsed *p,
					struct dsr_service *svc)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct dsr_ipv4_opt *opt;

	if (p->ip->ihl < 5 + DSR_IPV4_OPT_LEN / 4)
		return 0;
	opt = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	if ((void *)(opt + 1) > data_end)
		return 0;
	if (opt->type != DSR_IPV4_OPT_TYPE || opt->len != DSR_IPV4_OPT_LEN)
		return 0;
	svc->addr = opt->addr;
	svc->port = opt->port;
	return 1;
}

/* Removes the DSR option dsr_opt_read() found (the first option) before delivery, so
 * the backend sees the packet as the client sent it, less the translation: its ICMP
 * errors then quote a plain header, which lb_icmp_error_xlate() translates. Fixes
 * IHL, total length and the header checksum; p is refreshed. */
static __always_inline enum drop_reason dsr_opt_strip(struct __ctx_buff *skb, struct parsed *p)
{
	struct dsr_ipv4_opt opt;
	void *data, *data_end;
	struct iphdr *ip;
	__be16 old_vihl, old_len;
	__u32 diff;
	/* writes: dsr.strip.ihl dsr.strip.tot_len dsr.strip.checksum */
	if (ctx_load_bytes(skb, sizeof(struct ethhdr) + sizeof(struct iphdr), &opt, sizeof(opt)) < 0 ||
	    ctx_adjust_room(skb, -DSR_IPV4_OPT_LEN, BPF_ADJ_ROOM_NET, BPF_F_ADJ_ROOM_FIXED_GSO) < 0)
		return DROP_DSR_OPT_FAILED;
	data = ctx_data(skb);
	data_end = ctx_data_end(skb);
	ip = data + sizeof(struct ethhdr);
	if ((void *)(ip + 1) > data_end)
		return DROP_DSR_OPT_FAILED;
	old_vihl = *(__be16 *)ip;
	old_len = ip->tot_len;
	ip->ihl -= DSR_IPV4_OPT_LEN / 4;
	ip->tot_len = bpf_htons(bpf_ntohs(ip->tot_len) - DSR_IPV4_OPT_LEN);
	diff = csum_add(csum_diff2(old_vihl, *(__be16 *)ip), csum_diff2(old_len, ip->tot_len));
	diff = csum_add(diff, csum_add(~((__u32 *)&opt)[0], ~((__u32 *)&opt)[1]));
	csum_apply_diff(&ip->check, diff);
	p->eth = data;
	p->ip = ip;
	p->l4_off -= DSR_IPV4_OPT_LEN;
	return DROP_NONE;
}

/* The backend's node records a DSR flow: a reply entry (backend -> client, as the
 * backend answers) in conntrack that makes from-container rewrite the replies' source
 * to the service (nat_addr:nat_port) and send them straight to the client. An entry
 * already there for the same service is only refreshed. */
static __always_inline enum drop_reason dsr_learn(const struct pkt_summary *sum,
						  const struct dsr_service *svc, __u16 pkt_flags)
{
	struct ct_key key = {
		.saddr = sum->daddr, .daddr = sum->saddr, .sport = sum->dport, .dport = sum->sport,
		.proto = sum->ip_proto, .dir = CT_REPLY,
	};
	struct ct_entry e = {
		.flags = CT_F_DSR | CT_F_NODEPORT | pkt_flags,
		.nat_addr = svc->addr,
		.nat_port = svc->port,
	};
	__u32 now = ct_now();
	struct ct_entry *old = ct_lookup(&key);

	if (old && (old->flags & CT_F_DSR) && old->nat_addr == svc->addr && old->nat_port == svc->port &&
	    (__s32)(old->lifetime - now) > 0) {
		ct_refresh(old, now, sum->ip_proto, pkt_flags);
		return DROP_NONE;
	}
	e.lifetime = ct_lifetime(sum->ip_proto, e.flags, now);
	if (ct_update(&key, &e) < 0)
		return DROP_CT_CREATE_FAILED;
	return DROP_NONE;
}

/* ICMP destination unreachable, fragmentation needed (RFC 792, RFC 1191). */
struct icmp_frag_needed {
	__u8   type;
	__u8   code;
	__sum16 checksum;
	__be16 unused;
	__be16 mtu;
};

/* What the answer holds after the Ethernet header: IPv4, ICMP, and the quoted IPv4
 * header and first 8 bytes of the packet. */
#define DSR_ICMP_QUOTE 28

struct dsr_icmp_reply {
	struct iphdr ip;
	struct icmp_frag_needed icmp;
	__u8 quoted[DSR_ICMP_QUOTE];
};

/* Turns the packet, as the client sent it (IPv4 without options, before any
 * translation), into an ICMP fragmentation-needed answer carrying mtu, and sends it
 * back out of the device it came in on:
 *   Ethernet  the received MACs swapped;
 *   IPv4      the packet's destination (the service) -> the client, TOS 0xc0 as
 *             Linux's ICMP, TTL 64;
 *   ICMP      type 3 code 4, next-hop MTU;
 *   quoted    the received IPv4 header and 8 bytes of TCP/UDP.
 * bpf_skb_change_tail() cuts the packet (a GSO packet stops being one). A
 * CHECKSUM_PARTIAL packet (a veth peer's TCP) stays so: its csum_start lies before
 * the quoted bytes, and the veth and bridge devices between podpath nodes never fill
 * it in; packets from a real NIC are never CHECKSUM_PARTIAL.
 * Returns the tcx verdict, DROP_FRAG_NEEDED_UNANSWERED (traced) when it cannot. */
static __always_inline int dsr_icmp_frag_needed(struct __ctx_buff *skb, const struct parsed *p,
						struct pkt_summary *sum, enum obs_point point,
						__u32 mtu)
{
	struct dsr_icmp_reply r = {};
	struct ethhdr eth;
	__u32 ifindex = ctx_ifindex(skb);
	/* writes: fragneeded.eth.macs fragneeded.ipv4.header fragneeded.icmp.type_code fragneeded.icmp.mtu fragneeded.icmp.checksum fragneeded.icmp.quote */
	if (p->ip->ihl != 5)
		goto unanswered;
	__builtin_memcpy(eth.h_dest, p->eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth.h_source, p->eth->h_dest, ETH_ALEN);
	eth.h_proto = bpf_htons(ETH_P_IP);
	if (ctx_load_bytes(skb, sizeof(struct ethhdr), r.quoted, DSR_ICMP_QUOTE) < 0)
		goto unanswered;

	*(__u8 *)&r.ip = 0x45;
	r.ip.tos = 0xc0;
	r.ip.tot_len = bpf_htons(sizeof(r));
	r.ip.ttl = 64;
	r.ip.protocol = IPPROTO_ICMP;
	r.ip.saddr = p->ip->daddr;
	r.ip.daddr = p->ip->saddr;
	r.ip.check = ipv4_csum_20(&r.ip);
	r.icmp.type = ICMP_DEST_UNREACH;
	r.icmp.code = ICMP_FRAG_NEEDED;
	r.icmp.mtu = bpf_htons(mtu);
	r.icmp.checksum = csum_fold32(bpf_csum_diff(NULL, 0, (__be32 *)&r.icmp,
						    sizeof(r.icmp) + DSR_ICMP_QUOTE, 0));

	if (ctx_change_tail(skb, sizeof(eth) + sizeof(r), 0) < 0 ||
	    ctx_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    ctx_store_bytes(skb, sizeof(eth), &r, sizeof(r), 0) < 0)
		goto unanswered;
	trace_redirect(skb, point, VERDICT_REDIRECT, ifindex, sum);
	return ctx_redirect(skb, ifindex, 0);

unanswered:
	trace_drop(skb, point, DROP_FRAG_NEEDED_UNANSWERED, sum);
	return CTX_ACT_DROP;
}

#endif /* PODPATH_DSR_H */

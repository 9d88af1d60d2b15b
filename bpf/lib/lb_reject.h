/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The answer to a new flow for a service without backends (service-no-backend-response: reject): TCP RST, ICMP port unreachable. */
#ifndef PODPATH_LB_REJECT_H
#define PODPATH_LB_REJECT_H

#include "common.h"
#include "config.h"
#include "csum.h"
#include "drop.h"
#include "parse.h"
#include "trace.h"

/* ICMP destination unreachable, port unreachable (RFC 792). */
#ifndef ICMP_PORT_UNREACH
#define ICMP_PORT_UNREACH 3
#endif

#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

/* The TCP answer: IPv4 and a bare TCP header (no options, no payload). */
struct lb_reject_rst {
	struct iphdr ip;
	struct tcphdr tcp;
};

/* The TCP pseudo-header (RFC 793) followed by the header: one bpf_csum_diff() sums both. */
struct lb_reject_tcp_sum {
	__be32 saddr;
	__be32 daddr;
	__u8   zero;
	__u8   proto;
	__be16 len;
	struct tcphdr tcp;
};

/* The UDP answer: IPv4, ICMP port unreachable, the quoted IPv4 header and 8 bytes. */
#define LB_REJECT_QUOTE 28
struct lb_reject_icmp {
	struct iphdr ip;
	__u8   type;
	__u8   code;
	__sum16 checksum;
	__be32 unused;
	__u8   quoted[LB_REJECT_QUOTE];
};

/* lb_reject()'s working memory: the answers do not fit the programs' 512-byte stack
 * next to everything else the load balancer keeps there. */
struct lb_reject_scratch {
	struct ethhdr eth;
	__u16 _pad;
	struct tcphdr th;
	struct lb_reject_tcp_sum sum;
	struct lb_reject_rst rst;
	struct lb_reject_icmp icmp;
};

/* The map's value as plain bytes: bpf2go cannot mirror iphdr's anonymous union. */
struct lb_reject_raw {
	__u8 b[sizeof(struct lb_reject_scratch)];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_reject_raw);
	__uint(max_entries, 1);
} lb_reject_buf SEC(".maps");

/* Whether lb_reject() answers rather than drops: service-no-backend-response=reject. */
static __always_inline int lb_reject_enabled(void)
{
	return CONFIG.lb_no_backend_reject;
}

/* Fills ip as the answer's IPv4 header: from the packet's destination (the frontend)
 * back to its source, TTL 64, Linux's TOS for locally built errors. */
static __always_inline void lb_reject_ip(struct iphdr *ip, const struct parsed *p, __u16 len, __u8 proto)
{
	*(__u8 *)ip = 0x45;
	ip->tos = proto == IPPROTO_ICMP ? 0xc0 : 0;
	ip->tot_len = bpf_htons(len);
	ip->ttl = 64;
	ip->protocol = proto;
	ip->saddr = p->ip->daddr;
	ip->daddr = p->ip->saddr;
	ip->check = ipv4_csum_20(ip);
}

/* Turns a new flow's packet to the frontend of a service without a backend into the
 * answer the client's stack understands as "nobody listens" (kube-proxy's and Cilium's
 * reject), sent back out of the device it came in on (the pod's veth from
 * from-container, the NIC from from-netdev), as the client sent it (before any
 * translation):
 *   TCP without RST  -> RST from the frontend (RFC 793 reset generation: seq = the
 *                       segment's ack if ACK was set, else 0 with RST|ACK acking
 *                       seq + payload + SYN + FIN);
 *   UDP              -> ICMP port unreachable quoting the IPv4 header and 8 bytes.
 * A TCP RST, IPv4 options (the quote would be cut) or a helper failure drop with
 * DROP_NO_SERVICE_BACKEND (for the RST) or DROP_SVC_REJECT_FAILED. The trace is a
 * redirect with lb.action TRACE_LB_REJECT and the received tuple in lb.orig_*. Returns the tcx verdict. */
static __always_inline int lb_reject(struct __ctx_buff *skb, const struct parsed *p,
				     struct pkt_summary *sum, enum obs_point point)
{
	enum drop_reason reason = DROP_SVC_REJECT_FAILED;
	__u32 ifindex = ctx_ifindex(skb);
	struct lb_reject_scratch *b;
	__u32 zero = 0;

	/* writes: reject.eth.macs reject.ipv4.header reject.tcp.rst reject.icmp.port_unreachable */
	b = (struct lb_reject_scratch *)bpf_map_lookup_elem(&lb_reject_buf, &zero);
	if (!b || p->ip->ihl != 5)
		goto drop;
	__builtin_memcpy(b->eth.h_dest, p->eth->h_source, ETH_ALEN);
	__builtin_memcpy(b->eth.h_source, p->eth->h_dest, ETH_ALEN);
	b->eth.h_proto = bpf_htons(ETH_P_IP);

	if (sum->ip_proto == IPPROTO_TCP) {
		struct lb_reject_tcp_sum *s = &b->sum;
		struct tcphdr *th = &b->th;
		__u32 payload, hlen;
		__u8 flags;

		if (ctx_load_bytes(skb, p->l4_off, th, sizeof(*th)) < 0)
			goto drop;
		flags = ((__u8 *)th)[13];
		if (flags & LB_TCP_RST) {
			reason = DROP_NO_SERVICE_BACKEND;
			goto drop;
		}
		payload = bpf_ntohs(p->ip->tot_len) - 20;
		hlen = th->doff * 4U;
		if (payload < hlen)
			goto drop;
		payload -= hlen;
		__builtin_memset(s, 0, sizeof(*s));
		s->tcp.source = th->dest;
		s->tcp.dest = th->source;
		s->tcp.doff = 5;
		s->tcp.rst = 1;
		if (flags & LB_TCP_ACK) {
			s->tcp.seq = th->ack_seq;
		} else {
			s->tcp.ack = 1;
			s->tcp.ack_seq = bpf_htonl(bpf_ntohl(th->seq) + payload + !!(flags & LB_TCP_SYN) +
						   !!(flags & LB_TCP_FIN));
		}
		s->saddr = p->ip->daddr;
		s->daddr = p->ip->saddr;
		s->proto = IPPROTO_TCP;
		s->len = bpf_htons(sizeof(struct tcphdr));
		s->tcp.check = csum_fold32(bpf_csum_diff(NULL, 0, (__be32 *)s, sizeof(*s), 0));
		__builtin_memset(&b->rst, 0, sizeof(b->rst));
		b->rst.tcp = s->tcp;
		lb_reject_ip(&b->rst.ip, p, sizeof(b->rst), IPPROTO_TCP);
		if (ctx_change_tail(skb, sizeof(b->eth) + sizeof(b->rst), 0) < 0 ||
		    ctx_store_bytes(skb, 0, &b->eth, sizeof(b->eth), 0) < 0 ||
		    ctx_store_bytes(skb, sizeof(b->eth), &b->rst, sizeof(b->rst), 0) < 0)
			goto drop;
	} else {
		struct lb_reject_icmp *r = &b->icmp;

		__builtin_memset(r, 0, sizeof(*r));
		if (ctx_load_bytes(skb, sizeof(struct ethhdr), r->quoted, LB_REJECT_QUOTE) < 0)
			goto drop;
		lb_reject_ip(&r->ip, p, sizeof(*r), IPPROTO_ICMP);
		r->type = ICMP_DEST_UNREACH;
		r->code = ICMP_PORT_UNREACH;
		r->checksum = csum_fold32(bpf_csum_diff(NULL, 0, (__be32 *)&r->type,
							8 + LB_REJECT_QUOTE, 0));
		if (ctx_change_tail(skb, sizeof(b->eth) + sizeof(*r), 0) < 0 ||
		    ctx_store_bytes(skb, 0, &b->eth, sizeof(b->eth), 0) < 0 ||
		    ctx_store_bytes(skb, sizeof(b->eth), r, sizeof(*r), 0) < 0)
			goto drop;
	}
	sum->lb.action = TRACE_LB_REJECT;
	sum->lb.orig_saddr = sum->saddr;
	sum->lb.orig_daddr = sum->daddr;
	sum->lb.orig_sport = sum->sport;
	sum->lb.orig_dport = sum->dport;
	trace_redirect(skb, point, VERDICT_REDIRECT, ifindex, sum);
	return ctx_redirect(skb, ifindex, 0);

drop:
	trace_drop(skb, point, reason, sum);
	return CTX_ACT_DROP;
}

#endif /* PODPATH_LB_REJECT_H */

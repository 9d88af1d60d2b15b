/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Bounds-checked parsing of Ethernet, IPv4 and L4 headers into a pkt_summary. */
#ifndef PODPATH_PARSE_H
#define PODPATH_PARSE_H

#include "common.h"
#include "drop.h"
#include "trace.h"

/* Offsets of the headers found, valid when parse_ipv4() returns DROP_NONE. */
struct parsed {
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 l4_off; /* from the start of the frame */
};

static __always_inline enum drop_reason parse_eth(struct __sk_buff *skb, struct parsed *p,
						  struct pkt_summary *sum)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > data_end)
		return DROP_TRUNCATED_ETH;
	p->eth = eth;
	sum->eth_proto = eth->h_proto;
	return DROP_NONE;
}

/* Parses the IPv4 header that follows p->eth and the first bytes of TCP/UDP/ICMP.
 * Later fragments carry no L4 header: ports stay zero for them. The L4 header must lie
 * inside the IPv4 packet (total length), not only inside the frame: bytes past the
 * total length (Ethernet padding) are no header, and conntrack must never key a flow
 * on them. */
static __always_inline enum drop_reason parse_ipv4(struct __sk_buff *skb, struct parsed *p,
						   struct pkt_summary *sum)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__u32 ihl_bytes, tot_len;

	if ((void *)(ip + 1) > data_end)
		return DROP_TRUNCATED_IPV4;
	if (ip->version != 4)
		return DROP_BAD_IP_VERSION;
	if (ip->ihl < 5)
		return DROP_BAD_IHL;
	ihl_bytes = ip->ihl * 4;
	if (data + sizeof(struct ethhdr) + ihl_bytes > data_end)
		return DROP_TRUNCATED_IPV4;
	tot_len = bpf_ntohs(ip->tot_len);
	/* The skb may be longer than the frame (GSO) but never shorter. */
	if (tot_len < ihl_bytes || (skb->len < sizeof(struct ethhdr) + tot_len && !skb->gso_size))
		return DROP_BAD_TOTAL_LEN;

	p->ip = ip;
	p->l4_off = sizeof(struct ethhdr) + ihl_bytes;
	sum->saddr = ip->saddr;
	sum->daddr = ip->daddr;
	sum->ip_proto = ip->protocol;
	sum->ttl = ip->ttl;
	sum->ip_id = ip->id;

	if (ip->frag_off & bpf_htons(0x1fff))
		return DROP_NONE;

	switch (ip->protocol) {
	case IPPROTO_TCP: {
		struct tcphdr *th = data + p->l4_off;

		if ((void *)(th + 1) > data_end || ihl_bytes + sizeof(*th) > tot_len)
			return DROP_TRUNCATED_L4;
		sum->sport = th->source;
		sum->dport = th->dest;
		break;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = data + p->l4_off;

		if ((void *)(uh + 1) > data_end || ihl_bytes + sizeof(*uh) > tot_len)
			return DROP_TRUNCATED_L4;
		sum->sport = uh->source;
		sum->dport = uh->dest;
		break;
	}
	case IPPROTO_ICMP: {
		struct icmp_head *ih = data + p->l4_off;

		if ((void *)(ih + 1) > data_end || ihl_bytes + sizeof(*ih) > tot_len)
			return DROP_TRUNCATED_L4;
		sum->icmp_type = ih->type;
		sum->icmp_code = ih->code;
		break;
	}
	}
	return DROP_NONE;
}

/* The body of an observer hook: summarise the packet as far as it parses, trace it
 * (subject to monitor-aggregation) and let it continue. */
static __always_inline int observe(struct __sk_buff *skb, enum obs_point point)
{
	struct pkt_summary sum = {};
	struct parsed p = {};

	if (parse_eth(skb, &p, &sum) == DROP_NONE && sum.eth_proto == bpf_htons(ETH_P_IP))
		parse_ipv4(skb, &p, &sum);
	trace_pass(skb, point, PASS_NONE, &sum);
	return PP_TCX_NEXT;
}

#endif /* PODPATH_PARSE_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Bounds-checked parsing of Ethernet, IPv4 and L4 headers into a pkt_summary, and the L2/L3 prologue every program starts with. */
#ifndef PODPATH_PARSE_H
#define PODPATH_PARSE_H

#include "common.h"
#include "drop.h"
#include "ipv4.h"
#include "trace.h"

/* Offsets of the headers found, valid when parse_ipv4() returns DROP_NONE. */
struct parsed {
	struct ethhdr *eth;
	struct iphdr *ip;
	__u32 l4_off; /* from the start of the frame */
};

static __always_inline enum drop_reason parse_eth(struct __ctx_buff *skb, struct parsed *p,
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
static __always_inline enum drop_reason parse_ipv4(struct __ctx_buff *skb, struct parsed *p,
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
	if (tot_len < ihl_bytes || (ctx_len(skb) < sizeof(struct ethhdr) + tot_len && !ctx_gso_size(skb)))
		return DROP_BAD_TOTAL_LEN;

	p->ip = ip;
	p->l4_off = sizeof(struct ethhdr) + ihl_bytes;
	sum->saddr = ip->saddr;
	sum->daddr = ip->daddr;
	sum->ip_proto = ip->protocol;
	sum->ttl = ip->ttl;
	sum->ip_id = ip->id;

	if (ip->frag_off & bpf_htons(PP_IP_OFFSET))
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

/* What parse_frame() found; the program switches on it once. */
enum parse_verdict {
	PARSE_IPV4     = 0, /* Ethernet and IPv4 parsed (and the first bytes of TCP/UDP/ICMP) */
	PARSE_NOT_IPV4 = 1, /* Ethernet parsed, another EtherType (ARP, IPv6): the stack's */
	PARSE_DROP     = 2, /* malformed, or no tunnel key: *reason says why */
};

/* The prologue of every program: Ethernet (DROP_TRUNCATED_ETH), then, when the
 * EtherType is IPv4, the IPv4 header and the start of L4 (parse_ipv4()'s reasons).
 * key is NULL except at from-overlay (a constant either way, so the step folds
 * away): the collect_md tunnel metadata of the frame the vxlan device decapsulated
 * is read into it between the two (bpf_skb_get_tunnel_key(), DROP_TUNNEL_KEY), so
 * that what follows, a non-IPv4 pass included, is traced with the tunnel's identity
 * and endpoint. The helper zeroes *key when it fails, as it stays zero when Ethernet
 * does not parse. sum is filled as far as parsing got, for the trace record. */
static __always_inline enum parse_verdict parse_frame(struct __ctx_buff *skb, struct parsed *p,
						      struct pkt_summary *sum,
						      struct bpf_tunnel_key *key,
						      enum drop_reason *reason)
{
	*reason = parse_eth(skb, p, sum);
	if (*reason != DROP_NONE)
		return PARSE_DROP;
	if (key && ctx_get_tunnel_key(skb, key, sizeof(*key), 0) < 0) {
		*reason = DROP_TUNNEL_KEY;
		return PARSE_DROP;
	}
	if (sum->eth_proto != bpf_htons(ETH_P_IP))
		return PARSE_NOT_IPV4;
	*reason = parse_ipv4(skb, p, sum);
	return *reason == DROP_NONE ? PARSE_IPV4 : PARSE_DROP;
}

/* The body of an observer hook: summarise the packet as far as it parses, trace it
 * (subject to monitor-aggregation) and let it continue. */
static __always_inline int observe(struct __ctx_buff *skb, enum obs_point point)
{
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	parse_frame(skb, &p, &sum, NULL, &reason);
	trace_pass(skb, point, PASS_NONE, &sum);
	return PP_TCX_NEXT;
}

#endif /* PODPATH_PARSE_H */

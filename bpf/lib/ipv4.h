/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 header rewrites with incremental checksum updates. */
#ifndef PODPATH_IPV4_H
#define PODPATH_IPV4_H

#include "common.h"
#include "drop.h"

#define IPV4_CSUM_OFF (sizeof(struct ethhdr) + __builtin_offsetof(struct iphdr, check))

/* Decrements the TTL of the IPv4 header at ip (right after the Ethernet header) and
 * fixes the header checksum incrementally. The caller checked TTL > 1. The helper
 * invalidates every packet pointer: this is the last header access of a path. */
static __always_inline enum drop_reason ipv4_dec_ttl(struct __sk_buff *skb, struct iphdr *ip)
{
	/* TTL and protocol share one 16-bit word of the checksummed header. */
	__be16 old = *(__be16 *)&ip->ttl;
	__be16 new;

	ip->ttl--;
	new = *(__be16 *)&ip->ttl;
	if (bpf_l3_csum_replace(skb, IPV4_CSUM_OFF, old, new, sizeof(__u16)) < 0)
		return DROP_CSUM_L3;
	return DROP_NONE;
}

#endif /* PODPATH_IPV4_H */

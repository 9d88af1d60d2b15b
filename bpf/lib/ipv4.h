/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 header fields (fragment and ECN bits) and header rewrites with incremental checksum updates. */
#ifndef PODPATH_IPV4_H
#define PODPATH_IPV4_H

#include "common.h"

/* Bits of frag_off in host byte order (test them with bpf_htons()), and the ECN
 * field of tos. */
#define PP_IP_DF     0x4000
#define PP_IP_MF     0x2000
#define PP_IP_OFFSET 0x1fff
#define PP_ECN_MASK  0x03
#define PP_ECN_ECT_0 0x02
#define PP_ECN_CE    0x03

/* Decrements the TTL of the bounds-checked IPv4 header at ip and fixes the header
 * checksum incrementally in place, as the kernel's ip_decrease_ttl() does: TTL is the
 * high byte of its 16-bit word, so the one's complement sum gains 0x0100 (network
 * order), with the end-around carry. No helper is called (bpf_l3_csum_replace() cost
 * ~40 ns here), so packet pointers stay valid. The header still sums to 0xffff, so a
 * CHECKSUM_COMPLETE skb->csum stays right. The caller checked TTL > 1; nothing can
 * fail. */
static __always_inline void ipv4_dec_ttl(struct iphdr *ip)
{
	__u32 check = ip->check;
	/* writes: ipv4.ttl ipv4.checksum */
	check += bpf_htons(0x0100);
	ip->check = (__sum16)(check + (check >= 0xffff));
	ip->ttl--;
}

#endif /* PODPATH_IPV4_H */

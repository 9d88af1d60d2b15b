/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Internet checksums (RFC 1071) computed in BPF, for headers the programs write whole. */
#ifndef PODPATH_CSUM_H
#define PODPATH_CSUM_H

#include "common.h"

/* Folds a 32-bit one's complement sum to 16 bits and complements it. */
static __always_inline __u16 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The header checksum of a 20-byte IPv4 header (no options) whose check field is 0.
 * Summing the 16-bit words in memory order gives the checksum in memory order too, so
 * the result is stored as is. ip must be readable for 20 bytes. */
static __always_inline __sum16 ipv4_csum_20(const struct iphdr *ip)
{
	const __u16 *w = (const __u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return (__sum16)csum_fold32(sum);
}

/* Updates the checksum at sum for a 16-bit word of the data changing from old to new
 * (RFC 1624, eqn. 3: HC' = ~(~HC + ~m + m')). */
static __always_inline void csum_replace2(__sum16 *sum, __be16 old, __be16 new)
{
	__u32 s = (__u16)~*sum + (__u16)~old + (__u16)new;

	*sum = (__sum16)csum_fold32(s);
}

/* One's complement addition of two 32-bit partial sums, with the end-around carry. */
static __always_inline __u32 csum_add(__u32 a, __u32 b)
{
	a += b;
	return a + (a < b);
}

/* The partial-sum difference of a 32-bit word changing from old to new (RFC 1624:
 * ~m + m'), as the kernel's csum_replace4() and bpf_l4_csum_replace() use it. */
static __always_inline __u32 csum_diff4(__be32 old, __be32 new)
{
	return csum_add(~old, new);
}

/* The same for a 16-bit word. */
static __always_inline __u32 csum_diff2(__be16 old, __be16 new)
{
	return csum_add((__u16)~old, new);
}

/* Applies a partial-sum difference to the checksum at sum: HC' = ~(~HC + diff). */
static __always_inline void csum_apply_diff(__sum16 *sum, __u32 diff)
{
	*sum = (__sum16)csum_fold32(csum_add((__u16)~*sum, diff));
}

#endif /* PODPATH_CSUM_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The load balancer's flow hash: Linux's jhash_3words() keyed by the Maglev hash seed. */
#ifndef PODPATH_LB_HASH_H
#define PODPATH_LB_HASH_H

#include "common.h"
#include "config.h"

/* Linux's jhash_3words() (include/linux/jhash.h). */
#define LB_JHASH_INITVAL 0xdeadbeef

static __always_inline __u32 lb_rol32(__u32 w, unsigned int s)
{
	return (w << s) | (w >> (32 - s));
}

static __always_inline __u32 lb_jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	initval += LB_JHASH_INITVAL + (3 << 2);
	a += initval;
	b += initval;
	c += initval;
	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

/* The flow hash, keyed by the 12-byte bpf-lb-maglev-hash-seed (s0, s1, s2: its bytes
 * 0-3, 4-7, 8-11), as Cilium keys its jhash with the seed:
 *   lb_hash = jhash_3words(saddr ^ s0, daddr ^ s1, (sport << 16 | dport) ^ s2, proto)
 * where every address, port and seed word is the number a little-endian load of its
 * bytes (as on the wire) gives. Maglev picks table[lb_hash % M]; NodePort SNAT starts
 * its port search at lb_hash(client, backend) % range. Identical seeds give identical
 * choices on every node. */
static __always_inline __u32 lb_hash(__be32 saddr, __be32 daddr, __be16 sport, __be16 dport, __u8 proto)
{
	return lb_jhash_3words(saddr ^ config_lb_seed(0), daddr ^ config_lb_seed(1),
			       ((__u32)sport << 16 | dport) ^ config_lb_seed(2), proto);
}

#endif /* PODPATH_LB_HASH_H */

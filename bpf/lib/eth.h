/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Ethernet header rewrite: what a router does to the MACs of a forwarded frame. */
#ifndef PODPATH_ETH_H
#define PODPATH_ETH_H

#include "common.h"

/* Sets the frame's source and destination MACs. eth must be bounds-checked. */
static __always_inline void eth_set_macs(struct ethhdr *eth, const __u8 *src, const __u8 *dst)
{
	__builtin_memcpy(eth->h_dest, dst, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src, ETH_ALEN);
}

#endif /* PODPATH_ETH_H */

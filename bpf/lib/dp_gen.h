/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The datapath generations: what lets a conntrack entry carry results that would
 * otherwise be looked up on every packet (the per-packet budget, docs/budget.md). */
#ifndef PODPATH_DP_GEN_H
#define PODPATH_DP_GEN_H

#include "common.h"

/* Slots of dp_gen. The agent bumps a slot whenever what it guards changes; a result
 * cached in a conntrack entry is used only while the entry's copy of the slot equals
 * the current one, and 0 never matches (an entry that has no cache, the zeroed fields
 * of a new entry, a dp_gen nobody started). */
enum dp_gen_slot {
	DP_GEN_FIB     = 0, /* any route or neighbour change in the node's namespace */
	DP_GEN_BACKEND = 1, /* a backend deleted, or its address, port or state changed */
};

/* Shared by every object through its pin, like the conntrack maps whose entries it
 * validates. The loader starts both slots at 1. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 2);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} dp_gen SEC(".maps");

/* The current generation of slot (0 if it cannot be read: then nothing is cached).
 * An array lookup with a constant key, which the verifier inlines: a few
 * instructions, no helper call. */
static __always_inline __u32 dp_gen_now(__u32 slot)
{
	__u32 *g = bpf_map_lookup_elem(&dp_gen, &slot);

	return g ? *g : 0;
}

/* A bpf_fib_lookup() SUCCESS kept in a conntrack entry: what a redirect needs (the
 * egress device and the two MACs), the route's MTU to check each packet's length
 * against, and the device the lookup was made from (forwarding sysctls and policy
 * rules depend on it). Valid while gen == dp_gen[DP_GEN_FIB] != 0. */
struct fib_cache {
	__u32 gen;
	__u32 ifindex;  /* egress device */
	__u32 iif;      /* the ingress device the lookup was made for */
	__u16 mtu;      /* the route's MTU (mtu_result of the SUCCESS lookup) */
	__u8  smac[6];
	__u8  dmac[6];
	__u16 _pad;
};

#endif /* PODPATH_DP_GEN_H */

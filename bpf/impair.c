// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* impair: the harness's link impairment. This kernel has neither netem nor sch_fq, so
 * loss and duplication are done by this tc program on a topology link's bridge port
 * (tcx ingress: member -> segment, tcx egress: segment -> member). Decisions come from
 * a counter-based generator: packet n of an attach point is lost when
 * mix(seed, n) % 1e6 < loss_ppm, so a run with the same seed and the same packet
 * sequence loses the same packets. Not part of the datapath. */

#include <linux/types.h>
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

/* The mark a duplicate carries so that this program lets it pass when it comes round. */
#define IMPAIR_MARK 0x1a3b5c7d

struct impair_config {
	__u64 seed;
	__u32 loss_ppm;   /* per million packets */
	__u32 dup_ppm;    /* per million packets */
	__u32 ingress;    /* 1: attached at tcx ingress (duplicates re-enter there) */
	__u32 pad;
};

struct impair_stats {
	__u64 packets;    /* packets that met the program (duplicates not counted) */
	__u64 lost;
	__u64 duplicated;
	__u64 gso;        /* GSO super-packets among packets: each is lost or doubled whole */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct impair_config);
	__uint(max_entries, 1);
} impair_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct impair_stats);
	__uint(max_entries, 1);
} impair_counters SEC(".maps");

/* splitmix64's finaliser: a well-spread 64-bit hash of x. */
static __always_inline __u64 mix64(__u64 x)
{
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ULL;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebULL;
	x ^= x >> 31;
	return x;
}

SEC("tc")
int impair(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct impair_config *cfg = bpf_map_lookup_elem(&impair_settings, &zero);
	struct impair_stats *st = bpf_map_lookup_elem(&impair_counters, &zero);
	__u64 n, r;

	if (!cfg || !st || skb->mark == IMPAIR_MARK)
		return TC_ACT_UNSPEC;
	n = __sync_fetch_and_add(&st->packets, 1);
	if (skb->gso_segs > 1)
		__sync_fetch_and_add(&st->gso, 1);
	r = mix64(cfg->seed + mix64(n + 1));
	if ((__u32)(r % 1000000) < cfg->loss_ppm) {
		__sync_fetch_and_add(&st->lost, 1);
		return TC_ACT_SHOT;
	}
	if ((__u32)((r >> 32) % 1000000) < cfg->dup_ppm) {
		__u32 mark = skb->mark;

		skb->mark = IMPAIR_MARK;
		if (bpf_clone_redirect(skb, skb->ifindex, cfg->ingress ? BPF_F_INGRESS : 0) == 0)
			__sync_fetch_and_add(&st->duplicated, 1);
		skb->mark = mark;
	}
	return TC_ACT_UNSPEC;
}

char _license[] SEC("license") = "Dual BSD/GPL";

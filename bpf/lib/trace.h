/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Trace records: what a program saw and decided, sent to Go through a ring buffer. */
#ifndef PODPATH_TRACE_H
#define PODPATH_TRACE_H

#include "common.h"
#include "config.h"
#include "drop.h"

#ifndef TRACE_RINGBUF_BYTES
#define TRACE_RINGBUF_BYTES (1 << 20)
#endif

/* Where in the datapath the record was taken. */
enum obs_point {
	OBS_UNKNOWN        = 0,
	OBS_PROBE          = 1,
	OBS_FROM_CONTAINER = 2,
	OBS_TO_CONTAINER   = 3,
	OBS_FROM_NETDEV    = 4,
	OBS_TO_NETDEV      = 5,
};

enum trace_verdict {
	VERDICT_PASS           = 0, /* handed on to the stack / next program */
	VERDICT_DROP           = 1,
	VERDICT_REDIRECT       = 2,
	VERDICT_REDIRECT_PEER  = 3,
	VERDICT_REDIRECT_NEIGH = 4,
};

/* A summary of the packet, enough to follow a flow hop by hop. Addresses and ports
 * stay in network byte order, as on the wire. */
struct pkt_summary {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u16 eth_proto; /* network byte order */
	__u8  ip_proto;
	__u8  ttl;
	__u16 ip_id;     /* network byte order */
	__u8  icmp_type;
	__u8  icmp_code;
};

struct trace_record {
	__u64 ktime_ns;
	__u32 node_id;
	__u32 ifindex;          /* device the program runs on */
	__u32 target_ifindex;   /* redirect target, 0 otherwise */
	__u32 pkt_len;
	__u16 obs_point;        /* enum obs_point */
	__u16 verdict;          /* enum trace_verdict */
	__u16 drop_reason;      /* enum drop_reason */
	__u16 _pad;
	struct pkt_summary pkt;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TRACE_RINGBUF_BYTES);
} trace_events SEC(".maps");

/* Whether monitor-aggregation lets this verdict through. Drops are always traced. */
static __always_inline int trace_wanted(enum trace_verdict verdict)
{
	__u32 level = CONFIG.monitor_aggregation;

	if (verdict == VERDICT_DROP)
		return 1;
	if (level >= AGGREGATION_MAX)
		return 0;
	if (level >= AGGREGATION_MEDIUM)
		return verdict != VERDICT_PASS;
	return 1;
}

static __always_inline void trace_emit(struct __sk_buff *skb, enum obs_point point,
				       enum trace_verdict verdict, enum drop_reason reason,
				       __u32 target_ifindex, const struct pkt_summary *pkt)
{
	struct trace_record *rec;

	if (!trace_wanted(verdict))
		return;
	rec = bpf_ringbuf_reserve(&trace_events, sizeof(*rec), 0);
	if (!rec)
		return;
	rec->ktime_ns = bpf_ktime_get_ns();
	rec->node_id = CONFIG.node_id;
	rec->ifindex = skb->ifindex;
	rec->target_ifindex = target_ifindex;
	rec->pkt_len = skb->len;
	rec->obs_point = point;
	rec->verdict = verdict;
	rec->drop_reason = reason;
	rec->_pad = 0;
	rec->pkt = *pkt;
	bpf_ringbuf_submit(rec, 0);
}

/* An unused global that puts these types into BTF, where bpf2go and the Go side read
 * them: Go never hand-mirrors a record layout or a drop reason name. */
const struct {
	enum drop_reason drop_reason;
	enum obs_point obs_point;
	enum trace_verdict trace_verdict;
	struct trace_record trace_record;
} pp_btf_anchor = {};

#endif /* PODPATH_TRACE_H */

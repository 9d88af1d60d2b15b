/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Service lookup and translation: backend selection, conntrack, forward and reverse NAT of TCP/UDP. */
#ifndef PODPATH_LB_H
#define PODPATH_LB_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "drop.h"
#include "dsr.h"
#include "endpoint.h"
#include "ipv4.h"
#include "lb_frag.h"
#include "lb_hash.h"
#include "lb_maps.h"
#include "maps.h"
#include "nat.h"
#include "parse.h"
#include "trace.h"

/* Slots a random selection looks at, from a random start, for an active backend. */
#ifndef LB_SELECT_TRIES
#define LB_SELECT_TRIES 8
#endif

/* Whether the load balancer looks at the packet: TCP or UDP with its ports. Later
 * fragments carry none: with fragment tracking lb_frag_track() gave them their first
 * fragment's, without it they pass untranslated (ports 0). */
static __always_inline int lb_l4(const struct parsed *p, const struct pkt_summary *sum)
{
	return (sum->ip_proto == IPPROTO_TCP || sum->ip_proto == IPPROTO_UDP) &&
	       (!ipv4_later_fragment(p->ip) || sum->sport || sum->dport);
}

/* The TCP flags byte, 0 for UDP. */
static __always_inline __u8 lb_tcp_flags(struct __ctx_buff *skb, const struct parsed *p)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct tcphdr *th;
	__u32 off = p->l4_off;

	/* A later fragment's first bytes are payload, not a TCP header. */
	if (p->ip->protocol != IPPROTO_TCP || off > 14 + 60 || ipv4_later_fragment(p->ip))
		return 0;
	th = data + off;
	if ((void *)(th + 1) > data_end)
		return 0;
	return ((__u8 *)th)[13];
}

static __always_inline const struct lb_service *lb_service_lookup(const struct pkt_summary *sum)
{
	struct lb_service_key key = {
		.addr = sum->daddr, .dport = sum->dport, .proto = sum->ip_proto, .scope = LB_SCOPE_EXTERNAL,
	};

	return bpf_map_lookup_elem(&lb_services, &key);
}

static __always_inline const struct lb_backend *lb_backend_lookup(__u32 id)
{
	return bpf_map_lookup_elem(&lb_backends, &id);
}

/* A backend new flows of svc may take: an active one, or with SVC_F_FALLBACK (no
 * backend of the service is ready, KEP-1669) a terminating one. */
static __always_inline const struct lb_backend *lb_backend_active(const struct lb_service *svc, __u32 id)
{
	const struct lb_backend *be = lb_backend_lookup(id);

	if (!be)
		return NULL;
	if (be->state == LB_BACKEND_ACTIVE ||
	    (be->state == LB_BACKEND_TERMINATING && (svc->flags & SVC_F_FALLBACK)))
		return be;
	return NULL;
}

/* Maglev: the backend id at lb_hash % M of the service's table, 0 when there is no
 * table (yet) or the entry is past its end. */
static __always_inline __u32 lb_select_maglev(const struct lb_service *svc, const struct pkt_summary *sum)
{
	__u32 m = CONFIG.lb_maglev_table_size;
	__u32 key = svc->service_id, idx;
	const __u32 *id;
	void *table;

	if (!m)
		return 0;
	table = bpf_map_lookup_elem(&lb_maglev, &key);
	if (!table)
		return 0;
	idx = lb_hash(sum->saddr, sum->daddr, sum->sport, sum->dport, sum->ip_proto) % m;
	id = bpf_map_lookup_elem(table, &idx);
	return id ? *id : 0;
}

/* Random: a random slot of 1..backend_count, then the next ones (wrapping), until an
 * active backend, at most LB_SELECT_TRIES slots. The agent fills the slots with active
 * backends only, so the first one normally is; the state check covers the time
 * between a backend turning terminating and the agent rewriting the slots. */
static __always_inline const struct lb_backend *lb_select_random(const struct lb_service *svc,
								 __u32 *backend_id)
{
	__u32 count = svc->backend_count;
	__u32 start;

	if (!count)
		return NULL;
	start = bpf_get_prandom_u32() % count;
	/* A real loop, not unrolled: the programs must stay within the 32K-instruction
	 * jump range of one BPF program (the verifier handles bounded loops). */
#pragma clang loop unroll(disable)
	for (__u32 i = 0; i < LB_SELECT_TRIES; i++) {
		struct lb_slot_key key = { .service_id = svc->service_id };
		const struct lb_backend *be;
		const __u32 *id;
		__u32 slot = start + i;

		if (i >= count)
			break;
		if (slot >= count)
			slot -= count;
		key.slot = slot + 1;
		id = bpf_map_lookup_elem(&lb_backend_slots, &key);
		if (!id)
			continue;
		be = lb_backend_active(svc, *id);
		if (be) {
			*backend_id = *id;
			return be;
		}
	}
	return NULL;
}

/* A new flow's backend: Maglev for SVC_F_MAGLEV services, falling back to random
 * selection when the service has no table yet or its entry is not active (until the
 * agent replaces the table); random for the others. NULL: no active backend. */
static __always_inline const struct lb_backend *lb_select_algo(const struct lb_service *svc,
							       const struct pkt_summary *sum,
							       __u32 *backend_id)
{
	if (svc->flags & SVC_F_MAGLEV) {
		__u32 id = lb_select_maglev(svc, sum);
		const struct lb_backend *be = id ? lb_backend_active(svc, id) : NULL;

		if (be) {
			*backend_id = id;
			return be;
		}
	}
	return lb_select_random(svc, backend_id);
}

/* A new flow's backend under sessionAffinity ClientIP (SVC_F_AFFINITY): the client's
 * entry in lb_affinity if it was used less than affinity_timeout seconds ago and its
 * backend still takes new flows (*affine set), else lb_select_algo()'s choice, which
 * becomes the client's entry. Either way the entry's last_used is now: each new flow
 * restarts the timeout, as kube-proxy's. Without the flag: lb_select_algo(). */
static __always_inline const struct lb_backend *lb_select(const struct lb_service *svc,
							  const struct pkt_summary *sum,
							  __u32 *backend_id, int *affine)
{
	struct lb_affinity_key akey = { .service_id = svc->service_id, .client = sum->saddr };
	const struct lb_backend *be;
	struct lb_affinity *a, na;
	__u32 now;

	if (!(svc->flags & SVC_F_AFFINITY))
		return lb_select_algo(svc, sum, backend_id);
	now = ct_now();
	a = bpf_map_lookup_elem(&lb_affinity, &akey);
	if (a && now - a->last_used < svc->affinity_timeout) {
		be = lb_backend_active(svc, a->backend_id);
		if (be) {
			*backend_id = a->backend_id;
			a->last_used = now;
			*affine = 1;
			return be;
		}
	}
	be = lb_select_algo(svc, sum, backend_id);
	if (be) {
		na.backend_id = *backend_id;
		na.last_used = now;
		bpf_map_update_elem(&lb_affinity, &akey, &na, BPF_ANY);
	}
	return be;
}

/* The drop of a new flow that found no backend: a Local frontend (SVC_F_LOCAL) has
 * none on this node; any other has none at all (lb_reject() may answer it). */
static __always_inline enum drop_reason lb_no_backend(const struct lb_service *svc)
{
	return (svc->flags & SVC_F_LOCAL) ? DROP_SVC_NO_LOCAL_BACKEND : DROP_NO_SERVICE_BACKEND;
}

/* loadBalancerSourceRanges (SVC_F_SOURCE_RANGE, with enable-svc-source-range-check):
 * whether client saddr may use svc from outside (an lb_source_ranges match). */
static __always_inline int lb_source_allowed(const struct lb_service *svc, __be32 saddr)
{
	struct lb_src_range_key key = { .prefixlen = 64, .service_id = svc->service_id, .addr = saddr };

	if (!CONFIG.lb_source_range_check || !(svc->flags & SVC_F_SOURCE_RANGE))
		return 1;
	return bpf_map_lookup_elem(&lb_source_ranges, &key) != NULL;
}

/* Records the translation in the summary (the received tuple into lb.orig_*) and
 * makes the summary's tuple the translated one. */
static __always_inline void lb_trace_xlate(struct pkt_summary *sum, __u8 action, __u8 ct,
					   __u32 backend_id, __be32 saddr, __be16 sport,
					   __be32 daddr, __be16 dport)
{
	sum->lb.action = action;
	sum->lb.ct = ct;
	sum->lb.backend_id = backend_id;
	sum->lb.orig_saddr = sum->saddr;
	sum->lb.orig_daddr = sum->daddr;
	sum->lb.orig_sport = sum->sport;
	sum->lb.orig_dport = sum->dport;
	sum->saddr = saddr;
	sum->sport = sport;
	sum->daddr = daddr;
	sum->dport = dport;
}

/* Whether a new flow from a NIC to a backend that is not on this node gets direct
 * server return (bpf-lb-mode dsr; hybrid: TCP only) rather than SNAT. */
static __always_inline int lb_nodeport_dsr(__u8 proto)
{
	return CONFIG.lb_mode == LB_MODE_DSR || (CONFIG.lb_mode == LB_MODE_HYBRID && proto == IPPROTO_TCP);
}

/* Writes the reply entry of a flow whose service entry is e, under rkey (the reply
 * as it reaches this node): into the snat map for SNATed flows (with the client to
 * restore), into conntrack otherwise. how: BPF_ANY, or BPF_NOEXIST to recreate an
 * evicted SNAT entry without taking a port another flow got meanwhile. */
static __always_inline long lb_reply_write(const struct ct_key *rkey, const struct ct_entry *e,
					   __be32 client, __be16 cport, __u64 how)
{
	struct ct_entry r = *e;

	long ret;

	r.nat_addr = client;
	r.nat_port = cport;
	/* The caches are the service entry's: a reply entry never uses them. */
	r.be_gen = 0;
	r.fib.gen = 0;
	if (e->flags & CT_F_SNAT) {
		ret = bpf_map_update_elem(&snat, rkey, &r, how);
		barrier_var(ret);
		return ret;
	}
	if (!(e->flags & CT_F_LOOPBACK)) {
		r.nat_addr = 0;
		r.nat_port = 0;
	}
	return ct_update(rkey, &r);
}

/* Whether a NodePort entry's locality (remote backend: CT_F_SNAT or CT_F_DSR, as
 * lb_service_select() decided at creation) is still that of backend be; other
 * entries have none to keep. */
static __always_inline int lb_locality_holds(const struct ct_entry *e, const struct lb_backend *be)
{
	const struct endpoint_info *ep;
	int remote;

	if (!(e->flags & CT_F_NODEPORT))
		return 1;
	ep = endpoint_lookup(be->addr);
	remote = !ep || (ep->flags & ENDPOINT_F_HOST);
	return remote == !!(e->flags & (CT_F_SNAT | CT_F_DSR));
}

/* The backend cached in a conntrack entry, in lb_backends' layout (no copy: the stack
 * of from_netdev has no room for one). */
static __always_inline const struct lb_backend *lb_entry_backend(const struct ct_entry *e)
{
	_Static_assert(sizeof(struct lb_backend) == 8, "lb_backend layout");
	_Static_assert(__builtin_offsetof(struct ct_entry, be_port) == __builtin_offsetof(struct ct_entry, be_addr) + 4 &&
		       __builtin_offsetof(struct ct_entry, be_state) == __builtin_offsetof(struct ct_entry, be_addr) + 7,
		       "ct_entry backend cache layout");
	return (const struct lb_backend *)&e->be_addr;
}

/* A translation lb_service_select() decided, for lb_xlate_apply(). */
struct lb_xlate {
	const struct lb_backend *be; /* the flow's backend: the new destination (lb_backends,
				      * or be_copy from the entry's cache) */
	struct ct_entry *entry;      /* a live flow's CT_SERVICE entry, NULL for a new flow (its
				      * entry was written from the stack) */
	__u8   be_valid;             /* entry's backend cache is current (be_gen): its address
				      * and locality (CT_F_SNAT/CT_F_DSR) hold, so its fib
				      * cache may be used and no endpoint lookup is needed */
	__u32  backend_id;
	__be32 saddr;                /* the source the packet gets (the client's, LB_LOOPBACK, or SNAT) */
	__be16 sport;
	__u16  flags;                /* the flow's CT_F_SNAT and CT_F_DSR (NodePort to a remote backend) */
	__u8   action;               /* enum trace_lb */
	__u8   ct;                   /* enum trace_ct */
	__u8   tcp_flags;            /* the packet's (lb_tcp_flags()) */
};

/* Picks the translation of a packet to the frontend svc (the forward direction), on
 * the node the client's packet enters the cluster through: from-container for pods,
 * from-netdev (from_nic) for NodePort and external IPs.
 *   conntrack CT_SERVICE entry (client -> frontend) live, its backend still in
 *   lb_backends (whatever its state)        -> that backend (TRACE_CT_ESTABLISHED);
 *   otherwise                               -> lb_select(): a new flow (TRACE_CT_NEW),
 *                                              DROP_NO_SERVICE_BACKEND without one;
 *   a pod's new flow to itself (hairpin)    -> source LB_LOOPBACK (CT_F_LOOPBACK);
 *   a new flow from a NIC to a backend that is no pod of this node gets direct server
 *   return (lb_nodeport_dsr(): CT_F_DSR, the client's source is kept) or SNAT: source
 *   = this node's IP and a port of [lb_snat_port_min, lb_snat_port_max] (snat_alloc).
 * A new flow writes its CT_SERVICE entry and its reply entry (lb_reply_write; none
 * for DSR: the replies do not come back here); a live one refreshes both, the reply
 * entry only when the service entry changed (ct_refresh), which is at most once a
 * second per flow. The packet is not touched: lb_xlate_apply() rewrites it (for
 * NodePort after lb_nodeport_xlate()'s MTU check). */
static __always_inline enum drop_reason lb_service_select(struct __ctx_buff *skb, const struct parsed *p,
							  const struct pkt_summary *sum,
							  const struct lb_service *svc, int from_nic,
							  struct lb_xlate *x)
{
	struct ct_key key = {
		.saddr = sum->saddr, .daddr = sum->daddr, .sport = sum->sport, .dport = sum->dport,
		.proto = sum->ip_proto, .dir = CT_SERVICE,
	};
	struct ct_key rkey = { .proto = sum->ip_proto, .dir = CT_REPLY };
	const struct lb_backend *be = NULL;
	struct ct_entry *ct;
	__u8 proto = sum->ip_proto;
	__u8 tcp_flags = lb_tcp_flags(skb, p);
	__u16 pkt_flags = ct_pkt_flags(proto, tcp_flags);
	__u32 now = ct_now();
	__u32 backend_id = 0;
	__be32 saddr = sum->saddr;
	__be16 sport = sum->sport;
	__u8 state = TRACE_CT_ESTABLISHED;
	__u8 action = TRACE_LB_DNAT;
	__u16 flags = 0; /* a live flow's ct_flags; a new flow's CT_F_SNAT, CT_F_DSR or CT_F_LOOPBACK */
	enum drop_reason reason;

	/* Read before lb_backends: a change made after it bumps past what an entry
	 * then stores, so the entry's cache is never newer than its generation says. */
	__u32 be_gen = dp_gen_now(DP_GEN_BACKEND);

	x->entry = NULL;
	x->be_valid = 0;
	ct = ct_lookup(&key);
	if (ct && ct_live(ct, now, proto, tcp_flags)) {
		backend_id = ct->backend_id;
		if (be_gen && ct->be_gen == be_gen) {
			/* No backend changed since the entry stored this one: no
			 * lb_backends lookup. */
			be = lb_entry_backend(ct);
		} else {
			be = lb_backend_lookup(backend_id);
			/* Stale: the backend may have moved (address, node). Its route is
			 * looked up again, and the cache is renewed only while the
			 * entry's locality still holds (else every packet takes the
			 * full path, as before the budget). */
			if (be && be_gen) {
				ct->fib.gen = 0;
				if (lb_locality_holds(ct, be)) {
					ct->be_addr = be->addr;
					ct->be_port = be->port;
					ct->be_proto = be->proto;
					ct->be_state = be->state;
					/* The generation last: another CPU reading this entry
					 * trusts the fields only once it matches, so the
					 * compiler must not store it first. */
					barrier();
					ct->be_gen = be_gen;
				}
			}
		}
	}
	if (be && ct) {
		x->entry = ct;
		x->be_valid = be_gen && ct->be_gen == be_gen;
		flags = ct->flags;
		if (ct->flags & (CT_F_SNAT | CT_F_LOOPBACK)) {
			saddr = ct->nat_addr;
			sport = ct->nat_port;
			action = TRACE_LB_DNAT_SNAT;
		}
		/* A DSR flow has no reply entry here. */
		if (ct_refresh(ct, now, proto, pkt_flags) && !(flags & CT_F_DSR)) {
			struct ct_entry *r;

			rkey.saddr = be->addr;
			rkey.sport = be->port;
			rkey.daddr = saddr;
			rkey.dport = sport;
			if (ct->flags & CT_F_SNAT) {
				r = bpf_map_lookup_elem(&snat, &rkey);
				barrier_var(r);
			} else {
				r = ct_lookup(&rkey);
			}
			if (r)
				ct_refresh(r, now, proto, pkt_flags);
			else
				lb_reply_write(&rkey, ct, sum->saddr, sum->sport, BPF_NOEXIST);
		}
	} else {
		struct ct_entry e = {};

		int affine = 0;

		state = TRACE_CT_NEW;
		be = lb_select(svc, sum, &backend_id, &affine);
		if (!be)
			return lb_no_backend(svc);
		if (affine)
			state = TRACE_CT_AFFINITY;
		e.flags = pkt_flags;
		e.lifetime = ct_lifetime(proto, pkt_flags, now);
		e.backend_id = backend_id;
		e.rev_nat_id = svc->rev_nat_id;
		rkey.saddr = be->addr;
		rkey.sport = be->port;
		if (!from_nic && be->addr == sum->saddr) {
			/* Hairpin: the pod would get a packet from its own address, which
			 * its stack drops as a martian. writes: lb.hairpin.saddr */
			e.flags |= CT_F_LOOPBACK;
			flags = CT_F_LOOPBACK;
			saddr = LB_LOOPBACK;
			e.nat_addr = saddr;
			e.nat_port = sport;
			action = TRACE_LB_DNAT_SNAT;
		}
		if (from_nic) {
			const struct endpoint_info *ep = endpoint_lookup(be->addr);
			int remote = !ep || (ep->flags & ENDPOINT_F_HOST);

			e.flags |= CT_F_NODEPORT;
			if (remote && lb_nodeport_dsr(proto)) {
				e.flags |= CT_F_DSR;
				flags = CT_F_DSR;
			} else if (remote) {
				/* e itself is the reply entry written (the client as
				 * nat_addr:nat_port, no caches yet), then becomes the
				 * service entry: a second copy on the stack would take
				 * from_netdev past 512 bytes. */
				e.flags |= CT_F_SNAT;
				flags = CT_F_SNAT;
				saddr = config_node_ip();
				e.nat_addr = sum->saddr;
				e.nat_port = sum->sport;
				rkey.daddr = saddr;
				reason = snat_alloc(&rkey, &e,
						    lb_hash(sum->saddr, be->addr, sum->sport, be->port, proto), now);
				if (reason != DROP_NONE)
					return reason;
				sport = rkey.dport;
				e.nat_addr = saddr;
				e.nat_port = sport;
				action = TRACE_LB_DNAT_SNAT;
			}
		}
		/* flags, not e.flags: e.flags also holds the packet's TCP state bits, and
		 * any use of them after snat_alloc() keeps them live through its loop,
		 * where the verifier then cannot prune (one more state per TCP state). */
		if (!(flags & (CT_F_SNAT | CT_F_DSR))) {
			/* lb_reply_write() without its copy of the entry: e is the reply
			 * entry for the write (no caches are in it yet), then the service
			 * entry again (the stack of from_netdev has no room for a copy). */
			__be32 nat_addr = e.nat_addr;
			__be16 nat_port = e.nat_port;
			long ret;

			rkey.daddr = saddr;
			rkey.dport = sport;
			if (flags & CT_F_LOOPBACK) {
				e.nat_addr = sum->saddr;
				e.nat_port = sum->sport;
			}
			ret = ct_update(&rkey, &e);
			if (ret < 0)
				return DROP_CT_CREATE_FAILED;
			e.nat_addr = nat_addr;
			e.nat_port = nat_port;
		}
		e.be_addr = be->addr;
		e.be_port = be->port;
		e.be_proto = be->proto;
		e.be_state = be->state;
		e.be_gen = be_gen;
		if (ct_update(&key, &e) < 0)
			return DROP_CT_CREATE_FAILED;
	}

	x->be = be;
	x->backend_id = backend_id;
	x->saddr = saddr;
	x->sport = sport;
	x->flags = flags & (CT_F_SNAT | CT_F_DSR);
	x->action = action;
	x->ct = state;
	x->tcp_flags = tcp_flags;
	return DROP_NONE;
}

/* Rewrites the packet as x says (nat4_rewrite) and records the translation in the
 * summary, which then carries the translated tuple. */
static __always_inline enum drop_reason lb_xlate_apply(struct __ctx_buff *skb, struct parsed *p,
						       struct pkt_summary *sum,
						       const struct lb_xlate *x)
{
	enum drop_reason reason;

	reason = nat4_rewrite(skb, p, x->saddr, x->sport, x->be->addr, x->be->port);
	if (reason != DROP_NONE)
		return reason;
	lb_trace_xlate(sum, x->action, x->ct, x->backend_id, x->saddr, x->sport, x->be->addr, x->be->port);
	return DROP_NONE;
}

/* Translates a pod's packet to the frontend svc: lb_service_select(), then
 * lb_xlate_apply(). */
static __always_inline enum drop_reason lb_service_xlate(struct __ctx_buff *skb, struct parsed *p,
							 struct pkt_summary *sum,
							 const struct lb_service *svc)
{
	struct lb_xlate x;
	enum drop_reason reason;

	reason = lb_service_select(skb, p, sum, svc, 0, &x);
	if (reason != DROP_NONE)
		return reason;
	return lb_xlate_apply(skb, p, sum, &x);
}

/* Result of a reply lookup. */
enum lb_reply_result {
	LB_REPLY_NONE     = 0, /* no live reply entry (or its frontend is gone): untouched */
	LB_REPLY_REVNAT   = 1, /* translated back */
	LB_REPLY_NODEPORT = 2, /* translated back, and the flow came in through a NIC */
};

/* The frontend a reply entry's flow was sent to: lb_rev_nat's entry, or for a DSR
 * flow on the backend's node the service the DSR option named. 0: gone. */
static __always_inline int lb_frontend_of(const struct ct_entry *e, struct dsr_service *fe)
{
	const struct lb_rev_nat *rn;
	__u32 id = e->rev_nat_id;

	if (e->flags & CT_F_DSR) {
		fe->addr = e->nat_addr;
		fe->port = e->nat_port;
		return 1;
	}
	rn = bpf_map_lookup_elem(&lb_rev_nat, &id);
	if (!rn)
		return 0;
	fe->addr = rn->addr;
	fe->port = rn->port;
	return 1;
}

/* Translates a backend's reply whose live reply entry is e back to what the client
 * expects: source = the frontend (lb_frontend_of()), and for SNATed flows (from_snat)
 * destination = the client. A frontend that is gone (no lb_rev_nat entry) leaves the
 * packet untouched. */
static __always_inline enum drop_reason lb_reply_xlate(struct __ctx_buff *skb, struct parsed *p,
						       struct pkt_summary *sum, struct ct_entry *e,
						       int from_snat, int *result)
{
	__u32 now = ct_now();
	struct dsr_service fe;
	__be32 daddr = sum->daddr;
	__be16 dport = sum->dport;
	enum drop_reason reason;
	__u8 action = TRACE_LB_REVNAT;

	ct_refresh(e, now, sum->ip_proto, ct_pkt_flags(sum->ip_proto, lb_tcp_flags(skb, p)));
	if (!lb_frontend_of(e, &fe))
		return DROP_NONE;
	if (from_snat || (e->flags & CT_F_LOOPBACK)) {
		daddr = e->nat_addr;
		dport = e->nat_port;
		action = TRACE_LB_REV_SNAT;
	} else if (e->flags & CT_F_DSR) {
		action = TRACE_LB_REV_DSR;
	}
	reason = nat4_rewrite(skb, p, fe.addr, fe.port, daddr, dport);
	if (reason != DROP_NONE)
		return reason;
	*result = (e->flags & CT_F_NODEPORT) ? LB_REPLY_NODEPORT : LB_REPLY_REVNAT;
	lb_trace_xlate(sum, action, TRACE_CT_REPLY, e->backend_id, fe.addr, fe.port, daddr, dport);
	return DROP_NONE;
}

/* A reply entry for the packet as it is (key: its own tuple, dir CT_REPLY) in
 * conntrack, or in the snat map (in_snat), if live. */
static __always_inline struct ct_entry *lb_reply_lookup(struct __ctx_buff *skb, const struct parsed *p,
							const struct pkt_summary *sum, int in_snat)
{
	struct ct_key key = {
		.saddr = sum->saddr, .daddr = sum->daddr, .sport = sum->sport, .dport = sum->dport,
		.proto = sum->ip_proto, .dir = CT_REPLY,
	};
	struct ct_entry *e;

	if (in_snat) {
		e = bpf_map_lookup_elem(&snat, &key);
		barrier_var(e);
	} else {
		e = ct_lookup(&key);
	}
	if (!e || !ct_live(e, ct_now(), sum->ip_proto, lb_tcp_flags(skb, p)))
		return NULL;
	return e;
}

/* Reverse translation of replies to flows this node translated without SNAT: a local
 * backend answering (from-container), or a remote backend answering a client pod of
 * this node (from-netdev, tunnel delivery). *result says what happened. */
static __always_inline enum drop_reason lb_rev_nat_reply(struct __ctx_buff *skb, struct parsed *p,
							 struct pkt_summary *sum, int *result)
{
	struct ct_entry *e = lb_reply_lookup(skb, p, sum, 0);

	if (!e)
		return DROP_NONE;
	return lb_reply_xlate(skb, p, sum, e, 0, result);
}

#endif /* PODPATH_LB_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Service load balancing (kube-proxy replacement): frontends, backends, Maglev tables, reverse NAT, and the translations the programs apply. */
#ifndef PODPATH_LB_H
#define PODPATH_LB_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "drop.h"
#include "dsr.h"
#include "encap.h"
#include "endpoint.h"
#include "fib.h"
#include "maps.h"
#include "nat.h"
#include "parse.h"
#include "trace.h"
#include "tunnel.h"

/* Default sizes (Cilium's bpf-lb-map-max); the loader may override them. These hash
 * maps are not preallocated: they cost memory only for what the agent writes. */
#ifndef LB_SERVICES_MAP_SIZE
#define LB_SERVICES_MAP_SIZE 65536
#endif
#ifndef LB_BACKENDS_MAP_SIZE
#define LB_BACKENDS_MAP_SIZE 65536
#endif
#ifndef LB_SLOTS_MAP_SIZE
#define LB_SLOTS_MAP_SIZE 262144
#endif
#ifndef LB_REV_NAT_MAP_SIZE
#define LB_REV_NAT_MAP_SIZE 65536
#endif
#ifndef LB_MAGLEV_MAP_SIZE
#define LB_MAGLEV_MAP_SIZE 65536
#endif
/* The inner Maglev array's size in the object; the loader sets CONFIG's M. */
#ifndef LB_MAGLEV_TABLE_SIZE
#define LB_MAGLEV_TABLE_SIZE 16381
#endif
/* Slots a random selection looks at, from a random start, for an active backend. */
#ifndef LB_SELECT_TRIES
#define LB_SELECT_TRIES 8
#endif

/* What a frontend is (lb_service.flags). A Kubernetes Service has one frontend per
 * ClusterIP:port, per node IP:nodePort and per external/LoadBalancer IP:port. */
enum lb_service_flags {
	SVC_F_CLUSTERIP = 1 << 0, /* reachable from pods only */
	SVC_F_NODEPORT  = 1 << 1, /* this node's IP:nodePort: also from outside (from-netdev) */
	SVC_F_EXTERNAL  = 1 << 2, /* an external or LoadBalancer IP: also from outside */
	SVC_F_MAGLEV    = 1 << 3, /* new flows pick their backend from the Maglev table (else at random) */
};

/* lb_service_key.scope: Cilium's, for externalTrafficPolicy=Local later. Only
 * LB_SCOPE_EXTERNAL is looked up today. */
enum lb_scope {
	LB_SCOPE_EXTERNAL = 0, /* any backend of the cluster */
	LB_SCOPE_INTERNAL = 1, /* (reserved) backends of this node only */
};

/* A backend's state. Only active backends get new flows; the others keep the flows
 * conntrack already gave them until those end or expire. */
enum lb_backend_state {
	LB_BACKEND_ACTIVE      = 0,
	LB_BACKEND_TERMINATING = 1, /* the pod is going away (Kubernetes' terminating endpoint) */
	LB_BACKEND_MAINTENANCE = 2, /* taken out by the operator */
};

/* The source a pod's packets to its own service get when the service sends them back
 * to the pod itself (Cilium's ipv4-service-loopback-address): 169.254.42.1. */
#define LB_LOOPBACK bpf_htonl(0xa9fe2a01)

/* A frontend. NodePort frontends are keyed by each of this node's IPs explicitly
 * (addr = the node IP; there is no wildcard): the agent knows them, and one exact
 * lookup serves every packet. */
struct lb_service_key {
	__be32 addr;
	__be16 dport;
	__u8   proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8   scope;   /* enum lb_scope */
};

struct lb_service {
	__u32 service_id;    /* the backend set: lb_backend_slots, lb_maglev */
	__u16 backend_count; /* slots 1..backend_count of lb_backend_slots */
	__u16 flags;         /* enum lb_service_flags */
	__u32 rev_nat_id;    /* lb_rev_nat: what replies get as their source (this frontend) */
};

/* Random selection: slot s (1..backend_count) of service_id holds a backend id. */
struct lb_slot_key {
	__u32 service_id;
	__u16 slot;
	__u16 _pad;
};

struct lb_backend {
	__be32 addr;
	__be16 port;
	__u8   proto;
	__u8   state;   /* enum lb_backend_state */
};

struct lb_rev_nat {
	__be32 addr;
	__be16 port;
	__u16  _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(max_entries, LB_SERVICES_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_slot_key);
	__type(value, __u32);
	__uint(max_entries, LB_SLOTS_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backend_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, LB_BACKENDS_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_rev_nat);
	__uint(max_entries, LB_REV_NAT_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rev_nat SEC(".maps");

/* A service's Maglev table: entry j is the backend id of flows with
 * lb_hash() % M == j. BPF_F_INNER_MAP lets the outer map take arrays of any size, so
 * changing M (bpf-lb-maglev-table-size) needs no new outer map: Go replaces every
 * table, and a lookup past the end of a stale one finds nothing. */
struct lb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, LB_MAGLEV_TABLE_SIZE);
	/* BPF_F_MMAPABLE: Go fills a new table with one memory copy (a syscall per entry
	 * made 10,000 tables of 16381 entries take 45 s). */
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32); /* service_id */
	__uint(max_entries, LB_MAGLEV_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb_maglev_inner);
} lb_maglev SEC(".maps");

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

/* Whether the load balancer looks at the packet: TCP or UDP with its ports (later
 * fragments carry none and pass untranslated: fragments of a datagram to a service
 * are not reassembled or tracked). */
static __always_inline int lb_l4(const struct parsed *p, const struct pkt_summary *sum)
{
	return (sum->ip_proto == IPPROTO_TCP || sum->ip_proto == IPPROTO_UDP) &&
	       !(p->ip->frag_off & bpf_htons(PP_IP_OFFSET));
}

/* The TCP flags byte, 0 for UDP. */
static __always_inline __u8 lb_tcp_flags(struct __sk_buff *skb, const struct parsed *p)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct tcphdr *th;
	__u32 off = p->l4_off;

	if (p->ip->protocol != IPPROTO_TCP || off > 14 + 60)
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

static __always_inline const struct lb_backend *lb_backend_active(__u32 id)
{
	const struct lb_backend *be = lb_backend_lookup(id);

	return be && be->state == LB_BACKEND_ACTIVE ? be : NULL;
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
		be = lb_backend_active(*id);
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
static __always_inline const struct lb_backend *lb_select(const struct lb_service *svc,
							  const struct pkt_summary *sum,
							  __u32 *backend_id)
{
	if (svc->flags & SVC_F_MAGLEV) {
		__u32 id = lb_select_maglev(svc, sum);
		const struct lb_backend *be = id ? lb_backend_active(id) : NULL;

		if (be) {
			*backend_id = id;
			return be;
		}
	}
	return lb_select_random(svc, backend_id);
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

/* How a NodePort packet translated by lb_service_xlate() goes on (lb_from_netdev()). */
struct lb_fwd {
	__u32 frag_mtu;         /* not 0: too big for the way to the backend; the packet is
				 * left untranslated for an ICMP frag-needed with this MTU */
	__u8  dsr_opt;          /* a DSR flow's packet that carries the DSR option
				 * (dsr_needs_opt()) */
	__u8  _pad[3];
	struct dsr_service svc; /* the frontend, for the option */
	/* Option dispatch: the route to the backend, looked up once with the option's
	 * length for the MTU check and then used to forward (lb_forward()). */
	long fib_ret;
	struct bpf_fib_lookup fib;
};

/* For a NodePort flow's packet to a remote backend (client port sport): the MTU to
 * announce when it is DF and does not fit the way there once encapsulated or given
 * the DSR option, else 0.
 *   tunnel mode      the tunnel MTU, less the Geneve DSR option when it rides along
 *                    (every packet is encapsulated: any may be too big);
 *   option dispatch  the route to the backend is looked up here, with the option's
 *                    length, for the packets that carry it (the others are forwarded
 *                    as they came); lb_forward() forwards with that lookup. A packet
 *                    without DF that is too big goes to the stack to fragment. */
static __always_inline __u32 lb_remote_frag_mtu(struct __sk_buff *skb, const struct parsed *p,
						struct lb_fwd *fwd, const struct lb_backend *be,
						__be16 sport)
{
	int df = p->ip->frag_off & bpf_htons(PP_IP_DF);
	__u32 len, opt;

	if (tunnel_enabled()) {
		if (!df)
			return 0;
		opt = fwd->dsr_opt ? DSR_GENEVE_OPT_LEN : 0;
		len = ipv4_seg_len(skb, p) + opt;
		return len > CONFIG.tunnel_mtu ? CONFIG.tunnel_mtu - opt : 0;
	}
	if (!fwd->dsr_opt)
		return 0;
	len = ipv4_seg_len(skb, p) + DSR_IPV4_OPT_LEN;
	fwd->fib_ret = fib_lookup4(skb, p, p->ip->saddr, be->addr, sport, be->port, len, &fwd->fib);
	if (df && fwd->fib_ret == BPF_FIB_LKUP_RET_FRAG_NEEDED && fwd->fib.mtu_result > DSR_IPV4_OPT_LEN)
		return fwd->fib.mtu_result - DSR_IPV4_OPT_LEN;
	return 0;
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

/* Translates a packet to the frontend svc (the forward direction), on the node the
 * client's packet enters the cluster through: from-container for pods, from-netdev
 * (from_nic) for NodePort and external IPs.
 *   conntrack CT_SERVICE entry (client -> frontend) live, its backend still in
 *   lb_backends (whatever its state)        -> that backend (TRACE_CT_ESTABLISHED);
 *   otherwise                               -> lb_select(): a new flow (TRACE_CT_NEW),
 *                                              DROP_NO_SERVICE_BACKEND without one;
 *   a pod's new flow to itself (hairpin)    -> source LB_LOOPBACK (CT_F_LOOPBACK);
 *   a new flow from a NIC to a backend that is no pod of this node gets direct server
 *   return (lb_nodeport_dsr(): CT_F_DSR, the client's source is kept) or SNAT: source
 *   = this node's IP and a port of [lb_snat_port_min, lb_snat_port_max] (snat_alloc);
 *   such a flow's packet that will not fit the way to the backend is left untouched,
 *   fwd->frag_mtu says the MTU to answer (lb_remote_frag_mtu());
 * then the packet is rewritten (nat4_rewrite) and the summary carries the translated
 * tuple. A new flow writes its CT_SERVICE entry and its reply entry (lb_reply_write;
 * none for DSR: the replies do not come back here); a live one refreshes both, the
 * reply entry only when the service entry changed (ct_refresh), which is at most once
 * a second per flow. fwd (from_nic only) tells lb_from_netdev() how to go on. */
static __always_inline enum drop_reason lb_service_xlate(struct __sk_buff *skb, struct parsed *p,
							 struct pkt_summary *sum,
							 const struct lb_service *svc, int from_nic,
							 struct lb_fwd *fwd)
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
	__u16 flags = 0;
	enum drop_reason reason;

	ct = ct_lookup(&key);
	if (ct && ct_live(ct, now, proto, tcp_flags)) {
		backend_id = ct->backend_id;
		be = lb_backend_lookup(backend_id);
	}
	if (be && ct) {
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

		state = TRACE_CT_NEW;
		be = lb_select(svc, sum, &backend_id);
		if (!be)
			return DROP_NO_SERVICE_BACKEND;
		e.flags = pkt_flags;
		e.lifetime = ct_lifetime(proto, pkt_flags, now);
		e.backend_id = backend_id;
		e.rev_nat_id = svc->rev_nat_id;
		rkey.saddr = be->addr;
		rkey.sport = be->port;
		if (!from_nic && be->addr == sum->saddr) {
			/* Hairpin: the pod would get a packet from its own address, which
			 * its stack drops as a martian. */
			e.flags |= CT_F_LOOPBACK;
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
			} else if (remote) {
				struct ct_entry r;

				e.flags |= CT_F_SNAT;
				saddr = config_node_ip();
				r = e;
				r.nat_addr = sum->saddr;
				r.nat_port = sum->sport;
				rkey.daddr = saddr;
				reason = snat_alloc(&rkey, &r,
						    lb_hash(sum->saddr, be->addr, sum->sport, be->port, proto), now);
				if (reason != DROP_NONE)
					return reason;
				sport = rkey.dport;
				e.nat_addr = saddr;
				e.nat_port = sport;
				action = TRACE_LB_DNAT_SNAT;
			}
		}
		if (!(e.flags & (CT_F_SNAT | CT_F_DSR))) {
			rkey.daddr = saddr;
			rkey.dport = sport;
			if (lb_reply_write(&rkey, &e, sum->saddr, sum->sport, BPF_ANY) < 0)
				return DROP_CT_CREATE_FAILED;
		}
		if (ct_update(&key, &e) < 0)
			return DROP_CT_CREATE_FAILED;
		flags = e.flags;
	}

	if (from_nic && (flags & (CT_F_SNAT | CT_F_DSR))) {
		if (flags & CT_F_DSR) {
			action = TRACE_LB_DNAT_DSR;
			fwd->dsr_opt = dsr_needs_opt(proto, tcp_flags);
			fwd->svc.addr = sum->daddr;
			fwd->svc.port = sum->dport;
		}
		fwd->frag_mtu = lb_remote_frag_mtu(skb, p, fwd, be, sport);
		if (fwd->frag_mtu) {
			lb_trace_xlate(sum, TRACE_LB_FRAG_NEEDED, state, backend_id, saddr, sport,
				       be->addr, be->port);
			return DROP_NONE;
		}
	}
	reason = nat4_rewrite(skb, p, saddr, sport, be->addr, be->port);
	if (reason != DROP_NONE)
		return reason;
	lb_trace_xlate(sum, action, state, backend_id, saddr, sport, be->addr, be->port);
	return DROP_NONE;
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
static __always_inline enum drop_reason lb_reply_xlate(struct __sk_buff *skb, struct parsed *p,
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
static __always_inline struct ct_entry *lb_reply_lookup(struct __sk_buff *skb, const struct parsed *p,
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
static __always_inline enum drop_reason lb_rev_nat_reply(struct __sk_buff *skb, struct parsed *p,
							 struct pkt_summary *sum, int *result)
{
	struct ct_entry *e = lb_reply_lookup(skb, p, sum, 0);

	if (!e)
		return DROP_NONE;
	return lb_reply_xlate(skb, p, sum, e, 0, result);
}

/* ICMP errors (RFC 792) about a translated flow: destination unreachable (fragmentation
 * needed included: PMTUD), time exceeded, parameter problem. They quote the IPv4
 * header and the first bytes of the packet that caused them, as it left this node:
 * translated. */
static __always_inline int icmp_is_error(__u8 type)
{
	return type == ICMP_DEST_UNREACH || type == ICMP_TIME_EXCEEDED || type == ICMP_PARAMETERPROB;
}

#define PP_ICMP_HDR_LEN 8 /* type, code, checksum, 4 bytes (unused, or the next-hop MTU) */

/* Translates an ICMP error about a flow this node translated back to what its client
 * sent and expects (the error travels towards the client). The quoted packet (quoted
 * IPv4 header without options, TCP or UDP, first fragment) reversed is the flow's
 * reply key: in conntrack, or in the snat map when its source is this node (SNAT).
 *   quoted destination (the backend)      -> the frontend (lb_frontend_of());
 *   SNAT: quoted source (this node)       -> the client; outer destination -> the client;
 *   outer source = the backend (it reports
 *   the error itself: port unreachable)   -> the frontend's address;
 * the quoted IPv4 header checksum, the quoted TCP/UDP checksum when it was quoted
 * (as Linux NAT does; a UDP checksum of 0 stays 0), the ICMP checksum and the outer
 * IPv4 checksum are updated by hand (none of them is offloaded; every change comes
 * with its compensating checksum change, so a CHECKSUM_COMPLETE skb->csum stays
 * right). Errors about the replies (towards a backend) are not translated. An error
 * matching no live flow is left untouched. *result as lb_reply_xlate() sets it; for
 * SNAT flows LB_REPLY_NODEPORT. */
static __always_inline enum drop_reason lb_icmp_error_xlate(struct __sk_buff *skb, struct parsed *p,
							    struct pkt_summary *sum, int *result)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct ct_key key = { .dir = CT_REPLY };
	struct dsr_service fe;
	__be32 o_saddr, o_daddr, i_saddr, i_daddr;
	__be16 i_sport, i_dport, *ports, *l4sum;
	__u32 off = p->l4_off, l3diff, l4diff;
	struct icmp_head *ih;
	struct iphdr *in;
	struct ct_entry *e;
	int from_snat;

	if (off > 14 + 60)
		return DROP_NONE;
	ih = data + off;
	in = data + off + PP_ICMP_HDR_LEN;
	if ((void *)(in + 1) > data_end || *(__u8 *)in != 0x45 ||
	    (in->protocol != IPPROTO_TCP && in->protocol != IPPROTO_UDP) ||
	    (in->frag_off & bpf_htons(PP_IP_OFFSET)))
		return DROP_NONE;
	ports = (void *)(in + 1);
	if ((void *)(ports + 2) > data_end)
		return DROP_NONE;
	key.saddr = in->daddr;
	key.daddr = in->saddr;
	key.sport = ports[1];
	key.dport = ports[0];
	key.proto = in->protocol;
	from_snat = in->saddr == config_node_ip();
	if (from_snat) {
		e = bpf_map_lookup_elem(&snat, &key);
		barrier_var(e);
	} else {
		e = ct_lookup(&key);
	}
	if (!e || (__s32)(e->lifetime - ct_now()) <= 0)
		return DROP_NONE;
	if (!lb_frontend_of(e, &fe))
		return DROP_NONE;

	/* What each address becomes. */
	i_saddr = from_snat ? e->nat_addr : in->saddr;
	i_sport = from_snat ? e->nat_port : ports[0];
	i_daddr = fe.addr;
	i_dport = fe.port;
	o_saddr = p->ip->saddr == in->daddr ? fe.addr : p->ip->saddr;
	o_daddr = from_snat ? e->nat_addr : p->ip->daddr;

	/* The quoted packet: IPv4 header, ports, and its L4 checksum when quoted. */
	l3diff = csum_add(csum_diff4(in->saddr, i_saddr), csum_diff4(in->daddr, i_daddr));
	l4diff = csum_add(csum_diff2(ports[0], i_sport), csum_diff2(ports[1], i_dport));
	l4sum = in->protocol == IPPROTO_TCP ? (void *)(ports + 8) : (void *)(ports + 3);
	in->saddr = i_saddr;
	in->daddr = i_daddr;
	csum_apply_diff(&in->check, l3diff);
	ports[0] = i_sport;
	ports[1] = i_dport;
	if ((void *)(l4sum + 1) <= data_end && (*l4sum || in->protocol == IPPROTO_TCP)) {
		__be16 old = *l4sum;

		csum_apply_diff(l4sum, csum_add(l3diff, l4diff));
		if (!*l4sum && in->protocol == IPPROTO_UDP)
			*l4sum = 0xffff;
		l4diff = csum_add(l4diff, csum_diff2(old, *l4sum));
	}
	/* The quoted IPv4 header still sums to the same: only the port (and quoted
	 * checksum) changes reach the ICMP checksum. */
	csum_apply_diff(&ih->checksum, l4diff);

	csum_apply_diff(&p->ip->check, csum_add(csum_diff4(p->ip->saddr, o_saddr), csum_diff4(p->ip->daddr, o_daddr)));
	p->ip->saddr = o_saddr;
	p->ip->daddr = o_daddr;

	*result = (from_snat || (e->flags & CT_F_NODEPORT)) ? LB_REPLY_NODEPORT : LB_REPLY_REVNAT;
	lb_trace_xlate(sum, from_snat ? TRACE_LB_REV_SNAT : TRACE_LB_REVNAT, TRACE_CT_REPLY, e->backend_id,
		       o_saddr, 0, o_daddr, 0);
	return DROP_NONE;
}

/* Whether the packet is an ICMP error the load balancer looks at. */
static __always_inline int lb_icmp_error(const struct parsed *p, const struct pkt_summary *sum)
{
	return sum->ip_proto == IPPROTO_ICMP && icmp_is_error(sum->icmp_type) &&
	       !(p->ip->frag_off & bpf_htons(PP_IP_OFFSET));
}

/* The identity a load-balanced packet carries into the tunnel: the host's when this
 * node is its source (SNAT), else the ipcache's for the source, world for a client
 * outside the cluster (DSR keeps the client as source). */
static __always_inline __u32 lb_source_identity(__be32 saddr)
{
	const struct ipcache_info *info;

	if (saddr == config_node_ip())
		return IDENTITY_HOST;
	info = ipcache_lookup(saddr);
	return info && info->sec_identity ? info->sec_identity : IDENTITY_WORLD;
}

/* Forwards a packet the load balancer translated for a flow that entered through a
 * NIC (NodePort requests, their replies), never through the stack: the stack would
 * take a packet from this node's own address arriving on a device for a martian.
 *   a pod of this node                    -> endpoint_redirect() (redirect_peer);
 *   tunnel mode, a remote tunnel endpoint -> tunnel_encap() (lb_source_identity()),
 *                                            with the Geneve DSR option for a DSR
 *                                            packet that carries it;
 *   such a packet with native routing     -> the IPv4 DSR option inserted, then
 *                                            fib_forward() with the route
 *                                            lb_remote_frag_mtu() looked up;
 *   anything else                         -> fib_redirect() (native routing, world).
 * fwd is lb_service_xlate()'s word on a request, NULL for replies. */
static __always_inline int lb_forward(struct __sk_buff *skb, struct parsed *p,
				      struct pkt_summary *sum, enum obs_point point,
				      int pass_ret, const struct lb_fwd *fwd)
{
	const struct endpoint_info *ep = endpoint_lookup(sum->daddr);
	int dsr_opt = fwd && fwd->dsr_opt;

	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return endpoint_redirect(skb, p, ep, sum, point, pass_ret, NULL);
	if (tunnel_enabled()) {
		const struct ipcache_info *info = ipcache_lookup(sum->daddr);

		if (info && info->tunnel_endpoint && info->tunnel_endpoint != config_node_ip())
			return tunnel_encap(skb, p, sum, point, lb_source_identity(sum->saddr),
					    dsr_opt ? &fwd->svc : NULL, pass_ret);
	} else if (dsr_opt) {
		enum drop_reason reason = dsr_opt_insert(skb, p, &fwd->svc);

		if (reason != DROP_NONE) {
			trace_drop(skb, point, reason, sum);
			return PP_TCX_DROP;
		}
		return fib_forward(skb, p, sum, point, pass_ret, &fwd->fib, fwd->fib_ret);
	}
	return fib_redirect(skb, p, sum, point, pass_ret);
}

/* What a load-balancer hook decided: LB_CONTINUE lets the program go on with the
 * (possibly translated) packet; LB_DONE means the hook traced and returned the
 * verdict in *verdict. */
enum lb_hook_result {
	LB_CONTINUE = 0,
	LB_DONE     = 1,
};

/* from-container (CONFIG.lb_enabled): a pod's packet to a frontend of any kind is
 * translated (no SNAT: the client is a pod of this node, its replies come back
 * here); a local backend's reply, or an ICMP error it sends about a flow, is
 * translated back, and when its flow came in through a NIC (NodePort) forwarded by
 * lb_forward(). Everything else continues untouched. */
static __always_inline int lb_from_container(struct __sk_buff *skb, struct parsed *p,
					     struct pkt_summary *sum, int pass_ret, int *verdict)
{
	const enum obs_point point = OBS_FROM_CONTAINER;
	const struct lb_service *svc;
	enum drop_reason reason;
	int result = LB_REPLY_NONE;

	if (lb_icmp_error(p, sum))
		reason = lb_icmp_error_xlate(skb, p, sum, &result);
	else if (!lb_l4(p, sum))
		return LB_CONTINUE;
	else if ((svc = lb_service_lookup(sum)))
		reason = lb_service_xlate(skb, p, sum, svc, 0, NULL);
	else
		reason = lb_rev_nat_reply(skb, p, sum, &result);
	if (reason != DROP_NONE) {
		trace_drop(skb, point, reason, sum);
		*verdict = PP_TCX_DROP;
		return LB_DONE;
	}
	if (result == LB_REPLY_NODEPORT) {
		*verdict = lb_forward(skb, p, sum, point, pass_ret, NULL);
		return LB_DONE;
	}
	return LB_CONTINUE;
}

/* Packets reaching this node from outside, before delivery (from-netdev, and tunnel
 * delivery after decapsulation):
 *   an ICMP error about a translated flow      -> lb_icmp_error_xlate(); SNATed and
 *                                                 NodePort flows' errors are forwarded
 *                                                 to the client by lb_forward();
 *   to this node's IP, a live snat reply entry -> reverse SNAT and reverse NAT, then
 *                                                 lb_forward() to the client;
 *   a live conntrack reply entry               -> reverse NAT (a remote backend
 *                                                 answering a client pod of this
 *                                                 node), then delivery continues. */
static __always_inline int lb_ingress_reply(struct __sk_buff *skb, struct parsed *p,
					    struct pkt_summary *sum, enum obs_point point,
					    int pass_ret, int *verdict)
{
	enum drop_reason reason;
	struct ct_entry *e;
	int result = LB_REPLY_NONE;

	if (lb_icmp_error(p, sum)) {
		reason = lb_icmp_error_xlate(skb, p, sum, &result);
		if (reason != DROP_NONE)
			goto drop;
		if (result == LB_REPLY_NODEPORT) {
			*verdict = lb_forward(skb, p, sum, point, pass_ret, NULL);
			return LB_DONE;
		}
		return LB_CONTINUE;
	}
	if (!lb_l4(p, sum))
		return LB_CONTINUE;
	if (sum->daddr == config_node_ip()) {
		e = lb_reply_lookup(skb, p, sum, 1);
		if (e) {
			reason = lb_reply_xlate(skb, p, sum, e, 1, &result);
			if (reason != DROP_NONE)
				goto drop;
			if (result != LB_REPLY_NONE) {
				*verdict = lb_forward(skb, p, sum, point, pass_ret, NULL);
				return LB_DONE;
			}
		}
		return LB_CONTINUE;
	}
	reason = lb_rev_nat_reply(skb, p, sum, &result);
	if (reason != DROP_NONE)
		goto drop;
	return LB_CONTINUE;

drop:
	trace_drop(skb, point, reason, sum);
	*verdict = PP_TCX_DROP;
	return LB_DONE;
}

/* Whether this node takes part in DSR: bpf-lb-mode dsr or hybrid. */
static __always_inline int lb_dsr_enabled(void)
{
	return CONFIG.lb_enabled && CONFIG.lb_mode != LB_MODE_SNAT;
}

/* On the backend's node: a request that carried a DSR option for service fe. The
 * flow is recorded (dsr_learn()) and the summary says so (TRACE_LB_DSR_LEARNED, the
 * service in lb.orig_daddr/orig_dport); delivery continues (an IPv4 option is removed
 * first by the caller: dsr_opt_strip()). */
static __always_inline enum drop_reason lb_dsr_learn(struct __sk_buff *skb, const struct parsed *p,
						     struct pkt_summary *sum,
						     const struct dsr_service *fe)
{
	enum drop_reason reason;

	reason = dsr_learn(sum, fe, ct_pkt_flags(sum->ip_proto, lb_tcp_flags(skb, p)));
	if (reason != DROP_NONE)
		return reason;
	sum->lb.action = TRACE_LB_DSR_LEARNED;
	sum->lb.ct = TRACE_CT_NEW;
	sum->lb.orig_saddr = sum->saddr;
	sum->lb.orig_sport = sum->sport;
	sum->lb.orig_daddr = fe->addr;
	sum->lb.orig_dport = fe->port;
	return DROP_NONE;
}

/* from-netdev (CONFIG.lb_enabled), before delivery. Each kind of packet pays only its
 * own lookups; *epp is the destination's endpoint for the caller (NULL: none), so it
 * needs no lookup of its own when the packet continues:
 *   TCP/UDP to this node's IP  -> a NodePort frontend: translated (lb_service_xlate(),
 *                                 SNAT or DSR to remote backends), forwarded by
 *                                 lb_forward(), or answered with ICMP frag-needed
 *                                 (dsr_icmp_frag_needed()) when it will not fit;
 *                                 else a live snat reply: reverse SNAT and reverse NAT,
 *                                 forwarded to the client by lb_forward();
 *   TCP/UDP to a pod here      -> a DSR request with the IPv4 option (DSR modes):
 *                                 recorded (lb_dsr_learn()), the option removed
 *                                 (dsr_opt_strip()); else a remote backend's
 *                                 reply to a client pod here is translated back
 *                                 (lb_rev_nat_reply()); then delivery continues;
 *   TCP/UDP to anything else   -> an external-IP (or NodePort on another node IP)
 *                                 frontend: translated and forwarded as above;
 *   an ICMP error              -> lb_icmp_error_xlate() (PMTUD through a service).
 * ClusterIP frontends are not reachable from outside (Cilium's
 * bpf-lb-external-clusterip=false): such packets continue untouched. */
static __always_inline int lb_from_netdev(struct __sk_buff *skb, struct parsed *p,
					  struct pkt_summary *sum, int pass_ret, int *verdict,
					  const struct endpoint_info **epp)
{
	const enum obs_point point = OBS_FROM_NETDEV;
	const struct endpoint_info *ep = NULL;
	const struct lb_service *svc;
	enum drop_reason reason;
	int result = LB_REPLY_NONE;
	int to_node;

	if (lb_icmp_error(p, sum)) {
		if (lb_ingress_reply(skb, p, sum, point, pass_ret, verdict) == LB_DONE)
			return LB_DONE;
		*epp = endpoint_lookup(sum->daddr);
		return LB_CONTINUE;
	}
	if (!lb_l4(p, sum)) {
		*epp = endpoint_lookup(sum->daddr);
		return LB_CONTINUE;
	}
	to_node = sum->daddr == config_node_ip();
	if (!to_node) {
		ep = endpoint_lookup(sum->daddr);
		*epp = ep;
		if (ep && !(ep->flags & ENDPOINT_F_HOST)) {
			struct dsr_service fe;

			if (lb_dsr_enabled() && p->ip->ihl > 5 && dsr_opt_read(skb, p, &fe)) {
				reason = lb_dsr_learn(skb, p, sum, &fe);
				if (reason == DROP_NONE)
					reason = dsr_opt_strip(skb, p);
			} else {
				reason = lb_rev_nat_reply(skb, p, sum, &result);
			}
			if (reason != DROP_NONE)
				goto drop;
			return LB_CONTINUE;
		}
	}
	svc = lb_service_lookup(sum);
	if (svc && (svc->flags & (SVC_F_NODEPORT | SVC_F_EXTERNAL))) {
		struct lb_fwd fwd = {};

		reason = lb_service_xlate(skb, p, sum, svc, 1, &fwd);
		if (reason != DROP_NONE)
			goto drop;
		if (fwd.frag_mtu)
			*verdict = dsr_icmp_frag_needed(skb, p, sum, point, fwd.frag_mtu);
		else
			*verdict = lb_forward(skb, p, sum, point, pass_ret, &fwd);
		return LB_DONE;
	}
	if (to_node) {
		if (lb_ingress_reply(skb, p, sum, point, pass_ret, verdict) == LB_DONE)
			return LB_DONE;
		*epp = endpoint_lookup(sum->daddr);
	}
	return LB_CONTINUE;

drop:
	trace_drop(skb, point, reason, sum);
	*verdict = PP_TCX_DROP;
	return LB_DONE;
}

/* Puts the load balancer's enums into BTF for bpf2go. */
const struct {
	enum lb_service_flags lb_service_flags;
	enum lb_scope lb_scope;
	enum lb_backend_state lb_backend_state;
	enum ct_dir ct_dir;
	enum ct_flags ct_flags;
} pp_btf_anchor_lb = {};

#endif /* PODPATH_LB_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Connection tracking of load-balanced flows: the ct_tcp and ct_any LRU maps, entry lifetimes and TCP state. */
#ifndef PODPATH_CONNTRACK_H
#define PODPATH_CONNTRACK_H

#include "common.h"
#include "config.h"
#include "dp_gen.h"

/* Default sizes (Cilium's bpf-ct-global-tcp-max and -any-max); the loader sets the
 * configured ones (MapSpec.MaxEntries). LRU maps are preallocated. */
#ifndef CT_MAP_SIZE_TCP
#define CT_MAP_SIZE_TCP 524288
#endif
#ifndef CT_MAP_SIZE_ANY
#define CT_MAP_SIZE_ANY 262144
#endif

#define NSEC_PER_SEC 1000000000ULL

/* TCP flags: byte 13 of the TCP header. */
#define PP_TCP_FIN 0x01
#define PP_TCP_SYN 0x02
#define PP_TCP_RST 0x04
#define PP_TCP_ACK 0x10

/* Which of a flow's entries a key names. A flow translated by this node has two:
 *   CT_SERVICE  the flow as the client sends it (client -> frontend): its backend
 *               (and, for NodePort SNAT, the source it was SNATed to);
 *   CT_REPLY    the backend's replies as they reach this node (backend -> client):
 *               the frontend to restore as their source.
 * An SNATed flow keeps its reply entry in the snat map instead (nat.h), keyed by the
 * translated reply (backend -> this node's SNAT address and port). 0 is no
 * direction, so a zeroed key matches nothing. */
enum ct_dir {
	CT_SERVICE = 1,
	CT_REPLY   = 2,
	/* Masquerading (masq.h): a pod's flow leaving the cluster as the pod sends it
	 * (pod -> remote), in the snat map: nat_addr:nat_port is the node address and
	 * port it goes out with. Its replies' entry is a CT_REPLY one in the snat map,
	 * keyed remote -> node address:port, with CT_F_MASQ. */
	CT_EGRESS  = 3,
};

enum ct_flags {
	CT_F_SYN_SEEN    = 1 << 0, /* a SYN was seen */
	CT_F_ESTABLISHED = 1 << 1, /* a TCP packet without SYN was seen (Cilium's seen_non_syn) */
	CT_F_CLOSING     = 1 << 2, /* a FIN or RST was seen */
	CT_F_NODEPORT    = 1 << 3, /* entered through a NIC (NodePort, external IP): replies are
				    * forwarded by BPF, never handed to the stack */
	CT_F_SNAT        = 1 << 4, /* the source was rewritten to nat_addr:nat_port */
	CT_F_DSR         = 1 << 5, /* direct server return: on the node that balanced the flow
				    * (CT_SERVICE) there is no reply entry, replies never come back;
				    * on the backend's node (CT_REPLY, learned from the DSR option)
				    * nat_addr:nat_port is the service the replies come from */
	CT_F_LOOPBACK    = 1 << 6, /* hairpin: a pod reached itself through a service; the
				    * source became LB_LOOPBACK (CT_SERVICE: nat_addr:nat_port),
				    * the reply entry (in conntrack) restores the client */
	CT_F_MASQ        = 1 << 7, /* masquerading (masq.h): nat_addr:nat_port is, in the forward
				    * entry (CT_EGRESS), the node address and port the pod's flow
				    * leaves with; in the reply entry (CT_REPLY), the pod's own */
};

/* A 5-tuple as on the wire, plus the direction. */
struct ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;
	__be16 dport;
	__u8   proto;
	__u8   dir;        /* enum ct_dir */
	__u16  _pad;
};

struct ct_entry {
	__u32  lifetime;   /* expiry, in seconds of CLOCK_MONOTONIC (ct_now()) */
	__u16  flags;      /* enum ct_flags */
	__u16  _pad;
	__u32  backend_id; /* lb_backends */
	__u32  rev_nat_id; /* lb_rev_nat: the frontend replies get as their source */
	/* CT_SERVICE with CT_F_SNAT: the source address and port of the translated flow.
	 * Reply entries of the snat map: the client, restored as the destination.
	 * CT_REPLY with CT_F_DSR: the service, restored as the source.
	 * CT_F_LOOPBACK: as CT_F_SNAT, the reply entry living in conntrack. */
	__be32 nat_addr;
	__be16 nat_port;
	__u16  _pad2;
	/* CT_SERVICE entries of NodePort flows (the per-packet budget, dp_gen.h): the
	 * backend's address and port while be_gen == dp_gen[DP_GEN_BACKEND] (no
	 * lb_backends lookup), and the route to it while fib.gen == dp_gen[DP_GEN_FIB]
	 * (no bpf_fib_lookup). 0 generations: nothing cached (every other entry; reply
	 * entries are copies with both cleared, and the snat reply entries of NodePort
	 * flows get their route to the client filled in by XDP, bpf_xdp.c). */
	__u32  be_gen;
	__be32 be_addr;
	__be16 be_port;
	__u8   be_proto;   /* be_addr.._state have the layout of struct lb_backend (lb_maps.h): */
	__u8   be_state;   /* the load balancer points at them as at an lb_backends value */
	struct fib_cache fib;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAP_SIZE_TCP);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ct_tcp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, CT_MAP_SIZE_ANY);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ct_any SEC(".maps");

/* The current time in the unit of ct_entry.lifetime: seconds of CLOCK_MONOTONIC, read
 * coarsely (the last tick's time: bpf_ktime_get_ns() reads the clocksource, which
 * cost ~30 ns a packet here). */
static __always_inline __u32 ct_now(void)
{
	return bpf_ktime_get_coarse_ns() / NSEC_PER_SEC;
}

/* ct_tcp for TCP, ct_any for everything else. barrier_var() (libbpf) keeps clang from
 * merging the two calls into one whose map is chosen at run time: the verifier then
 * sees two maps at one call site and stops inlining the lookup (the generic helper
 * and an extra call level cost ~10 ns a packet). Every choice between two maps in
 * the load balancer (lb.h, lb_icmp.h) does the same. */
static __always_inline struct ct_entry *ct_lookup(const struct ct_key *key)
{
	struct ct_entry *e;

	if (key->proto == IPPROTO_TCP)
		return bpf_map_lookup_elem(&ct_tcp, key);
	e = bpf_map_lookup_elem(&ct_any, key);
	barrier_var(e);
	return e;
}

static __always_inline long ct_update(const struct ct_key *key, const struct ct_entry *e)
{
	long ret;

	if (key->proto == IPPROTO_TCP)
		return bpf_map_update_elem(&ct_tcp, key, e, BPF_ANY);
	ret = bpf_map_update_elem(&ct_any, key, e, BPF_ANY);
	barrier_var(ret);
	return ret;
}

/* The state flags one packet contributes: for TCP, SYN -> CT_F_SYN_SEEN, anything
 * without SYN -> CT_F_ESTABLISHED, FIN or RST -> CT_F_CLOSING. */
static __always_inline __u16 ct_pkt_flags(__u8 proto, __u8 tcp_flags)
{
	__u16 f = 0;

	if (proto != IPPROTO_TCP)
		return 0;
	f |= (tcp_flags & PP_TCP_SYN) ? CT_F_SYN_SEEN : CT_F_ESTABLISHED;
	if (tcp_flags & (PP_TCP_FIN | PP_TCP_RST))
		f |= CT_F_CLOSING;
	return f;
}

/* When an entry with flags expires if refreshed at now (Cilium's timeouts):
 *   UDP and the rest       ct_timeout_any          (60 s)
 *   TCP closing            ct_timeout_tcp_closing  (10 s)
 *   TCP established        ct_timeout_tcp          (21600 s)
 *   TCP with only SYNs     ct_timeout_tcp_syn      (60 s). */
static __always_inline __u32 ct_lifetime(__u8 proto, __u16 flags, __u32 now)
{
	if (proto != IPPROTO_TCP)
		return now + CONFIG.ct_timeout_any;
	if (flags & CT_F_CLOSING)
		return now + CONFIG.ct_timeout_tcp_closing;
	if (flags & CT_F_ESTABLISHED)
		return now + CONFIG.ct_timeout_tcp;
	return now + CONFIG.ct_timeout_tcp_syn;
}

/* Whether an entry found by a lookup still stands for this packet's flow: not
 * expired, and not a closed TCP connection that a new SYN (without ACK) reopens on
 * the same tuple. An entry that does not is treated as missing (and overwritten). */
static __always_inline int ct_live(const struct ct_entry *e, __u32 now, __u8 proto, __u8 tcp_flags)
{
	if ((__s32)(e->lifetime - now) <= 0)
		return 0;
	if (proto == IPPROTO_TCP && (e->flags & CT_F_CLOSING) &&
	    (tcp_flags & (PP_TCP_SYN | PP_TCP_ACK)) == PP_TCP_SYN)
		return 0;
	return 1;
}

/* Folds a packet into a live entry: state flags and lifetime. Writes only when
 * something changes (the lifetime has a one-second grain), so the entry's cache line
 * stays clean at high packet rates. Returns 1 when it wrote. */
static __always_inline int ct_refresh(struct ct_entry *e, __u32 now, __u8 proto, __u16 pkt_flags)
{
	__u16 flags = e->flags | pkt_flags;
	__u32 lifetime = ct_lifetime(proto, flags, now);

	if (flags == e->flags && lifetime == e->lifetime)
		return 0;
	e->flags = flags;
	e->lifetime = lifetime;
	return 1;
}

#endif /* PODPATH_CONNTRACK_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* IPv4 fragment tracking for the load balancer (enable-ipv4-fragment-tracking): a first fragment's ports, kept for the later fragments of its datagram, which carry no L4 header. */
#ifndef PODPATH_LB_FRAG_H
#define PODPATH_LB_FRAG_H

#include "common.h"
#include "config.h"
#include "drop.h"
#include "ipv4.h"
#include "parse.h"
#include "trace.h"

/* Datagrams being fragmented at once; Cilium's bpf-fragments-map-max default. */
#ifndef LB_FRAG_MAP_SIZE
#define LB_FRAG_MAP_SIZE 8192
#endif

/* A datagram, as IPv4 names it (RFC 791: source, destination, protocol and
 * identification), in the order Cilium keys its fragment map; the packet as it
 * reaches the hook, before any translation. */
struct lb_frag_key {
	__be32 daddr;
	__be32 saddr;
	__be16 id;
	__u8   proto;
	__u8   pad;
};

/* The datagram's L4 ports, from its first fragment, in network byte order. */
struct lb_frag_ports {
	__be16 sport;
	__be16 dport;
};

/* LRU: a datagram whose last fragment never came is evicted by newer ones; nothing
 * tells BPF when a datagram is complete, so entries are never deleted by hand. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_frag_key);
	__type(value, struct lb_frag_ports);
	__uint(max_entries, LB_FRAG_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_frag SEC(".maps");

/* Whether the packet is a fragment after the first (offset not 0): no L4 header. */
static __always_inline int ipv4_later_fragment(const struct iphdr *ip)
{
	return ip->frag_off & bpf_htons(PP_IP_OFFSET);
}

/* Fragment tracking at a load-balancer hook, before any translation: a first
 * fragment (MF set, offset 0) records its ports; a later fragment gets them
 * (sum->sport/dport), so the load balancer's lookups, keyed by ports, find the flow
 * its first fragment opened and give it the same translation (lb_l4() lets it in,
 * nat4_rewrite() rewrites its addresses only). Unfragmented packets, other protocols,
 * and everything with enable-ipv4-fragment-tracking off are left alone: later
 * fragments then keep ports 0 and the load balancer does not look at them. A second
 * call on the same later fragment finds its ports known and does nothing.
 * A later fragment whose first was not seen here: DROP_FRAG_NOT_FOUND, as Cilium
 * does (fragments are not buffered to wait for their first; a sender's kernel sends
 * the first one first). */
static __always_inline enum drop_reason lb_frag_track(const struct parsed *p, struct pkt_summary *sum)
{
	struct lb_frag_key key = {};
	struct lb_frag_ports *ports, nports;

	if (!CONFIG.lb_frag_tracking || (sum->ip_proto != IPPROTO_TCP && sum->ip_proto != IPPROTO_UDP))
		return DROP_NONE;
	if (!(p->ip->frag_off & bpf_htons(PP_IP_MF | PP_IP_OFFSET)))
		return DROP_NONE;
	key.daddr = sum->daddr;
	key.saddr = sum->saddr;
	key.id = sum->ip_id;
	key.proto = sum->ip_proto;
	if (!ipv4_later_fragment(p->ip)) {
		nports.sport = sum->sport;
		nports.dport = sum->dport;
		bpf_map_update_elem(&lb_frag, &key, &nports, BPF_ANY);
		return DROP_NONE;
	}
	if (sum->sport || sum->dport)
		return DROP_NONE;
	ports = bpf_map_lookup_elem(&lb_frag, &key);
	if (!ports)
		return DROP_FRAG_NOT_FOUND;
	sum->sport = ports->sport;
	sum->dport = ports->dport;
	return DROP_NONE;
}

#endif /* PODPATH_LB_FRAG_H */

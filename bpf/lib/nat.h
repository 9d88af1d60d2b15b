/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Address and port translation of TCP/UDP packets, and the snat map with its source-port allocator. */
#ifndef PODPATH_NAT_H
#define PODPATH_NAT_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "csum.h"
#include "drop.h"
#include "parse.h"

/* Default size (Cilium's bpf-nat-global-max is 524288); the loader may override it. */
#ifndef SNAT_MAP_SIZE
#define SNAT_MAP_SIZE 131072
#endif
/* Source ports tried, one after the other, before a new SNAT flow is dropped. */
#ifndef SNAT_PORT_TRIES
#define SNAT_PORT_TRIES 32
#endif

/* Reply entries of SNATed flows: key = the reply as it reaches this node (backend ->
 * this node's SNAT address and port, dir CT_REPLY), value = a ct_entry whose
 * nat_addr:nat_port is the client to restore as destination and rev_nat_id the
 * frontend to restore as source. The forward half of the mapping (client -> the SNAT
 * port it got) lives in the flow's CT_SERVICE entry (ct_entry.nat_addr/nat_port), so
 * a packet of an established flow needs one lookup, not two. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_entry);
	__uint(max_entries, SNAT_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} snat SEC(".maps");

/* Re-derives the header pointers after a helper that may have moved the packet. */
static __always_inline enum drop_reason parse_refresh(struct __ctx_buff *skb, struct parsed *p)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct iphdr *ip = data + sizeof(struct ethhdr);

	if ((void *)(ip + 1) > data_end)
		return DROP_NAT_FAILED;
	p->eth = data;
	p->ip = ip;
	return DROP_NONE;
}

/* Rewrites the parsed TCP or UDP packet (header inside the packet: parse_ipv4()
 * checked) to saddr:sport -> daddr:dport, all as on the wire (a later fragment, which
 * has no L4 header, gets the addresses and the IPv4 checksum only):
 *   IPv4 addresses and header checksum: written here, the checksum updated
 *     incrementally by hand (RFC 1624), as ipv4_dec_ttl() does;
 *   ports: written here;
 *   L4 checksum: bpf_l4_csum_replace() twice, with precomputed differences: the
 *     addresses as a pseudo-header change (BPF_F_PSEUDO_HDR), the ports as a data
 *     change. The helper knows the skb's ip_summed: a CHECKSUM_PARTIAL packet (a pod's
 *     TCP with offload, GSO) gets only the pseudo-header part, a CHECKSUM_COMPLETE
 *     skb->csum is kept right. A UDP checksum of 0 (none) stays 0, a result of 0
 *     becomes 0xffff (BPF_F_MARK_MANGLED_0).
 * The helpers invalidate packet pointers: p is refreshed. */
static __always_inline enum drop_reason nat4_rewrite(struct __ctx_buff *skb, struct parsed *p,
						     __be32 saddr, __be16 sport,
						     __be32 daddr, __be16 dport)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct iphdr *ip = p->ip;
	__u32 l4_off = p->l4_off;
	__u32 addr_diff, port_diff, csum_off;
	__be16 *ports;
	__u64 flags = 0;
	/* writes: nat.ipv4.addrs nat.ipv4.checksum nat.l4.ports nat.l4.checksum */
	if (ip->frag_off & bpf_htons(PP_IP_OFFSET)) {
		/* A later fragment (lb_frag.h): no L4 header here. Its ports, and the L4
		 * checksum over the whole datagram with its pseudo-header, were rewritten
		 * in the first fragment; only the addresses are this fragment's.
		 * writes: frag.ipv4.addrs */
		addr_diff = csum_add(csum_diff4(ip->saddr, saddr), csum_diff4(ip->daddr, daddr));
		ip->saddr = saddr;
		ip->daddr = daddr;
		csum_apply_diff(&ip->check, addr_diff);
		return DROP_NONE;
	}
	if (l4_off > 14 + 60)
		return DROP_NAT_FAILED;
	ports = data + l4_off;
	if ((void *)(ports + 2) > data_end)
		return DROP_NAT_FAILED;
	addr_diff = csum_add(csum_diff4(ip->saddr, saddr), csum_diff4(ip->daddr, daddr));
	port_diff = csum_add(csum_diff2(ports[0], sport), csum_diff2(ports[1], dport));
	csum_off = l4_off + __builtin_offsetof(struct tcphdr, check);
	if (ip->protocol == IPPROTO_UDP) {
		csum_off = l4_off + __builtin_offsetof(struct udphdr, check);
		flags = BPF_F_MARK_MANGLED_0;
	}
	ip->saddr = saddr;
	ip->daddr = daddr;
	csum_apply_diff(&ip->check, addr_diff);
	ports[0] = sport;
	ports[1] = dport;
	if (ctx_l4_csum_replace(skb, csum_off, 0, addr_diff, flags | BPF_F_PSEUDO_HDR) < 0)
		return DROP_NAT_FAILED;
	if (ctx_l4_csum_replace(skb, csum_off, 0, port_diff, flags) < 0)
		return DROP_NAT_FAILED;
	return parse_refresh(skb, p);
}

/* Allocates the source port of a new translated flow and writes its reply entry e
 * into the snat map. rkey is the reply key with everything but dport set (remote ->
 * the translated address); the search starts at hash within [min, max] and tries
 * SNAT_PORT_TRIES ports in a row (a range smaller than that is tried round and round).
 * A port is free when no live reply entry holds it; an entry for the same flow
 * (nat_addr:nat_port equal: its forward half expired or was evicted first) is taken
 * over. On success rkey->dport is the port. NodePort SNAT (snat_alloc) and
 * masquerading (masq.h) share the map and so never hand out the same reply tuple. */
static __always_inline enum drop_reason snat_alloc_range(struct ct_key *rkey, const struct ct_entry *e,
							 __u32 hash, __u32 now, __u32 min, __u32 max)
{
	__u32 range, off;
	/* writes: nat.snat.sport */
	if (!min || max < min)
		return DROP_SNAT_NO_PORT;
	range = max - min + 1;
	off = hash % range;
	/* A real loop, not unrolled: the programs must stay within the 32K-instruction
	 * jump range of one BPF program (the verifier handles bounded loops). */
#pragma clang loop unroll(disable)
	for (int i = 0; i < SNAT_PORT_TRIES; i++) {
		struct ct_entry *old;
		__u64 how = BPF_NOEXIST;

		rkey->dport = bpf_htons(min + off);
		old = bpf_map_lookup_elem(&snat, rkey);
		if (old) {
			if ((__s32)(old->lifetime - now) > 0 &&
			    (old->nat_addr != e->nat_addr || old->nat_port != e->nat_port))
				goto next;
			how = BPF_ANY;
		}
		if (bpf_map_update_elem(&snat, rkey, e, how) == 0)
			return DROP_NONE;
next:
		off = off + 1 == range ? 0 : off + 1;
	}
	return DROP_SNAT_NO_PORT;
}

/* NodePort SNAT's port allocation: snat_alloc_range() over
 * [lb_snat_port_min, lb_snat_port_max]. */
static __always_inline enum drop_reason snat_alloc(struct ct_key *rkey, const struct ct_entry *e,
						   __u32 hash, __u32 now)
{
	return snat_alloc_range(rkey, e, hash, now, CONFIG.lb_snat_port_min, CONFIG.lb_snat_port_max);
}

#endif /* PODPATH_NAT_H */

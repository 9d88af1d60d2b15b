/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Forwarding by the kernel's FIB: bpf_fib_lookup() then bpf_redirect() or bpf_redirect_neigh(). */
#ifndef PODPATH_FIB_H
#define PODPATH_FIB_H

#include "common.h"
#include "dp_gen.h"
#include "eth.h"
#include "ipv4.h"
#include "parse.h"
#include "trace.h"

_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_BLACKHOLE == PASS_FIB_BLACKHOLE, "fib codes");
_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_UNREACHABLE == PASS_FIB_UNREACHABLE, "fib codes");
_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_PROHIBIT == PASS_FIB_PROHIBIT, "fib codes");
_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_NOT_FWDED == PASS_FIB_NOT_FWDED, "fib codes");
_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_FWD_DISABLED == PASS_FIB_FWD_DISABLED, "fib codes");
_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_UNSUPP_LWT == PASS_FIB_UNSUPP_LWT, "fib codes");
_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_FRAG_NEEDED == PASS_FIB_FRAG_NEEDED, "fib codes");
_Static_assert(__PASS_FIB_BASE + BPF_FIB_LKUP_RET_NO_SRC_ADDR == PASS_FIB_NO_SRC_ADDR, "fib codes");

/* Why a lookup that neither succeeded nor lacked only a neighbour goes to the stack. */
static __always_inline enum pass_reason fib_pass_reason(long ret)
{
	if (ret < 0)
		return PASS_FIB_ERROR;
	if (ret > BPF_FIB_LKUP_RET_NO_SRC_ADDR)
		return PASS_FIB_OTHER;
	return __PASS_FIB_BASE + ret;
}

/* The device a lookup is made from. It is never 0 at tcx ingress; in a
 * BPF_PROG_TEST_RUN without a context it is, and the program's own device (loopback
 * there) stands in. */
static __always_inline __u32 fib_iif(struct __ctx_buff *skb)
{
	return ctx_ingress_ifindex(skb) ?: ctx_ifindex(skb);
}

/* bpf_fib_lookup() of the parsed IPv4 packet as it will leave (saddr:sport ->
 * daddr:dport), from the device it arrived on (skb->ingress_ifindex, so forwarding
 * sysctls and policy rules apply). tot_len 0: the MTU is checked on the skb, which
 * lets GSO packets through; else tot_len is checked against the route's MTU, and
 * FRAG_NEEDED leaves that MTU in fib->mtu_result. Returns the lookup's result. */
static __always_inline long fib_lookup4(struct __ctx_buff *skb, const struct parsed *p,
					__be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
					__u16 tot_len, struct bpf_fib_lookup *fib)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = p->ip->protocol;
	fib->sport = sport;
	fib->dport = dport;
	fib->tot_len = tot_len;
	fib->ifindex = fib_iif(skb);
	fib->tos = p->ip->tos;
	fib->ipv4_src = saddr;
	fib->ipv4_dst = daddr;
	return bpf_fib_lookup(skb, fib, sizeof(*fib), 0);
}

/* fib_lookup4() with the packet's length for a flow whose conntrack entry keeps the
 * route in c: while c is current (dp_gen[DP_GEN_FIB] unchanged since it was stored,
 * same ingress device, the packet within the route's MTU) its egress device and MACs
 * are the result, SUCCESS, without bpf_fib_lookup() (~38% of an established NodePort
 * packet, docs/budget.md); only those three fields of fib are then set. Else the
 * lookup is made, and a SUCCESS is stored in c with the generation read before it (a
 * route that changes meanwhile bumps past it). Only SUCCESS is kept: NO_NEIGH and the
 * rest are asked again each time, as before. */
static __always_inline long fib_lookup4_cached(struct __ctx_buff *skb, const struct parsed *p,
					       __be32 saddr, __be32 daddr, __be16 sport, __be16 dport,
					       struct bpf_fib_lookup *fib, struct fib_cache *c)
{
	__u16 tot_len = bpf_ntohs(p->ip->tot_len);
	__u32 iif = fib_iif(skb);
	__u32 gen = dp_gen_now(DP_GEN_FIB);
	long ret;

	if (gen && c->gen == gen && c->iif == iif && tot_len <= c->mtu) {
		fib->ifindex = c->ifindex;
		__builtin_memcpy(fib->smac, c->smac, ETH_ALEN);
		__builtin_memcpy(fib->dmac, c->dmac, ETH_ALEN);
		return BPF_FIB_LKUP_RET_SUCCESS;
	}
	ret = fib_lookup4(skb, p, saddr, daddr, sport, dport, tot_len, fib);
	if (ret == BPF_FIB_LKUP_RET_SUCCESS && gen) {
		c->ifindex = fib->ifindex;
		c->iif = iif;
		/* On SUCCESS the kernel reports the MTU it checked tot_len against. */
		c->mtu = fib->mtu_result;
		__builtin_memcpy(c->smac, fib->smac, ETH_ALEN);
		__builtin_memcpy(c->dmac, fib->dmac, ETH_ALEN);
		/* The generation last (see lb.h's backend cache): readers on other CPUs
		 * trust the fields once it matches. */
		barrier();
		c->gen = gen;
	}
	return ret;
}

/* Forwards the parsed packet with the result ret of fib_lookup4() in fib:
 *   SUCCESS  -> MACs from the result, TTL - 1, bpf_redirect() to the egress device;
 *   NO_NEIGH -> TTL - 1, bpf_redirect_neigh() with the next hop: the neighbour
 *               subsystem resolves it and writes the Ethernet header;
 *   anything else (unreachable, frag needed, not forwarded, ...) and TTL <= 1 go to
 *   the stack (pass_ret), which generates the right ICMP, traced with the reason.
 * Returns the tcx verdict. */
static __always_inline int fib_forward(struct __ctx_buff *skb, const struct parsed *p,
				       const struct pkt_summary *sum, enum obs_point point,
				       int pass_ret, const struct bpf_fib_lookup *fib, long ret)
{
	struct bpf_redir_neigh nh = {};
	/* writes: forward.eth.macs */
	if (ret != BPF_FIB_LKUP_RET_SUCCESS && ret != BPF_FIB_LKUP_RET_NO_NEIGH) {
		trace_pass(skb, point, fib_pass_reason(ret), sum);
		return pass_ret;
	}
	if (sum->ttl <= 1) {
		trace_pass(skb, point, PASS_TTL_EXPIRED, sum);
		return pass_ret;
	}
	if (ret == BPF_FIB_LKUP_RET_SUCCESS)
		eth_set_macs(p->eth, fib->smac, fib->dmac);
	ipv4_dec_ttl(p->ip);
	if (ret == BPF_FIB_LKUP_RET_SUCCESS) {
		trace_redirect(skb, point, VERDICT_REDIRECT, fib->ifindex, sum);
		return ctx_redirect(skb, fib->ifindex, 0);
	}

	/* The lookup left the next hop (gateway, or the destination itself) in ipv4_dst;
	 * the union copy also carries an IPv6 next hop (RFC 5549 routes). */
	nh.nh_family = fib->family;
	__builtin_memcpy(nh.ipv6_nh, fib->ipv6_dst, sizeof(nh.ipv6_nh));
	trace_redirect(skb, point, VERDICT_REDIRECT_NEIGH, fib->ifindex, sum);
	return ctx_redirect_neigh(fib->ifindex, &nh, sizeof(nh), 0);
}

/* Forwards the parsed IPv4 packet as the kernel's FIB would: fib_lookup4() of its
 * summary's tuple, the MTU checked on the skb, then fib_forward(). */
static __always_inline int fib_redirect(struct __ctx_buff *skb, const struct parsed *p,
					const struct pkt_summary *sum, enum obs_point point,
					int pass_ret)
{
	struct bpf_fib_lookup fib;
	long ret = fib_lookup4(skb, p, sum->saddr, sum->daddr, sum->sport, sum->dport, 0, &fib);

	return fib_forward(skb, p, sum, point, pass_ret, &fib, ret);
}

#endif /* PODPATH_FIB_H */

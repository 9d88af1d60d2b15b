/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* ICMP errors about load-balanced flows translated back for the client (PMTUD through a service). */
#ifndef PODPATH_LB_ICMP_H
#define PODPATH_LB_ICMP_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "csum.h"
#include "drop.h"
#include "dsr.h"
#include "ipv4.h"
#include "lb.h"
#include "nat.h"
#include "parse.h"
#include "trace.h"

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
static __always_inline enum drop_reason lb_icmp_error_xlate(struct __ctx_buff *skb, struct parsed *p,
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
	/* writes: lbicmp.quote.ipv4.addrs lbicmp.quote.ipv4.checksum lbicmp.quote.l4.ports lbicmp.quote.l4.checksum */
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
	 * checksum) changes reach the ICMP checksum. writes: lbicmp.icmp.checksum */
	csum_apply_diff(&ih->checksum, l4diff);
	/* writes: lbicmp.outer.ipv4.addrs lbicmp.outer.ipv4.checksum */
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

#endif /* PODPATH_LB_ICMP_H */

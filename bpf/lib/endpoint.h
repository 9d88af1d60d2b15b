/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Local delivery: a packet for a pod of this node goes straight into the pod's namespace. */
#ifndef PODPATH_ENDPOINT_H
#define PODPATH_ENDPOINT_H

#include "common.h"
#include "eth.h"
#include "ipv4.h"
#include "maps.h"
#include "parse.h"
#include "policy.h"
#include "trace.h"

static __always_inline const struct endpoint_info *endpoint_lookup(__be32 ip4)
{
	struct endpoint_key key = { .ip4 = ip4 };

	return bpf_map_lookup_elem(&endpoints, &key);
}

/* Routes the parsed IPv4 packet to the local pod ep as a router would: source MAC
 * the pod's router (its host-side veth), destination MAC the pod, TTL - 1, then
 * bpf_redirect_peer() to the host-side veth, so the packet is received by the pod's
 * eth0 without a trip through the host stack. A TTL that would expire goes to the
 * stack (pass_ret), which answers with ICMP time exceeded. tun (NULL unless the packet
 * came out of a tunnel) goes into the trace record. Policy is the caller's: see
 * endpoint_redirect(). Returns the tcx verdict. */
static __always_inline int endpoint_deliver(struct __ctx_buff *skb, const struct parsed *p,
					    const struct endpoint_info *ep,
					    const struct pkt_summary *sum, enum obs_point point,
					    int pass_ret, const struct trace_tun *tun)
{
	__u32 ifindex = ep->ifindex;
	/* writes: deliver.eth.macs */
	if (sum->ttl <= 1) {
		trace_pass_tun(skb, point, PASS_TTL_EXPIRED, sum, tun);
		return pass_ret;
	}
	eth_set_macs(p->eth, ep->node_mac, ep->mac);
	ipv4_dec_ttl(p->ip);
	trace_redirect_tun(skb, point, VERDICT_REDIRECT_PEER, ifindex, sum, tun);
	return ctx_redirect_peer(ifindex, 0);
}

/* endpoint_deliver() after the pod's ingress policy, which runs after any service
 * translation: the source identity is the VNI's when the packet came out of a tunnel,
 * else the ipcache's. A denied packet is dropped here, before the pod's veth. */
static __always_inline int endpoint_redirect(struct __ctx_buff *skb, const struct parsed *p,
					     const struct endpoint_info *ep,
					     const struct pkt_summary *sum, enum obs_point point,
					     int pass_ret, const struct trace_tun *tun)
{
	enum drop_reason reason;

	reason = policy_check(skb, point, ep->ifindex, POLICY_INGRESS, tun ? tun->identity : 0, sum);
	if (reason != DROP_NONE) {
		trace_drop_tun(skb, point, reason, sum, tun);
		return CTX_ACT_DROP;
	}
	return endpoint_deliver(skb, p, ep, sum, point, pass_ret, tun);
}

#endif /* PODPATH_ENDPOINT_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Egress gateway: selected pods' traffic to given CIDRs leaves the cluster through a gateway node, SNATed there to its egress IP. */
#ifndef PODPATH_EGRESSGW_H
#define PODPATH_EGRESSGW_H

#include "common.h"
#include "config.h"
#include "drop.h"
#include "endpoint.h"
#include "fib.h"
#include "maps.h"
#include "parse.h"

/* The agent turns every CiliumEgressGatewayPolicy into entries of egress_gw_policy,
 * on every node alike: one per (selected pod, destination CIDR), the pod's address
 * as a fixed 32-bit prefix followed by the destination CIDR (prefixlen = 32 + the
 * CIDR's length), so a longest-prefix match finds the most specific destination of
 * that pod. An excluded CIDR is an entry of its own whose gateway is
 * EGW_EXCLUDED_CIDR (more specific than the destination CIDR it cuts a hole in). A
 * policy whose nodeSelector matches no node has the gateway EGW_NO_GATEWAY: its
 * traffic is dropped (DROP_NO_EGRESS_GATEWAY), as Cilium does, until a node matches. */

#ifndef EGW_POLICY_SIZE
#define EGW_POLICY_SIZE 16384
#endif

#define EGW_STATIC_PREFIX 32
#define EGW_NO_GATEWAY    0                /* 0.0.0.0: no node matches the nodeSelector */
#define EGW_EXCLUDED_CIDR bpf_htonl(1)     /* 0.0.0.1: inside an excludedCIDR: not the gateway's */

struct egw_key {
	__u32  prefixlen; /* 32 + the destination CIDR's length */
	__be32 saddr;     /* the selected pod */
	__be32 daddr;     /* the destination CIDR's network */
};

struct egw_value {
	__be32 gateway;   /* the gateway node's IP, EGW_NO_GATEWAY or EGW_EXCLUDED_CIDR */
	__be32 egress_ip; /* the address the gateway SNATs to (only the gateway reads it) */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct egw_key);
	__type(value, struct egw_value);
	__uint(max_entries, EGW_POLICY_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} egress_gw_policy SEC(".maps");

/* The policy entry of a pod's packet, NULL when no policy selects the flow or the
 * destination is inside one of its excludedCIDRs. */
static __always_inline const struct egw_value *egw_lookup(__be32 saddr, __be32 daddr)
{
	struct egw_key k = { .prefixlen = EGW_STATIC_PREFIX + 32, .saddr = saddr, .daddr = daddr };
	const struct egw_value *v;

	if (!CONFIG.egress_gw_enabled)
		return NULL;
	v = bpf_map_lookup_elem(&egress_gw_policy, &k);
	if (!v || v->gateway == EGW_EXCLUDED_CIDR)
		return NULL;
	return v;
}

/* Whether daddr is a member of the cluster (a pod of this node or another, a node):
 * such traffic never goes through a gateway, as in Cilium (a cluster identity). */
static __always_inline int egw_in_cluster(__be32 daddr)
{
	const struct ipcache_info *ic;

	if (daddr == config_node_ip() || endpoint_lookup(daddr) || node_lookup(daddr))
		return 1;
	ic = ipcache_lookup(daddr);
	return ic && ic->tunnel_endpoint;
}

/* From-container, for a packet whose destination is no endpoint of this node: the
 * gateway node it must be sent to (*gateway; 0 when the packet goes its usual way: no
 * policy, an excluded CIDR, a destination inside the cluster, or this node is the
 * gateway, whose to-netdev SNATs it), or DROP_NO_EGRESS_GATEWAY when the policy has
 * no gateway node. */
static __always_inline enum drop_reason egw_request(const struct pkt_summary *sum, __be32 *gateway)
{
	const struct egw_value *v;

	*gateway = 0;
	v = egw_lookup(sum->saddr, sum->daddr);
	if (!v || egw_in_cluster(sum->daddr))
		return DROP_NONE;
	if (v->gateway == EGW_NO_GATEWAY)
		return DROP_NO_EGRESS_GATEWAY;
	if (v->gateway != config_node_ip())
		*gateway = v->gateway;
	return DROP_NONE;
}

/* Whether this node is the gateway of a (pod, destination) flow that reached it from
 * the pod's node: its packets go to the stack, which routes them to the uplink, where
 * to-netdev SNATs them to the egress IP. */
static __always_inline int egw_at_gateway(const struct pkt_summary *sum)
{
	const struct egw_value *v = egw_lookup(sum->saddr, sum->daddr);

	return v && v->gateway == config_node_ip();
}

/* From-container, native routing (or a tunnel peer reached natively): the packet goes
 * to the gateway node as to a router: the FIB's way to the gateway's address (device
 * and next hop: the gateway itself on a shared segment), its IPv4 header as the pod
 * sent it (TTL - 1; the pod node never masquerades it, see masq_egress()). A gateway
 * behind a router is not reached this way (the router routes by the destination):
 * native routing needs the gateway on the pod node's segment. */
static __always_inline int egw_forward_native(struct __sk_buff *skb, const struct parsed *p,
					      const struct pkt_summary *sum, __be32 gateway, int pass_ret)
{
	struct bpf_fib_lookup fib;
	long ret = fib_lookup4(skb, p, sum->saddr, gateway, sum->sport, sum->dport, 0, &fib);

	return fib_forward(skb, p, sum, OBS_FROM_CONTAINER, pass_ret, &fib, ret);
}

#endif /* PODPATH_EGRESSGW_H */

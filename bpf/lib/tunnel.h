/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Tunnel constants and checks shared by encapsulation (encap.h) and decapsulation (decap.h). */
#ifndef PODPATH_TUNNEL_H
#define PODPATH_TUNNEL_H

#include "common.h"
#include "config.h"
#include "geneve.h"
#include "ipv4.h"
#include "maps.h"
#include "trace.h"

/* Outer IPv4 20 + UDP 8 + VXLAN or Geneve 8 + inner Ethernet 14. */
#define TUNNEL_OVERHEAD 50
/* IPIP: the outer IPv4 header only (IPv4 protocol 4, RFC 2003). */
#define IPIP_OVERHEAD   20
#define TUNNEL_TTL      64      /* outer TTL: the kernel's default ip_default_ttl */
/* Outer UDP source ports, as udp_flow_src_port() spreads flows over the kernel's
 * default ip_local_port_range (32768 60999): [32768, 60999). */
#define TUNNEL_SPORT_MIN 32768
#define TUNNEL_SPORT_MAX 60999

/* Cilium's reserved security identities. */
#define IDENTITY_HOST  1 /* this node */
#define IDENTITY_WORLD 2 /* outside the cluster */

_Static_assert(sizeof(struct genevehdr) == 8, "geneve header");
_Static_assert(sizeof(struct geneve_opt_hdr) == 4, "geneve option header");
_Static_assert(sizeof(struct ethhdr) + sizeof(struct iphdr) + sizeof(struct udphdr) +
	       sizeof(struct genevehdr) == TUNNEL_OVERHEAD, "outer headers");

/* Whether the parsed outer packet is tunnel traffic for this node: UDP to the tunnel
 * port and this node's IP (VXLAN, Geneve), or IPv4 protocol 4 to this node's IP
 * (IPIP). Later UDP fragments have no ports and never match; IPIP fragments do, and
 * ipip_decap() drops them. */
static __always_inline int tunnel_for_this_node(const struct pkt_summary *sum)
{
	if (sum->daddr != config_node_ip())
		return 0;
	if (CONFIG.tunnel_protocol == TUNNEL_IPIP)
		return sum->ip_proto == IPPROTO_IPIP;
	return sum->ip_proto == IPPROTO_UDP && sum->dport == bpf_htons(CONFIG.tunnel_port);
}

/* The checks of every decapsulated packet, whichever tunnel brought it: the VNI
 * carries a source identity (DROP_BAD_VNI), and the outer source is a node of the
 * cluster (DROP_UNKNOWN_TUNNEL_PEER): only cluster nodes may claim an identity. */
static __always_inline enum drop_reason tunnel_check_peer(const struct trace_tun *tun)
{
	if (!tun->identity)
		return DROP_BAD_VNI;
	if (!node_lookup(tun->endpoint))
		return DROP_UNKNOWN_TUNNEL_PEER;
	return DROP_NONE;
}

#endif /* PODPATH_TUNNEL_H */

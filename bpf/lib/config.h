/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Runtime configuration: one read-only struct the Go loader sets before load. */
#ifndef PODPATH_CONFIG_H
#define PODPATH_CONFIG_H

#include "common.h"

/* Mirrors Cilium's monitor-aggregation levels. */
enum monitor_aggregation {
	AGGREGATION_NONE   = 0, /* every packet is traced */
	AGGREGATION_LOW    = 1, /* (reserved for per-flow sampling) */
	AGGREGATION_MEDIUM = 2, /* drops, redirects and exceptional passes (TTL, FIB) are traced */
	AGGREGATION_MAX    = 3, /* only drops are traced */
};

/* Cilium's bpf.hostRouting (enable-host-legacy-routing). */
enum host_routing {
	HOST_ROUTING_BPF    = 0, /* programs forward with bpf_redirect_peer/_neigh, bypassing netfilter */
	HOST_ROUTING_LEGACY = 1, /* every packet goes through the host stack (netfilter, routing) */
};

/* Cilium's routing-mode. */
enum routing_mode {
	ROUTING_MODE_NATIVE = 0, /* cross-node traffic is routed by the underlay (FIB) */
	ROUTING_MODE_TUNNEL = 1, /* cross-node traffic is encapsulated (not yet: goes to the stack) */
};

struct podpath_config {
	__u32 node_id;             /* stamped on every trace record */
	__u32 monitor_aggregation; /* enum monitor_aggregation */
	__u32 host_routing;        /* enum host_routing */
	__u32 routing_mode;        /* enum routing_mode */
	/* ipv4-native-routing-cidr: destinations inside it that are not local pods are
	 * forwarded with a FIB lookup; anything outside goes to the host stack. Network
	 * address as on the wire (Go: netip.Prefix.Addr().As4()); length 0 covers every
	 * destination. */
	__u8  native_routing_cidr[4] __attribute__((aligned(4)));
	__u8  native_routing_cidr_len;
	__u8  _pad[3];
	__u8  node_ip[4];          /* this node's underlay IPv4 (tunnel source, later); may be zero */
};

/* volatile: clang must not fold the zero initialiser; the loader rewrites .rodata. */
volatile const struct podpath_config CONFIG = {};

/* Whether daddr lies inside the native-routing CIDR. Host bits of the configured
 * network are ignored. */
static __always_inline int in_native_routing_cidr(__be32 daddr)
{
	__u32 len = CONFIG.native_routing_cidr_len;
	__be32 net;

	if (len == 0)
		return 1;
	if (len > 32)
		len = 32;
	/* Read through a volatile pointer: casting the qualifier away would let clang
	 * fold the zero initialiser. The field is 4-byte aligned (offset 16). */
	net = *(const volatile __be32 *)CONFIG.native_routing_cidr;
	return ((bpf_ntohl(daddr) ^ bpf_ntohl(net)) & (0xffffffffU << (32 - len))) == 0;
}

#endif /* PODPATH_CONFIG_H */

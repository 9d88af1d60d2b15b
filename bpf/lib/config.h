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
	ROUTING_MODE_TUNNEL = 1, /* cross-node traffic is encapsulated (tunnel_protocol) */
};

/* Cilium's tunnel-protocol: the encapsulation of tunnel mode. */
enum tunnel_protocol {
	TUNNEL_NONE   = 0, /* none configured: cross-node traffic goes to the stack (PASS_TUNNEL_MODE) */
	TUNNEL_VXLAN  = 1, /* bpf_skb_set_tunnel_key + redirect to the collect_md vxlan device */
	TUNNEL_GENEVE = 2, /* encapsulated and decapsulated in BPF (no geneve driver needed) */
	TUNNEL_IPIP   = 3, /* IPIP (podpath extension, Calico's IPIP): IPv4 protocol 4, in BPF (no ipip driver) */
};

/* Which peers the tunnel is used for (podpath key tunnel-mode, Calico's
 * ipipMode/vxlanMode; IPIP/CrossSubnet, issue 14). */
enum tunnel_mode {
	TUNNEL_MODE_ALWAYS       = 0, /* every other node through the tunnel */
	TUNNEL_MODE_CROSS_SUBNET = 1, /* a node in node_subnet_len of node_ip natively (FIB), others tunnelled */
};

/* Cilium's bpf-lb-mode: how NodePort and external-IP traffic reaches a backend on
 * another node. DSR's dispatch follows the routing mode: with native routing the
 * service travels in an IPv4 option, in tunnel mode (Geneve only: datapath/config refuses
 * VXLAN) in a Geneve option (dsr.h). */
enum lb_mode {
	LB_MODE_SNAT   = 0, /* source rewritten to this node; replies come back through it */
	LB_MODE_DSR    = 1, /* the backend answers the client directly, from the service */
	LB_MODE_HYBRID = 2, /* DSR for TCP, SNAT for UDP */
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
	/* This node's underlay IPv4, as on the wire: the outer source of encapsulated
	 * packets and the outer destination of those it decapsulates. May be zero in
	 * native mode; tunnel mode with a protocol needs it. */
	__u8  node_ip[4] __attribute__((aligned(4)));
	/* Tunnel mode (routing_mode = ROUTING_MODE_TUNNEL). */
	__u32 tunnel_protocol;     /* enum tunnel_protocol */
	__u16 tunnel_port;         /* UDP destination port, host byte order (8472 VXLAN, 6081 Geneve) */
	/* The largest inner IPv4 packet (its IPv4 header included) that is encapsulated:
	 * the underlay device MTU - 50 (outer IPv4 20, UDP 8, VXLAN/Geneve 8, inner
	 * Ethernet 14) - the Geneve option bytes every packet carries. Larger packets go
	 * to the stack (see tunnel_fits() in encap.h). */
	__u16 tunnel_mtu;
	__u32 vxlan_ifindex;       /* the collect_md vxlan device (cilium_vxlan) of this node */
	/* Service load balancing (kube-proxy-replacement), see lb.h and nodeport.h. Everything below is
	 * ignored while lb_enabled is 0. */
	__u8  lb_enabled;
	__u8  lb_mode;             /* enum lb_mode */
	__u16 lb_snat_port_min;    /* NodePort SNAT source ports, host byte order, inclusive */
	__u16 lb_snat_port_max;
	__u16 _pad2;
	__u32 lb_maglev_table_size; /* M: every lb_maglev inner array has M entries */
	/* bpf-lb-maglev-hash-seed, decoded: keys the flow hash of lb_hash(). */
	__u8  lb_maglev_seed[12] __attribute__((aligned(4)));
	/* Conntrack lifetimes in seconds (conntrack.h). */
	__u32 ct_timeout_tcp;         /* established TCP: a packet without SYN was seen */
	__u32 ct_timeout_tcp_syn;     /* TCP that has only seen SYNs */
	__u32 ct_timeout_tcp_closing; /* TCP after a FIN or RST */
	__u32 ct_timeout_any;         /* UDP */
	/* Socket-LB (bpf_sock.c, lb_sock.h): bpf-lb-sock and bpf-lb-sock-hostns-only. */
	__u8  lb_sock;                /* cgroup connect4/sendmsg4 translate frontends to backends */
	__u8  lb_sock_hostns_only;    /* only sockets of the node's own namespace (netns cookie) */
	__u16 _pad_sock;
	__u32 _pad_sock2;
	__u64 lb_sock_host_netns_cookie; /* the node namespace's cookie (SO_NETNS_COOKIE) */
	/* Masquerading (enable-ipv4-masquerade with enable-bpf-masquerade), masq.h:
	 * pods' traffic leaving the cluster gets the egress device's address. Uses the
	 * conntrack lifetimes above (the loader sets them when masq_enabled). */
	__u8  masq_enabled;
	__u8  masq_ip_masq_agent;     /* enable-ip-masq-agent: masq_nonmasq holds the exceptions */
	__u16 masq_port_min;          /* source ports (ICMP echo identifiers), host byte order, inclusive */
	__u16 masq_port_max;
	/* Service semantics (issue 12, lb_reject.h, lb.h). */
	__u8  lb_no_backend_reject;   /* service-no-backend-response: 1 reject (RST / ICMP), 0 drop */
	__u8  lb_source_range_check;  /* enable-svc-source-range-check: loadBalancerSourceRanges enforced */
	/* Calico's modes (IPIP/CrossSubnet, issue 14). */
	__u8  tunnel_mode;            /* enum tunnel_mode */
	/* The prefix length of the node IP's own interface subnet (10.0.1.0/24: 24): with
	 * TUNNEL_MODE_CROSS_SUBNET a tunnel endpoint inside it is reached natively. */
	__u8  node_subnet_len;
	/* Network policy (policy.h). */
	__u8  policy_enabled;         /* enable-policy is not "never": the policy map is consulted */
	__u8  policy_audit_mode;      /* policy-audit-mode: denied flows pass, traced as audit */
	__u8  policy_verdict_events;  /* bpf-events-policy-verdict-enabled */
	/* enable-ipv4-fragment-tracking (lb_frag.h): later fragments follow their first. */
	__u8  lb_frag_tracking;
	__u8  lb_external_clusterip;  /* bpf-lb-external-clusterip: ClusterIPs served from outside (lb_from_netdev()) */
	/* Egress gateway (enable-ipv4-egress-gateway, egressgw.h): egress_gw_policy is
	 * consulted; needs BPF masquerading (the gateway's to-netdev SNATs). */
	__u8  egress_gw_enabled;
	__u8  _pad4[2];
};

/* An unused global that puts enum tunnel_mode into BTF, where Go checks its values
 * (bpfconfig.TestTunnelModeMatchesBTF); kept apart from trace.h's anchor. */
const enum tunnel_mode pp_btf_anchor_tunnel_mode = TUNNEL_MODE_ALWAYS;

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

/* This node's underlay IPv4 (network byte order). */
static __always_inline __be32 config_node_ip(void)
{
	return *(const volatile __be32 *)CONFIG.node_ip;
}

/* Word i (0..2) of the Maglev hash seed, loaded from memory as the CPU reads it. */
static __always_inline __u32 config_lb_seed(int i)
{
	return ((const volatile __u32 *)CONFIG.lb_maglev_seed)[i];
}

/* Whether a peer node (its underlay IPv4, network byte order) is reached natively
 * rather than through the tunnel: tunnel-mode cross-subnet and the peer inside this
 * node's own interface subnet (node_ip/node_subnet_len). A length of 0 counts as no
 * subnet known: every peer is tunnelled. */
static __always_inline int tunnel_peer_native(__be32 peer)
{
	__u32 len = CONFIG.node_subnet_len;

	if (CONFIG.tunnel_mode != TUNNEL_MODE_CROSS_SUBNET || len == 0)
		return 0;
	if (len > 32)
		len = 32;
	return ((bpf_ntohl(peer) ^ bpf_ntohl(config_node_ip())) & (0xffffffffU << (32 - len))) == 0;
}

/* Whether cross-node traffic is encapsulated: tunnel mode with a protocol. */
static __always_inline int tunnel_enabled(void)
{
	return CONFIG.routing_mode == ROUTING_MODE_TUNNEL && CONFIG.tunnel_protocol != TUNNEL_NONE;
}

#endif /* PODPATH_CONFIG_H */

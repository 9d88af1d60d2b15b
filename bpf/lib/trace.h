/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Trace records: what a program saw and decided, sent to Go through a ring buffer. */
#ifndef PODPATH_TRACE_H
#define PODPATH_TRACE_H

#include "common.h"
#include "config.h"
#include "drop.h"

#ifndef TRACE_RINGBUF_BYTES
#define TRACE_RINGBUF_BYTES (1 << 20)
#endif

/* Where in the datapath the record was taken. */
enum obs_point {
	OBS_UNKNOWN        = 0,
	OBS_PROBE          = 1,
	OBS_FROM_CONTAINER = 2,
	OBS_TO_CONTAINER   = 3,
	OBS_FROM_NETDEV    = 4,
	OBS_TO_NETDEV      = 5,
	OBS_FROM_OVERLAY   = 6, /* tcx ingress of the vxlan device: decapsulated by the kernel */
	OBS_FROM_HOST_SVC  = 7, /* socket-LB's fallback: tcx ingress of pp_svc_in, the node's own packets to ClusterIPs */
	OBS_XDP            = 8, /* XDP of the node's NIC (bpf_xdp.c, bpf-lb-acceleration): NodePort served before tc */
};

enum trace_verdict {
	VERDICT_PASS           = 0, /* handed on to the stack / next program */
	VERDICT_DROP           = 1,
	VERDICT_REDIRECT       = 2,
	VERDICT_REDIRECT_PEER  = 3,
	VERDICT_REDIRECT_NEIGH = 4,
	/* Policy verdict events (policy.h, bpf-events-policy-verdict-enabled): one per new
	 * flow the policy judged; src_identity holds the peer's identity. */
	VERDICT_POLICY_ALLOWED = 5,
	VERDICT_POLICY_DENIED  = 6, /* drop_reason says which rule kind */
	VERDICT_POLICY_AUDIT   = 7, /* denied but let through: policy-audit-mode */
};

/* Why a VERDICT_PASS handed the packet to the host stack instead of forwarding it.
 * The FIB block is __PASS_FIB_BASE + the kernel's BPF_FIB_LKUP_RET_* code, so the raw
 * bpf_fib_lookup() result can be read back from it (fib.h asserts the mapping). */
enum pass_reason {
	PASS_NONE                = 0,  /* no reason: an observer, or not a pass at all */
	PASS_NOT_IPV4            = 1,  /* ARP, IPv6, ...: the stack handles them */
	PASS_LEGACY_HOST_ROUTING = 2,  /* host routing is legacy: the stack forwards, netfilter sees it */
	PASS_TO_HOST             = 3,  /* destination is the node itself (ENDPOINT_F_HOST) */
	PASS_NOT_ENDPOINT        = 4,  /* from-netdev: not for a pod of this node */
	PASS_OUTSIDE_NATIVE_CIDR = 5,  /* not a local pod and outside ipv4-native-routing-cidr */
	PASS_TUNNEL_MODE         = 6,  /* cross-node in tunnel mode without a tunnel protocol configured */
	/* Exceptions: the program meant to forward, the stack must answer (ICMP). */
	PASS_TTL_EXPIRED         = 7,  /* TTL <= 1: the stack sends ICMP time exceeded */
	PASS_FIB_ERROR           = 8,  /* bpf_fib_lookup() returned an error (e.g. no ingress device) */
	/* Tunnel mode. */
	PASS_NO_TUNNEL_ENDPOINT  = 9,  /* routine: no ipcache entry with a remote tunnel endpoint (world) */
	PASS_FRAG_NEEDED_TUNNEL  = 10, /* DF set and larger than the tunnel MTU: the stack answers frag-needed */
	PASS_FRAGMENT_TUNNEL     = 11, /* DF clear and larger than the tunnel MTU: the stack fragments */
	PASS_TO_OVERLAY          = 12, /* routine: from-netdev, VXLAN for this node: the vxlan device decapsulates */
	PASS_EGRESS_GATEWAY      = 13, /* routine: decapsulated at the egress gateway, not for a pod here: the stack
				        * routes it out, to-netdev SNATs it to the egress IP (egressgw.h) */
	__PASS_FIB_BASE            = 16,
	PASS_FIB_BLACKHOLE       = 17, /* blackhole route */
	PASS_FIB_UNREACHABLE     = 18, /* unreachable route, or no route */
	PASS_FIB_PROHIBIT        = 19, /* prohibit route */
	PASS_FIB_NOT_FWDED       = 20, /* not forwarded: local destination, broadcast, ... (routine) */
	PASS_FIB_FWD_DISABLED    = 21, /* forwarding disabled on the ingress device */
	PASS_FIB_UNSUPP_LWT      = 22, /* route needs lightweight-tunnel encapsulation */
	PASS_FIB_FRAG_NEEDED     = 24, /* larger than the egress MTU: fragment or ICMP frag-needed */
	PASS_FIB_NO_SRC_ADDR     = 25, /* no source address could be derived */
	PASS_FIB_OTHER           = 31, /* a result code this object does not know */
};

/* Which tunnel a record's packet went into or came out of (trace_record.tunnel). */
enum trace_tunnel {
	TRACE_TUNNEL_NONE  = 0,
	TRACE_ENCAP_VXLAN  = 1, /* tunnel key set here, the vxlan device encapsulates */
	TRACE_ENCAP_GENEVE = 2, /* encapsulated here */
	TRACE_DECAP_VXLAN  = 3, /* decapsulated by the vxlan device (from-overlay) */
	TRACE_DECAP_GENEVE = 4, /* decapsulated here, or dropped while validating the outer headers */
	TRACE_ENCAP_IPIP   = 5, /* IPIP encapsulated here (IPIP/CrossSubnet, issue 14) */
	TRACE_DECAP_IPIP   = 6, /* IPIP decapsulated here, or dropped while validating it (issue 14) */
};

/* What the service load balancer did to the packet (trace_lb_info.action). */
enum trace_lb {
	TRACE_LB_NONE      = 0,
	TRACE_LB_DNAT      = 1, /* to a service frontend: destination rewritten to the backend */
	TRACE_LB_DNAT_SNAT = 2, /* NodePort/external to another node's backend: destination to the
				 * backend, source to this node and an SNAT port */
	TRACE_LB_REVNAT    = 3, /* a backend's reply: source restored to the frontend */
	TRACE_LB_REV_SNAT  = 4, /* a backend's reply to an SNATed flow: destination restored to the
				 * client, source to the frontend */
	TRACE_LB_DNAT_DSR  = 5, /* NodePort/external to another node's backend with direct server
				 * return: destination rewritten, the client's source kept */
	TRACE_LB_REV_DSR   = 6, /* on the backend's node, a reply of a DSR flow: source rewritten
				 * to the service from the DSR option, sent straight to the client */
	TRACE_LB_DSR_LEARNED = 7, /* on the backend's node, a request carrying the DSR option: the
				   * flow was recorded; lb.orig_daddr/orig_dport hold the service */
	TRACE_LB_FRAG_NEEDED = 8, /* too big for the way to the backend once the DSR option or the
				   * tunnel headers are added: answered with ICMP frag-needed */
	/* Masquerading (masq.h). */
	TRACE_LB_MASQ        = 9,  /* a pod's packet leaving the cluster: source to the node's address and a
				    * port (ICMP echo: identifier) of the masquerade range */
	TRACE_LB_REV_MASQ    = 10, /* a reply (or an ICMP error about it) to a masqueraded flow: destination
				    * (and the quoted source) restored to the pod */
	/* Service semantics (issue 12). */
	TRACE_LB_REJECT = 11, /* a new flow to a service without backends answered with TCP RST or
			      * ICMP port unreachable (service-no-backend-response=reject) */
	/* Egress gateway (egressgw.h): 12-13. */
	TRACE_LB_EGW_SNAT = 12, /* at the egress gateway node, a selected pod's packet: source to the
				 * policy's egress IP and a port of the masquerade range */
};

/* What connection tracking found for a load-balanced packet (trace_lb_info.ct). */
enum trace_ct {
	TRACE_CT_NONE        = 0,
	TRACE_CT_NEW         = 1, /* no usable entry (none, expired, closed and reopened by a SYN, or
				   * its backend deleted): a backend was selected */
	TRACE_CT_ESTABLISHED = 2, /* a live entry: its backend is kept */
	TRACE_CT_REPLY       = 3, /* a live reply entry (conntrack or SNAT map) */
	/* Service semantics (issue 12). */
	TRACE_CT_AFFINITY    = 4, /* no usable entry, the backend came from the client's live
				   * session affinity entry (sessionAffinity ClientIP) */
};

/* Load-balancer part of a summary. */
struct trace_lb_info {
	__u8   action;      /* enum trace_lb */
	__u8   ct;          /* enum trace_ct */
	__u16  _pad;
	__u32  backend_id;  /* the backend selected or kept; for replies, the one answering */
	/* The tuple as received, before the translation. */
	__be32 orig_saddr;
	__be32 orig_daddr;
	__be16 orig_sport;
	__be16 orig_dport;
};

/* A summary of the packet, enough to follow a flow hop by hop. Addresses and ports
 * stay in network byte order, as on the wire. A packet the load balancer translated
 * (lb.action != TRACE_LB_NONE) carries its translated addresses and ports here, the
 * received ones in lb.orig_*: the forwarding that follows works on the translated
 * tuple. Everything else (TTL, ID, length) is as received. */
struct pkt_summary {
	__u32 saddr;
	__u32 daddr;
	__u16 sport;
	__u16 dport;
	__u16 eth_proto; /* network byte order */
	__u8  ip_proto;
	__u8  ttl;       /* as received, before any decrement */
	__u16 ip_id;     /* network byte order */
	__u8  icmp_type;
	__u8  icmp_code;
	struct trace_lb_info lb;
};

/* One record per traced verdict. drop_reason is set for VERDICT_DROP only,
 * pass_reason for VERDICT_PASS only, target_ifindex for the redirects only.
 * Tunnel records (tunnel != TRACE_TUNNEL_NONE) summarise the inner packet once it is
 * known, and carry the source identity (the VNI) and the remote node: the tunnel
 * endpoint encapsulated towards, or the outer source decapsulated from. */
struct trace_record {
	__u64 ktime_ns;
	__u32 node_id;
	__u32 ifindex;          /* device the program runs on */
	__u32 target_ifindex;   /* redirect target, 0 otherwise */
	__u32 pkt_len;          /* the frame's length as the program received it; as it
				 * leaves when the record's lb.action added or removed a
				 * DSR option or answered frag-needed */
	__u16 obs_point;        /* enum obs_point */
	__u16 verdict;          /* enum trace_verdict */
	__u16 drop_reason;      /* enum drop_reason */
	__u16 pass_reason;      /* enum pass_reason */
	struct pkt_summary pkt;
	__u32 src_identity;     /* tunnel records: the source security identity, as in the VNI */
	__be32 tunnel_endpoint; /* tunnel records: the remote node's underlay IPv4, 0 if not known */
	__u16 tunnel;           /* enum trace_tunnel */
	__u16 _pad;
};

/* What a tunnel record adds to the packet summary. */
struct trace_tun {
	__u32  identity;
	__be32 endpoint;
	__u32  pkt_len;         /* the frame's length as received: encap and decap change ctx_len(skb) */
	__u16  kind;            /* enum trace_tunnel */
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, TRACE_RINGBUF_BYTES);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} trace_events SEC(".maps");

/* Exceptional passes: the packet was meant to be forwarded, and the stack has to
 * answer or decide instead. Routine passes (ARP, legacy mode, traffic to the node)
 * are not exceptions. */
static __always_inline int pass_is_exception(enum pass_reason reason)
{
	return reason >= PASS_TTL_EXPIRED && reason != PASS_FIB_NOT_FWDED &&
	       reason != PASS_NO_TUNNEL_ENDPOINT && reason != PASS_TO_OVERLAY;
}

/* Whether monitor-aggregation lets this verdict through. Drops are always traced. */
static __always_inline int trace_wanted(enum trace_verdict verdict, enum pass_reason reason)
{
	__u32 level = CONFIG.monitor_aggregation;

	if (verdict == VERDICT_DROP || verdict >= VERDICT_POLICY_ALLOWED)
		return 1;
	if (level >= AGGREGATION_MAX)
		return 0;
	if (level >= AGGREGATION_MEDIUM)
		return verdict != VERDICT_PASS || pass_is_exception(reason);
	return 1;
}

/* tun may be NULL (no tunnel involved): callers pass a constant, so it folds away. */
static __always_inline void trace_emit(struct __ctx_buff *skb, enum obs_point point,
				       enum trace_verdict verdict, enum drop_reason drop,
				       enum pass_reason pass, __u32 target_ifindex,
				       const struct pkt_summary *pkt, const struct trace_tun *tun)
{
	struct trace_record *rec;

	if (!trace_wanted(verdict, pass))
		return;
	rec = bpf_ringbuf_reserve(&trace_events, sizeof(*rec), 0);
	if (!rec)
		return;
	rec->ktime_ns = bpf_ktime_get_ns();
	rec->node_id = CONFIG.node_id;
	rec->ifindex = ctx_ifindex(skb);
	rec->target_ifindex = target_ifindex;
	rec->pkt_len = tun && tun->pkt_len ? tun->pkt_len : ctx_len(skb);
	rec->obs_point = point;
	rec->verdict = verdict;
	rec->drop_reason = drop;
	rec->pass_reason = pass;
	rec->pkt = *pkt;
	rec->src_identity = tun ? tun->identity : 0;
	rec->tunnel_endpoint = tun ? tun->endpoint : 0;
	rec->tunnel = tun ? tun->kind : TRACE_TUNNEL_NONE;
	rec->_pad = 0;
	bpf_ringbuf_submit(rec, 0);
}

static __always_inline void trace_drop(struct __ctx_buff *skb, enum obs_point point,
				       enum drop_reason reason, const struct pkt_summary *pkt)
{
	trace_emit(skb, point, VERDICT_DROP, reason, PASS_NONE, 0, pkt, NULL);
}

static __always_inline void trace_pass(struct __ctx_buff *skb, enum obs_point point,
				       enum pass_reason reason, const struct pkt_summary *pkt)
{
	trace_emit(skb, point, VERDICT_PASS, DROP_NONE, reason, 0, pkt, NULL);
}

static __always_inline void trace_redirect(struct __ctx_buff *skb, enum obs_point point,
					   enum trace_verdict verdict, __u32 target_ifindex,
					   const struct pkt_summary *pkt)
{
	trace_emit(skb, point, verdict, DROP_NONE, PASS_NONE, target_ifindex, pkt, NULL);
}

/* The same for packets going into or coming out of a tunnel; tun may be NULL. */
static __always_inline void trace_drop_tun(struct __ctx_buff *skb, enum obs_point point,
					   enum drop_reason reason, const struct pkt_summary *pkt,
					   const struct trace_tun *tun)
{
	trace_emit(skb, point, VERDICT_DROP, reason, PASS_NONE, 0, pkt, tun);
}

static __always_inline void trace_pass_tun(struct __ctx_buff *skb, enum obs_point point,
					   enum pass_reason reason, const struct pkt_summary *pkt,
					   const struct trace_tun *tun)
{
	trace_emit(skb, point, VERDICT_PASS, DROP_NONE, reason, 0, pkt, tun);
}

static __always_inline void trace_redirect_tun(struct __ctx_buff *skb, enum obs_point point,
					       enum trace_verdict verdict, __u32 target_ifindex,
					       const struct pkt_summary *pkt,
					       const struct trace_tun *tun)
{
	trace_emit(skb, point, verdict, DROP_NONE, PASS_NONE, target_ifindex, pkt, tun);
}

/* An unused global that puts these types into BTF, where bpf2go and the Go side read
 * them: Go never hand-mirrors a record layout or a drop reason name. */
const struct {
	enum drop_reason drop_reason;
	enum pass_reason pass_reason;
	enum obs_point obs_point;
	enum trace_verdict trace_verdict;
	enum monitor_aggregation monitor_aggregation;
	enum host_routing host_routing;
	enum routing_mode routing_mode;
	enum tunnel_protocol tunnel_protocol;
	enum trace_tunnel trace_tunnel;
	enum trace_lb trace_lb;
	enum trace_ct trace_ct;
	enum lb_mode lb_mode;
	struct trace_record trace_record;
} pp_btf_anchor = {};

#endif /* PODPATH_TRACE_H */

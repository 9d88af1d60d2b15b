/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The load balancer's steps for the entry programs: NodePort and external-IP forwarding, DSR, replies. */
/* Layering: entry files (bpf_lxc.c, bpf_host.c, bpf_overlay.c) call these steps;
 * they build on lb.h and lb_icmp.h, which build on the library headers (conntrack.h,
 * nat.h, dsr.h, encap.h, fib.h, endpoint.h...). No library header includes a
 * load-balancer header: decap.h hands its result back and the entry file goes on. */
#ifndef PODPATH_NODEPORT_H
#define PODPATH_NODEPORT_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "drop.h"
#include "dsr.h"
#include "encap.h"
#include "endpoint.h"
#include "fib.h"
#include "ipv4.h"
#include "lb.h"
#include "lb_icmp.h"
#include "lb_reject.h"
#include "maps.h"
#include "parse.h"
#include "trace.h"
#include "tunnel.h"

/* How a NodePort packet translated by lb_nodeport_xlate() goes on (lb_from_netdev()). */
struct lb_fwd {
	__u32 frag_mtu;         /* not 0: too big for the way to the backend; the packet is
				 * left untranslated for an ICMP frag-needed with this MTU */
	__u8  dsr_opt;          /* a DSR flow's packet that carries the DSR option
				 * (dsr_needs_opt()) */
	__u8  _pad[3];
	struct dsr_service svc; /* the frontend, for the option */
	/* Option dispatch: the route to the backend, looked up once with the option's
	 * length for the MTU check and then used to forward (lb_forward()). */
	long fib_ret;
	struct bpf_fib_lookup fib;
	/* A live flow to a remote backend whose entry's backend cache is current
	 * (lb_xlate.be_valid): lb_forward() needs no endpoint lookup (the entry's
	 * CT_F_SNAT/CT_F_DSR say remote) and uses the entry's route (fib_lookup4_cached()). */
	struct ct_entry *entry;
};

/* For a NodePort flow's packet to a remote backend (client port sport): the MTU to
 * announce when it is DF and does not fit the way there once encapsulated or given
 * the DSR option, else 0.
 *   tunnel mode      the tunnel MTU, less the Geneve DSR option when it rides along
 *                    (every packet is encapsulated: any may be too big);
 *   option dispatch  the route to the backend is looked up here, with the option's
 *                    length, for the packets that carry it (the others are forwarded
 *                    as they came); lb_forward() forwards with that lookup. A packet
 *                    without DF that is too big goes to the stack to fragment. */
static __always_inline __u32 lb_remote_frag_mtu(struct __ctx_buff *skb, const struct parsed *p,
						struct lb_fwd *fwd, const struct lb_backend *be,
						__be16 sport)
{
	int df = p->ip->frag_off & bpf_htons(PP_IP_DF);
	__u32 len, opt;

	if (tunnel_enabled()) {
		if (!df)
			return 0;
		opt = fwd->dsr_opt ? DSR_GENEVE_OPT_LEN : 0;
		len = ipv4_seg_len(skb, p) + opt;
		return len > CONFIG.tunnel_mtu ? CONFIG.tunnel_mtu - opt : 0;
	}
	if (!fwd->dsr_opt)
		return 0;
	len = ipv4_seg_len(skb, p) + DSR_IPV4_OPT_LEN;
	fwd->fib_ret = fib_lookup4(skb, p, p->ip->saddr, be->addr, sport, be->port, len, &fwd->fib);
	if (df && fwd->fib_ret == BPF_FIB_LKUP_RET_FRAG_NEEDED && fwd->fib.mtu_result > DSR_IPV4_OPT_LEN)
		return fwd->fib.mtu_result - DSR_IPV4_OPT_LEN;
	return 0;
}

/* Translates a packet from a NIC to the NodePort or external-IP frontend svc:
 * lb_service_select() (from_nic: SNAT or DSR for backends that are no pod of this
 * node), then for such a flow the way to the backend is checked: a DSR request says
 * in fwd whether it carries the DSR option and for which service, and a packet that
 * will not fit the way there is left untranslated, fwd->frag_mtu the MTU to answer
 * with (lb_remote_frag_mtu(), TRACE_LB_FRAG_NEEDED); else lb_xlate_apply(). fwd
 * tells lb_from_netdev() how to go on. */
static __always_inline enum drop_reason lb_nodeport_xlate(struct __ctx_buff *skb, struct parsed *p,
							  struct pkt_summary *sum,
							  const struct lb_service *svc,
							  struct lb_fwd *fwd)
{
	struct lb_xlate x;
	enum drop_reason reason;

	reason = lb_service_select(skb, p, sum, svc, 1, &x);
	if (reason != DROP_NONE)
		return reason;
	if (x.flags & (CT_F_SNAT | CT_F_DSR)) {
		if (x.be_valid)
			fwd->entry = x.entry;
		if (x.flags & CT_F_DSR) {
			x.action = TRACE_LB_DNAT_DSR;
			fwd->dsr_opt = dsr_needs_opt(sum->ip_proto, x.tcp_flags);
			fwd->svc.addr = sum->daddr;
			fwd->svc.port = sum->dport;
		}
		fwd->frag_mtu = lb_remote_frag_mtu(skb, p, fwd, x.be, x.sport);
		if (fwd->frag_mtu) {
			lb_trace_xlate(sum, TRACE_LB_FRAG_NEEDED, x.ct, x.backend_id, x.saddr, x.sport,
				       x.be->addr, x.be->port);
			return DROP_NONE;
		}
	}
	return lb_xlate_apply(skb, p, sum, &x);
}

/* The identity a load-balanced packet carries into the tunnel: the host's when this
 * node is its source (SNAT), else the ipcache's for the source, world for a client
 * outside the cluster (DSR keeps the client as source). */
static __always_inline __u32 lb_source_identity(__be32 saddr)
{
	const struct ipcache_info *info;

	if (saddr == config_node_ip())
		return IDENTITY_HOST;
	info = ipcache_lookup(saddr);
	return info && info->sec_identity ? info->sec_identity : IDENTITY_WORLD;
}

/* Forwards a packet the load balancer translated for a flow that entered through a
 * NIC (NodePort requests, their replies), never through the stack: the stack would
 * take a packet from this node's own address arriving on a device for a martian.
 *   a pod of this node                    -> endpoint_redirect() (redirect_peer);
 *   tunnel mode, a remote tunnel endpoint -> tunnel_encap() (lb_source_identity()),
 *                                            with the Geneve DSR option for a DSR
 *                                            packet that carries it;
 *   such a packet with native routing     -> the IPv4 DSR option inserted, then
 *                                            fib_forward() with the route
 *                                            lb_remote_frag_mtu() looked up;
 *   anything else                         -> fib_redirect() (native routing, world).
 * fwd is lb_nodeport_xlate()'s word on a request, NULL for replies. */
static __always_inline int lb_forward(struct __ctx_buff *skb, struct parsed *p,
				      struct pkt_summary *sum, enum obs_point point,
				      int pass_ret, const struct lb_fwd *fwd)
{
	const struct endpoint_info *ep = NULL;
	int dsr_opt = fwd && fwd->dsr_opt;
	struct ct_entry *entry = fwd ? fwd->entry : NULL;

	if (!entry)
		ep = endpoint_lookup(sum->daddr);
	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return endpoint_redirect(skb, p, ep, sum, point, pass_ret, NULL);
	if (tunnel_enabled()) {
		const struct ipcache_info *info = ipcache_lookup(sum->daddr);

		if (info && info->tunnel_endpoint && info->tunnel_endpoint != config_node_ip())
			return tunnel_encap(skb, p, sum, point, lb_source_identity(sum->saddr),
					    dsr_opt ? &fwd->svc : NULL, 0, pass_ret);
	} else if (dsr_opt) {
		enum drop_reason reason = dsr_opt_insert(skb, p, &fwd->svc);

		if (reason != DROP_NONE) {
			trace_drop(skb, point, reason, sum);
			return CTX_ACT_DROP;
		}
		return fib_forward(skb, p, sum, point, pass_ret, &fwd->fib, fwd->fib_ret);
	}
	/* The cached lookup checks the packet's length against the route's MTU; only a
	 * FRAG_NEEDED from it is asked again as fib_redirect() asks (MTU checked on the
	 * skb, which lets GSO packets through). */
	if (entry) {
		/* In its own scope, as fib_redirect()'s: the stack slot is shared with
		 * the other branches' (from_netdev is near 512 bytes). */
		struct bpf_fib_lookup fib;
		long ret = fib_lookup4_cached(skb, p, sum->saddr, sum->daddr, sum->sport, sum->dport, &fib,
					      &entry->fib);

		if (ret != BPF_FIB_LKUP_RET_FRAG_NEEDED)
			return fib_forward(skb, p, sum, point, pass_ret, &fib, ret);
	}
	return fib_redirect(skb, p, sum, point, pass_ret);
}

/* What a load-balancer hook decided: LB_CONTINUE lets the program go on with the
 * (possibly translated) packet; LB_DONE means the hook traced and returned the
 * verdict in *verdict. */
enum lb_hook_result {
	LB_CONTINUE = 0,
	LB_DONE     = 1,
};

/* from-container (CONFIG.lb_enabled): a pod's packet to a frontend of any kind is
 * translated (no SNAT: the client is a pod of this node, its replies come back
 * here); a local backend's reply, or an ICMP error it sends about a flow, is
 * translated back, and when its flow came in through a NIC (NodePort) forwarded by
 * lb_forward(). Everything else continues untouched. */
static __always_inline int lb_from_container(struct __ctx_buff *skb, struct parsed *p,
					     struct pkt_summary *sum, int pass_ret, int *verdict)
{
	const enum obs_point point = OBS_FROM_CONTAINER;
	const struct lb_service *svc = NULL;
	enum drop_reason reason;
	int result = LB_REPLY_NONE;

	if (lb_icmp_error(p, sum))
		reason = lb_icmp_error_xlate(skb, p, sum, &result);
	else if ((reason = lb_frag_track(p, sum)) != DROP_NONE)
		; /* a later fragment whose first was not seen: dropped below */
	else if (!lb_l4(p, sum))
		return LB_CONTINUE;
	else if ((svc = lb_service_lookup(sum)))
		reason = lb_service_xlate(skb, p, sum, svc);
	else
		reason = lb_rev_nat_reply(skb, p, sum, &result);
	/* Only a datagram's first fragment is answered (RFC 1122 3.2.2: no ICMP error
	 * about a later fragment); the rest are dropped. */
	if (reason == DROP_NO_SERVICE_BACKEND && svc && lb_reject_enabled() && !ipv4_later_fragment(p->ip)) {
		*verdict = lb_reject(skb, p, sum, point);
		return LB_DONE;
	}
	if (reason != DROP_NONE) {
		trace_drop(skb, point, reason, sum);
		*verdict = PP_TCX_DROP;
		return LB_DONE;
	}
	if (result == LB_REPLY_NODEPORT) {
		*verdict = lb_forward(skb, p, sum, point, pass_ret, NULL);
		return LB_DONE;
	}
	return LB_CONTINUE;
}

/* Packets reaching this node from outside, before delivery (from-netdev, and tunnel
 * delivery after decapsulation):
 *   an ICMP error about a translated flow      -> lb_icmp_error_xlate(); SNATed and
 *                                                 NodePort flows' errors are forwarded
 *                                                 to the client by lb_forward();
 *   to this node's IP, a live snat reply entry -> reverse SNAT and reverse NAT, then
 *                                                 lb_forward() to the client;
 *   to this node's IP, a live conntrack reply   -> reverse NAT (a remote backend
 *   entry (no snat entry)                          answering the node's own client,
 *                                                 lb_host.h), then on to the stack;
 *   a live conntrack reply entry               -> reverse NAT (a remote backend
 *                                                 answering a client pod of this
 *                                                 node), then delivery continues. */
static __always_inline int lb_ingress_reply(struct __ctx_buff *skb, struct parsed *p,
					    struct pkt_summary *sum, enum obs_point point,
					    int pass_ret, int *verdict)
{
	enum drop_reason reason;
	struct ct_entry *e;
	int result = LB_REPLY_NONE;

	if (lb_icmp_error(p, sum)) {
		reason = lb_icmp_error_xlate(skb, p, sum, &result);
		if (reason != DROP_NONE)
			goto drop;
		if (result == LB_REPLY_NODEPORT) {
			*verdict = lb_forward(skb, p, sum, point, pass_ret, NULL);
			return LB_DONE;
		}
		return LB_CONTINUE;
	}
	reason = lb_frag_track(p, sum);
	if (reason != DROP_NONE)
		goto drop;
	if (!lb_l4(p, sum))
		return LB_CONTINUE;
	if (sum->daddr == config_node_ip()) {
		e = lb_reply_lookup(skb, p, sum, 1);
		if (e) {
			reason = lb_reply_xlate(skb, p, sum, e, 1, &result);
			if (reason != DROP_NONE)
				goto drop;
			if (result != LB_REPLY_NONE) {
				*verdict = lb_forward(skb, p, sum, point, pass_ret, NULL);
				return LB_DONE;
			}
			return LB_CONTINUE;
		}
		/* No SNAT entry: a remote backend answering this node's own client
		 * (lb_host_egress() in lb_host.h): reverse NAT, then on to the stack. */
		reason = lb_rev_nat_reply(skb, p, sum, &result);
		if (reason != DROP_NONE)
			goto drop;
		return LB_CONTINUE;
	}
	reason = lb_rev_nat_reply(skb, p, sum, &result);
	if (reason != DROP_NONE)
		goto drop;
	return LB_CONTINUE;

drop:
	trace_drop(skb, point, reason, sum);
	*verdict = PP_TCX_DROP;
	return LB_DONE;
}

/* Whether this node takes part in DSR: bpf-lb-mode dsr or hybrid. */
static __always_inline int lb_dsr_enabled(void)
{
	return CONFIG.lb_enabled && CONFIG.lb_mode != LB_MODE_SNAT;
}

/* On the backend's node: a request that carried a DSR option for service fe. The
 * flow is recorded (dsr_learn()) and the summary says so (TRACE_LB_DSR_LEARNED, the
 * service in lb.orig_daddr/orig_dport); delivery continues (an IPv4 option is removed
 * first by the caller: dsr_opt_strip()). */
static __always_inline enum drop_reason lb_dsr_learn(struct __ctx_buff *skb, const struct parsed *p,
						     struct pkt_summary *sum,
						     const struct dsr_service *fe)
{
	enum drop_reason reason;

	reason = dsr_learn(sum, fe, ct_pkt_flags(sum->ip_proto, lb_tcp_flags(skb, p)));
	if (reason != DROP_NONE)
		return reason;
	sum->lb.action = TRACE_LB_DSR_LEARNED;
	sum->lb.ct = TRACE_CT_NEW;
	sum->lb.orig_saddr = sum->saddr;
	sum->lb.orig_sport = sum->sport;
	sum->lb.orig_daddr = fe->addr;
	sum->lb.orig_dport = fe->port;
	return DROP_NONE;
}

/* from-netdev (CONFIG.lb_enabled), before delivery. Each kind of packet pays only its
 * own lookups; *epp is the destination's endpoint for the caller (NULL: none), so it
 * needs no lookup of its own when the packet continues:
 *   TCP/UDP to this node's IP  -> a NodePort frontend: translated (lb_nodeport_xlate(),
 *                                 SNAT or DSR to remote backends), forwarded by
 *                                 lb_forward(), or answered with ICMP frag-needed
 *                                 (dsr_icmp_frag_needed()) when it will not fit;
 *                                 else a live snat reply: reverse SNAT and reverse NAT,
 *                                 forwarded to the client by lb_forward();
 *   TCP/UDP to a pod here      -> a DSR request with the IPv4 option (DSR modes):
 *                                 recorded (lb_dsr_learn()), the option removed
 *                                 (dsr_opt_strip()); else a remote backend's
 *                                 reply to a client pod here is translated back
 *                                 (lb_rev_nat_reply()); then delivery continues;
 *   TCP/UDP to anything else   -> an external-IP (or NodePort on another node IP)
 *                                 frontend: translated and forwarded as above;
 *   an ICMP error              -> lb_icmp_error_xlate() (PMTUD through a service).
 *   TCP/UDP to a ClusterIP     -> with bpf-lb-external-clusterip translated and
 *                                 forwarded like a NodePort frontend; without,
 *                                 dropped (DROP_IS_CLUSTER_IP), as Cilium does.
 * NodePort frontends are every address of the node's devices (the agent writes one
 * per address): a NIC's own address is no special case here. */
static __always_inline int lb_from_netdev(struct __ctx_buff *skb, struct parsed *p,
					  struct pkt_summary *sum, int pass_ret, int *verdict,
					  const struct endpoint_info **epp)
{
	const enum obs_point point = OBS_FROM_NETDEV;
	const struct endpoint_info *ep = NULL;
	const struct lb_service *svc;
	enum drop_reason reason;
	int result = LB_REPLY_NONE;
	int to_node;

	if (lb_icmp_error(p, sum)) {
		if (lb_ingress_reply(skb, p, sum, point, pass_ret, verdict) == LB_DONE)
			return LB_DONE;
		*epp = endpoint_lookup(sum->daddr);
		return LB_CONTINUE;
	}
	reason = lb_frag_track(p, sum);
	if (reason != DROP_NONE)
		goto drop;
	if (!lb_l4(p, sum)) {
		*epp = endpoint_lookup(sum->daddr);
		return LB_CONTINUE;
	}
	to_node = sum->daddr == config_node_ip();
	if (!to_node) {
		ep = endpoint_lookup(sum->daddr);
		*epp = ep;
		if (ep && !(ep->flags & ENDPOINT_F_HOST)) {
			struct dsr_service fe;

			if (lb_dsr_enabled() && p->ip->ihl > 5 && dsr_opt_read(skb, p, &fe)) {
				reason = lb_dsr_learn(skb, p, sum, &fe);
				if (reason == DROP_NONE)
					reason = dsr_opt_strip(skb, p);
			} else {
				reason = lb_rev_nat_reply(skb, p, sum, &result);
			}
			if (reason != DROP_NONE)
				goto drop;
			return LB_CONTINUE;
		}
	}
	svc = lb_service_lookup(sum);
	/* A ClusterIP from outside: a client routed it to this node. Cilium serves it
	 * only with bpf-lb-external-clusterip, else drops it with a name. */
	if (svc && (svc->flags & SVC_F_CLUSTERIP) && !CONFIG.lb_external_clusterip) {
		reason = DROP_IS_CLUSTER_IP;
		goto drop;
	}
	if (svc && (svc->flags & (SVC_F_NODEPORT | SVC_F_EXTERNAL | SVC_F_CLUSTERIP))) {
		struct lb_fwd fwd = {};

		if (!lb_source_allowed(svc, sum->saddr)) {
			reason = DROP_SVC_SOURCE_RANGE;
			goto drop;
		}
		reason = lb_nodeport_xlate(skb, p, sum, svc, &fwd);
		if (reason == DROP_NO_SERVICE_BACKEND && lb_reject_enabled() && !ipv4_later_fragment(p->ip)) {
			*verdict = lb_reject(skb, p, sum, point);
			return LB_DONE;
		}
		if (reason != DROP_NONE)
			goto drop;
		if (fwd.frag_mtu)
			*verdict = dsr_icmp_frag_needed(skb, p, sum, point, fwd.frag_mtu);
		else
			*verdict = lb_forward(skb, p, sum, point, pass_ret, &fwd);
		return LB_DONE;
	}
	if (to_node) {
		if (lb_ingress_reply(skb, p, sum, point, pass_ret, verdict) == LB_DONE)
			return LB_DONE;
		*epp = endpoint_lookup(sum->daddr);
	}
	return LB_CONTINUE;

drop:
	trace_drop(skb, point, reason, sum);
	*verdict = PP_TCX_DROP;
	return LB_DONE;
}

#endif /* PODPATH_NODEPORT_H */

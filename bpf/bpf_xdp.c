// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bpf_xdp: XDP acceleration of the load balancer (bpf-lb-acceleration native or
 * best-effort), attached to the node's underlay NIC before tc. It serves the
 * NodePort and external-IP (LoadBalancer) frontends whose backends are on other
 * nodes, in SNAT, DSR (IPv4 option, Geneve option) and hybrid modes with random or
 * Maglev selection, and the replies of SNATed NodePort flows, with the same library
 * code as from_netdev (the headers work on struct __ctx_buff, see ctx.h) and the same
 * pinned maps: a flow created here is continued by tc and the other way round.
 *
 * The rule that keeps the two hooks consistent: the XDP program either finishes a
 * packet (translated and sent with XDP_TX or bpf_redirect, a frag-needed answer, a
 * drop) or hands it to tc untouched with XDP_PASS. It hands over everything it does
 * not serve (ARP, IPv6, ICMP errors, tunnel traffic for this node, packets for pods
 * of this node, flows to a backend on this node), and every case where tc would
 * forward with the help of the stack: a route that is not a plain FIB SUCCESS (no
 * neighbour yet, unreachable, MTU), TTL <= 1, a service without backends when tc
 * answers it (service-no-backend-response=reject). The decision whether it can
 * finish is taken before the packet is rewritten; conntrack entries it created by
 * then (a new flow's backend, its SNAT port) are what tc finds and continues with.
 * Records are traced at OBS_XDP. */

#define PP_XDP 1

#include "common.h"
#include "config.h"
#include "drop.h"
#include "dsr.h"
#include "endpoint.h"
#include "fib.h"
#include "lb.h"
#include "maps.h"
#include "nodeport.h"
#include "parse.h"
#include "trace.h"
#include "tunnel.h"

/* Sends the translated packet out of the FIB's device: back out of the NIC it came in
 * on with XDP_TX, else bpf_redirect(). MACs from the FIB, TTL - 1: what fib_forward()
 * does at tc for a SUCCESS lookup, so the frame on the wire is the same. */
static __always_inline int xdp_fib_send(struct xdp_md *ctx, struct parsed *p,
					const struct pkt_summary *sum,
					const struct bpf_fib_lookup *fib)
{
	eth_set_macs(p->eth, fib->smac, fib->dmac);
	ipv4_dec_ttl(p->ip);
	trace_redirect(ctx, OBS_XDP, VERDICT_REDIRECT, fib->ifindex, sum);
	return ctx_redirect(ctx, fib->ifindex, 0);
}

/* The outer route check of xdp_nodeport_geneve() works in this per-CPU slot: on its
 * stack it would take the entry program and its call past 512 bytes. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, sizeof(struct bpf_fib_lookup)); /* no BTF type: bpf2go cannot name its unions */
} xdp_scratch_fib SEC(".maps");

/* Tunnel mode: a request for a backend behind a Geneve tunnel is translated and
 * encapsulated here (tunnel_encap(), with the DSR option for a DSR request that
 * carries it) when the outer route is a FIB SUCCESS and the packet fits the tunnel;
 * anything else (VXLAN, IPIP, a native peer, no route) is tc's. A function of its
 * own: inlined, its stack would add to the native path's beyond 512 bytes. */
static __always_inline int xdp_nodeport_geneve(struct xdp_md *ctx, struct parsed *p,
					  struct pkt_summary *sum, const struct lb_xlate *x,
					  const struct dsr_service *dsr)
{
	const struct ipcache_info *info;
	const struct node_info *node;
	enum drop_reason reason;
	__u32 opt = dsr ? DSR_GENEVE_OPT_LEN : 0;
	__u32 zero = 0;
	struct bpf_fib_lookup *fib = bpf_map_lookup_elem(&xdp_scratch_fib, &zero);

	if (CONFIG.tunnel_protocol != TUNNEL_GENEVE || !fib)
		return XDP_PASS;
	info = ipcache_lookup(x->be->addr);
	if (!info || !info->tunnel_endpoint || info->tunnel_endpoint == config_node_ip() ||
	    tunnel_peer_native(info->tunnel_endpoint))
		return XDP_PASS;
	node = node_lookup(info->tunnel_endpoint);
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = AF_INET;
	fib->l4_protocol = IPPROTO_UDP;
	fib->dport = bpf_htons(CONFIG.tunnel_port);
	fib->ifindex = ctx->ingress_ifindex;
	fib->ipv4_src = config_node_ip();
	fib->ipv4_dst = info->tunnel_endpoint;
	if (!node || sum->ttl <= 1 || bpf_ntohs(p->ip->tot_len) + opt > node_tunnel_mtu(node) ||
	    bpf_fib_lookup(ctx, fib, sizeof(*fib), 0) != BPF_FIB_LKUP_RET_SUCCESS)
		return XDP_PASS;
	reason = lb_xlate_apply(ctx, p, sum, x);
	if (reason != DROP_NONE) {
		trace_drop(ctx, OBS_XDP, reason, sum);
		return XDP_DROP;
	}
	return tunnel_encap(ctx, p, sum, OBS_XDP, lb_source_identity(sum->saddr), dsr, 0, XDP_PASS);
}

/* A request to a NodePort or external-IP frontend svc (lb_from_netdev()'s frontend
 * branch, with the hand-over rule above). */
static __always_inline int xdp_nodeport(struct xdp_md *ctx, struct parsed *p,
					struct pkt_summary *sum, const struct lb_service *svc,
					const int tunnel)
{
	struct lb_fwd fwd = {};
	struct lb_xlate x;
	enum drop_reason reason;

	if (!lb_source_allowed(svc, sum->saddr)) {
		reason = DROP_SVC_SOURCE_RANGE;
		goto drop;
	}
	reason = lb_service_select(ctx, p, sum, svc, 1, &x);
	if (reason == DROP_NO_SERVICE_BACKEND && lb_reject_enabled())
		return XDP_PASS;
	if (reason != DROP_NONE)
		goto drop;
	/* A backend on this node: tc delivers with redirect_peer, finding the flow. */
	if (!(x.flags & (CT_F_SNAT | CT_F_DSR)))
		return XDP_PASS;
	if (x.flags & CT_F_DSR) {
		x.action = TRACE_LB_DNAT_DSR;
		fwd.dsr_opt = dsr_needs_opt(sum->ip_proto, x.tcp_flags);
		fwd.svc.addr = sum->daddr;
		fwd.svc.port = sum->dport;
	}
	fwd.frag_mtu = lb_remote_frag_mtu(ctx, p, &fwd, x.be, x.sport);
	if (fwd.frag_mtu) {
		lb_trace_xlate(sum, TRACE_LB_FRAG_NEEDED, x.ct, x.backend_id, x.saddr, x.sport,
			       x.be->addr, x.be->port);
		return dsr_icmp_frag_needed(ctx, p, sum, OBS_XDP, fwd.frag_mtu);
	}

	if (tunnel)
		return xdp_nodeport_geneve(ctx, p, sum, &x, fwd.dsr_opt ? &fwd.svc : NULL);

	/* The route to the backend, as the packet will leave: the option's lookup
	 * lb_remote_frag_mtu() made, else one of the translated tuple. The packet's
	 * length is checked against the route's MTU (at tc the skb's is). */
	if (fwd.dsr_opt)
		;
	else if (x.be_valid)
		fwd.fib_ret = fib_lookup4_cached(ctx, p, x.saddr, x.be->addr, x.sport, x.be->port,
						 &fwd.fib, &x.entry->fib);
	else
		fwd.fib_ret = fib_lookup4(ctx, p, x.saddr, x.be->addr, x.sport, x.be->port,
					  bpf_ntohs(p->ip->tot_len), &fwd.fib);
	if (fwd.fib_ret != BPF_FIB_LKUP_RET_SUCCESS || sum->ttl <= 1)
		return XDP_PASS;
	/* lb_xlate_apply() in two halves: from here the summary serves the trace record
	 * alone, so the translation is recorded in it only when a record will be
	 * emitted (a drop always is; a redirect not under monitor-aggregation maximum). */
	reason = nat4_rewrite(ctx, p, x.saddr, x.sport, x.be->addr, x.be->port);
	if (reason != DROP_NONE)
		goto drop;
	if (fwd.dsr_opt)
		reason = dsr_opt_insert(ctx, p, &fwd.svc);
	if (reason != DROP_NONE || trace_wanted(VERDICT_REDIRECT, PASS_NONE))
		lb_trace_xlate(sum, x.action, x.ct, x.backend_id, x.saddr, x.sport, x.be->addr, x.be->port);
	if (reason != DROP_NONE)
		goto drop;
	return xdp_fib_send(ctx, p, sum, &fwd.fib);

drop:
	trace_drop(ctx, OBS_XDP, reason, sum);
	return XDP_DROP;
}

/* A backend's reply to a SNATed NodePort flow (to this node's IP, a live snat reply
 * entry): reverse SNAT and reverse NAT, then to the client, as lb_ingress_reply()
 * and lb_forward() at tc. A client that is a pod of this node, or behind a tunnel,
 * is tc's. */
static __always_inline int xdp_snat_reply(struct xdp_md *ctx, struct parsed *p,
					  struct pkt_summary *sum)
{
	const struct endpoint_info *ep;
	struct bpf_fib_lookup fib;
	struct dsr_service fe;
	struct ct_entry *e;
	enum drop_reason reason;
	int result = LB_REPLY_NONE;
	__be32 client;
	__be16 cport;

	e = lb_reply_lookup(ctx, p, sum, 1);
	if (!e || !(e->flags & CT_F_NODEPORT) || !(e->flags & CT_F_SNAT) || !lb_frontend_of(e, &fe))
		return XDP_PASS;
	client = e->nat_addr;
	cport = e->nat_port;
	ep = endpoint_lookup(client);
	if (ep && !(ep->flags & ENDPOINT_F_HOST))
		return XDP_PASS;
	if (tunnel_enabled()) {
		const struct ipcache_info *info = ipcache_lookup(client);

		if (info && info->tunnel_endpoint && info->tunnel_endpoint != config_node_ip())
			return XDP_PASS;
	}
	/* The route to the client is kept in the reply entry as the request's is in its
	 * service entry (valid while dp_gen[DP_GEN_FIB] stands): the reply tuple is the
	 * entry's key, fixed for the flow's life. */
	if (fib_lookup4_cached(ctx, p, fe.addr, client, fe.port, cport, &fib, &e->fib) !=
		    BPF_FIB_LKUP_RET_SUCCESS ||
	    sum->ttl <= 1)
		return XDP_PASS;
	reason = lb_reply_xlate(ctx, p, sum, e, 1, &result);
	if (reason != DROP_NONE) {
		trace_drop(ctx, OBS_XDP, reason, sum);
		return XDP_DROP;
	}
	if (result == LB_REPLY_NONE)
		return XDP_PASS;
	return xdp_fib_send(ctx, p, sum, &fib);
}

/* xdp_nodeport_tunnel: tunnel mode's frontends, in a program of its own that
 * xdp_entry tail-calls before anything is decided: Geneve encapsulation inlined
 * beside the load balancer would take one program's stack past 512 bytes (the
 * same reason from_netdev tail-calls its decapsulation). */
SEC("xdp")
int xdp_nodeport_tunnel(struct xdp_md *ctx)
{
	const struct lb_service *svc;
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	if (parse_frame(ctx, &p, &sum, NULL, &reason) != PARSE_IPV4 || !lb_l4(&p, &sum))
		return XDP_PASS;
	svc = lb_service_lookup(&sum);
	if (!svc || !(svc->flags & (SVC_F_NODEPORT | SVC_F_EXTERNAL)))
		return XDP_PASS;
	return xdp_nodeport(ctx, &p, &sum, svc, 1);
}

#define XDP_TAIL_TUNNEL 0

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__uint(key_size, sizeof(__u32));
	__array(values, int(struct xdp_md *));
} xdp_tails SEC(".maps") = {
	.values = { [XDP_TAIL_TUNNEL] = (void *)&xdp_nodeport_tunnel },
};

SEC("xdp")
int xdp_entry(struct xdp_md *ctx)
{
	const struct lb_service *svc;
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	if (!CONFIG.lb_enabled)
		return XDP_PASS;
	/* Malformed packets too: tc drops them with their reason. */
	if (parse_frame(ctx, &p, &sum, NULL, &reason) != PARSE_IPV4)
		return XDP_PASS;
	if (!lb_l4(&p, &sum) || lb_icmp_error(&p, &sum))
		return XDP_PASS;
	if (tunnel_enabled() && tunnel_for_this_node(&sum))
		return XDP_PASS;
	svc = lb_service_lookup(&sum);
	if (svc && (svc->flags & (SVC_F_NODEPORT | SVC_F_EXTERNAL))) {
		if (tunnel_enabled()) {
			bpf_tail_call(ctx, &xdp_tails, XDP_TAIL_TUNNEL);
			return XDP_PASS; /* no tail call: tc serves it */
		}
		return xdp_nodeport(ctx, &p, &sum, svc, 0);
	}
	if (sum.daddr == config_node_ip())
		return xdp_snat_reply(ctx, &p, &sum);
	return XDP_PASS;
}

/* The floor of the benchmarks: an XDP program that only passes. */
SEC("xdp")
int xdp_empty(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char __license[] SEC("license") = "Dual BSD/GPL";

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bpf_overlay: the node's collect_md vxlan device (cilium_vxlan). from_overlay runs on
 * its tcx ingress, after the kernel decapsulated a VXLAN packet: it reads the VNI (the
 * source identity) and the outer source from the tunnel metadata, checks them, and
 * delivers the inner packet to the local pod with bpf_redirect_peer. */

#include "common.h"
#include "config.h"
#include "decap.h"
#include "drop.h"
#include "maps.h"
#include "nodeport.h"
#include "parse.h"
#include "trace.h"

/* The vxlan device is the datapath's own: packets it does not deliver go to the stack
 * with TCX_PASS, as from bpf_lxc. */
#define OVERLAY_PASS PP_TCX_PASS

/* Checks, each with its drop reason: the inner frame parses and carries tunnel
 * metadata (parse_frame(): the usual reasons and DROP_TUNNEL_KEY; non-IPv4 goes to
 * the stack), VNI not 0
 * (DROP_BAD_VNI), the outer source is a node of the cluster (DROP_UNKNOWN_TUNNEL_PEER:
 * the VNI claims a security identity, and only cluster nodes may claim one); then
 * the load balancer translates replies (lb_ingress_reply()), then tunnel_deliver(). */
SEC("tc")
int from_overlay(struct __sk_buff *skb)
{
	struct trace_tun tun = { .kind = TRACE_DECAP_VXLAN };
	struct bpf_tunnel_key key = {};
	struct pkt_summary sum = {};
	enum parse_verdict parse;
	struct parsed p = {};
	enum drop_reason reason;

	parse = parse_frame(skb, &p, &sum, &key, &reason);
	tun.identity = key.tunnel_id;
	tun.endpoint = bpf_htonl(key.remote_ipv4);
	switch (parse) {
	case PARSE_DROP:
		goto drop;
	case PARSE_NOT_IPV4:
		trace_pass_tun(skb, OBS_FROM_OVERLAY, PASS_NOT_IPV4, &sum, &tun);
		return OVERLAY_PASS;
	case PARSE_IPV4:
		break;
	}
	reason = tunnel_check_peer(&tun);
	if (reason != DROP_NONE)
		goto drop;
	if (CONFIG.lb_enabled) {
		int verdict;

		if (lb_ingress_reply(skb, &p, &sum, OBS_FROM_OVERLAY, OVERLAY_PASS, &verdict) == LB_DONE)
			return verdict;
	}
	return tunnel_deliver(skb, &p, &sum, &tun, OBS_FROM_OVERLAY, OVERLAY_PASS);

drop:
	trace_drop_tun(skb, OBS_FROM_OVERLAY, reason, &sum, &tun);
	return PP_TCX_DROP;
}

char __license[] SEC("license") = "Dual BSD/GPL";

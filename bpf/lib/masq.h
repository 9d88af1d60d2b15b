/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* BPF masquerading: pods' traffic leaving the cluster gets the egress device's address (to-netdev), replies and ICMP errors about it are translated back (from-netdev). */
#ifndef PODPATH_MASQ_H
#define PODPATH_MASQ_H

#include "common.h"
#include "config.h"
#include "conntrack.h"
#include "csum.h"
#include "drop.h"
#include "egressgw.h"
#include "endpoint.h"
#include "lb_hash.h"
#include "maps.h"
#include "nat.h"
#include "parse.h"
#include "trace.h"

/* A flow is masqueraded by two entries of the snat map (nat.h), written together:
 *   CT_EGRESS  pod:port -> remote:rport          nat_addr:nat_port = node address:port
 *   CT_REPLY   remote:rport -> node address:port  nat_addr:nat_port = pod:port, CT_F_MASQ
 * ICMP echo is keyed by its identifier: the request as sport (dport 0), the reply as
 * dport (sport 0); the identifier is translated like a port. The reply entries share
 * the map, and so the port allocator (snat_alloc_range()), with NodePort SNAT: a reply
 * tuple is never handed out twice. Both entries live with conntrack's lifetimes
 * (ct_lifetime()): refreshed by the packets of their direction, the reply entry also
 * whenever the forward one is (at most once a second), recreated if evicted. A tuple
 * whose entries expired is allocated afresh. A later gateway (egress gateway) reuses
 * masq_snat() with its own address. */

#ifndef MASQ_NONMASQ_SIZE
#define MASQ_NONMASQ_SIZE 16384
#endif
#ifndef MASQ_ADDRS_SIZE
#define MASQ_ADDRS_SIZE 64
#endif

#define PP_ICMP_ECHOREPLY 0
#define PP_ICMP_ECHO      8

/* ip-masq-agent's nonMasqueradeCIDRs (and 169.254.0.0/16 unless masqLinkLocal), as
 * the agent read them: destinations inside are never masqueraded. */
struct masq_cidr_key {
	__u32  prefixlen;
	__be32 ip4;
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct masq_cidr_key);
	__type(value, __u8);
	__uint(max_entries, MASQ_NONMASQ_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} masq_nonmasq SEC(".maps");

/* The address masquerading uses on each device the programs are attached to, by
 * ifindex (the agent writes the device's primary IPv4); a device without one uses
 * the node IP. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __be32);
	__uint(max_entries, MASQ_ADDRS_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} masq_addrs SEC(".maps");

/* Counters, per CPU (Go sums them): podpath-agent status shows them. */
enum masq_stat {
	MASQ_STAT_NEW       = 0, /* flows that got a port */
	MASQ_STAT_NO_PORT   = 1, /* new flows dropped with DROP_MASQ_NO_PORT */
	MASQ_STAT_FAILED    = 2, /* DROP_MASQ_FAILED */
	MASQ_STAT_REV       = 3, /* replies translated back */
	MASQ_STAT_ICMP_ERR  = 4, /* ICMP errors translated back */
	__MASQ_STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, __MASQ_STAT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} masq_stats SEC(".maps");

/* Puts enum masq_stat into BTF for bpf2go. */
const enum masq_stat pp_masq_stat_anchor = MASQ_STAT_NEW;

static __always_inline void masq_count(enum masq_stat s)
{
	__u32 key = s;
	__u64 *v = bpf_map_lookup_elem(&masq_stats, &key);

	if (v)
		*v += 1;
}

/* The address masquerading gives packets leaving through ifindex. */
static __always_inline __be32 masq_addr(__u32 ifindex)
{
	const __be32 *a = bpf_map_lookup_elem(&masq_addrs, &ifindex);

	return a && *a ? *a : config_node_ip();
}

/* The ICMP echo identifier of the parsed packet (parse_ipv4() checked 4 bytes of
 * ICMP; the identifier follows), or -1 when it is not there. */
static __always_inline int masq_icmp_id(struct __ctx_buff *skb, const struct parsed *p, __be16 *id)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	__be16 *f;

	if (p->l4_off > 14 + 60)
		return -1;
	f = data + p->l4_off + 4;
	if ((void *)(f + 1) > data_end)
		return -1;
	*id = *f;
	return 0;
}

/* Whether daddr belongs to the cluster: a pod or the node itself (endpoints), another
 * node (nodes), a pod another node owns (ipcache with a tunnel endpoint), and in
 * native routing anything inside ipv4-native-routing-cidr. */
static __always_inline int masq_in_cluster(__be32 daddr)
{
	const struct ipcache_info *ic;

	if (CONFIG.routing_mode == ROUTING_MODE_NATIVE && CONFIG.native_routing_cidr_len &&
	    in_native_routing_cidr(daddr))
		return 1;
	if (daddr == config_node_ip() || endpoint_lookup(daddr) || node_lookup(daddr))
		return 1;
	ic = ipcache_lookup(daddr);
	return ic && ic->tunnel_endpoint;
}

/* Whether the translation can carry the packet: TCP, UDP (a first fragment or
 * none) or an ICMP echo request. */
static __always_inline int masq_translatable(const struct parsed *p, const struct pkt_summary *sum)
{
	if (p->ip->frag_off & bpf_htons(PP_IP_OFFSET))
		return 0;
	return sum->ip_proto == IPPROTO_TCP || sum->ip_proto == IPPROTO_UDP ||
	       (sum->ip_proto == IPPROTO_ICMP && sum->icmp_type == PP_ICMP_ECHO);
}

/* Whether the packet is a local pod's, leaving the cluster, to be masqueraded:
 * masquerading on; TCP, UDP (first fragment) or ICMP echo request; the source a pod
 * of this node; the destination outside the cluster (masq_in_cluster()) and, with
 * ip-masq-agent, outside its nonMasqueradeCIDRs. */
static __always_inline int masq_wanted(const struct parsed *p, const struct pkt_summary *sum)
{
	const struct endpoint_info *ep;

	if (!CONFIG.masq_enabled || !masq_translatable(p, sum))
		return 0;
	ep = endpoint_lookup(sum->saddr);
	if (!ep || (ep->flags & ENDPOINT_F_HOST))
		return 0;
	if (masq_in_cluster(sum->daddr))
		return 0;
	if (CONFIG.masq_ip_masq_agent) {
		struct masq_cidr_key k = { .prefixlen = 32, .ip4 = sum->daddr };

		if (bpf_map_lookup_elem(&masq_nonmasq, &k))
			return 0;
	}
	return 1;
}

/* Rewrites an ICMP echo's addresses and identifier (no offload ever covers ICMP: its
 * checksum is updated by hand, as the IPv4 header's). */
static __always_inline enum drop_reason masq_icmp_rewrite(struct __ctx_buff *skb, struct parsed *p,
							  __be32 saddr, __be32 daddr, __be16 id)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct iphdr *ip = p->ip;
	struct icmp_head *ih;
	__be16 *idp;

	if (p->l4_off > 14 + 60)
		return DROP_MASQ_FAILED;
	ih = data + p->l4_off;
	idp = data + p->l4_off + 4;
	if ((void *)(idp + 1) > data_end)
		return DROP_MASQ_FAILED;
	/* writes: masq.icmp.echo_id masq.icmp.checksum */
	csum_apply_diff(&ip->check, csum_add(csum_diff4(ip->saddr, saddr), csum_diff4(ip->daddr, daddr)));
	ip->saddr = saddr;
	ip->daddr = daddr;
	csum_apply_diff(&ih->checksum, csum_diff2(*idp, id));
	*idp = id;
	return DROP_NONE;
}

/* The translation of a pod's flow (key: as the pod sends it, CT_EGRESS) to the
 * address nat_addr: an established flow keeps its port (and refreshes its entries), a
 * new one gets one from [masq_port_min, masq_port_max] (snat_alloc_range(), hash
 * lb_hash of the pod's tuple: a flow that comes back after its entries expired
 * likely gets its old port). Returns the port in *nat_port, or a drop reason:
 * DROP_MASQ_NO_PORT when every port tried is held towards that remote, or
 * DROP_MASQ_FAILED. *state is TRACE_CT_NEW or TRACE_CT_ESTABLISHED. */
static __always_inline enum drop_reason masq_snat(const struct ct_key *key, __be32 nat_addr,
						  __u8 tcp_flags, __be16 *nat_port, __u8 *state)
{
	struct ct_key rkey = {
		.saddr = key->daddr, .daddr = nat_addr, .sport = key->dport, .proto = key->proto,
		.dir = CT_REPLY,
	};
	__u16 pkt_flags = ct_pkt_flags(key->proto, tcp_flags);
	__u32 now = ct_now();
	struct ct_entry *e;
	struct ct_entry r = {};
	struct ct_entry f = {};
	enum drop_reason reason;

	e = bpf_map_lookup_elem(&snat, key);
	barrier_var(e);
	if (e && ct_live(e, now, key->proto, tcp_flags) && e->nat_addr == nat_addr) {
		*nat_port = e->nat_port;
		*state = TRACE_CT_ESTABLISHED;
		if (ct_refresh(e, now, key->proto, pkt_flags)) {
			struct ct_entry *old;

			rkey.dport = e->nat_port;
			old = bpf_map_lookup_elem(&snat, &rkey);
			if (old && old->nat_addr == key->saddr && old->nat_port == key->sport) {
				ct_refresh(old, now, key->proto, pkt_flags);
			} else if (!old) {
				r.lifetime = e->lifetime;
				r.flags = e->flags;
				r.nat_addr = key->saddr;
				r.nat_port = key->sport;
				bpf_map_update_elem(&snat, &rkey, &r, BPF_NOEXIST);
			}
		}
		return DROP_NONE;
	}
	*state = TRACE_CT_NEW;
	r.flags = pkt_flags | CT_F_MASQ;
	r.lifetime = ct_lifetime(key->proto, r.flags, now);
	r.nat_addr = key->saddr;
	r.nat_port = key->sport;
	reason = snat_alloc_range(&rkey, &r,
				  lb_hash(key->saddr, key->daddr, key->sport, key->dport, key->proto),
				  now, CONFIG.masq_port_min, CONFIG.masq_port_max);
	if (reason != DROP_NONE)
		return reason == DROP_SNAT_NO_PORT ? DROP_MASQ_NO_PORT : reason;
	f.flags = r.flags;
	f.lifetime = r.lifetime;
	f.nat_addr = nat_addr;
	f.nat_port = rkey.dport;
	if (bpf_map_update_elem(&snat, key, &f, BPF_ANY) < 0) {
		bpf_map_delete_elem(&snat, &rkey);
		return DROP_MASQ_FAILED;
	}
	*nat_port = rkey.dport;
	return DROP_NONE;
}

/* to-netdev: masquerades the packet if masq_wanted(). Returns DROP_NONE when the
 * packet goes on (translated or not; the summary then carries the translated tuple
 * and lb.action TRACE_LB_MASQ), or the drop reason. */
static __always_inline enum drop_reason masq_egress(struct __ctx_buff *skb, struct parsed *p,
						    struct pkt_summary *sum)
{
	struct ct_key key = {
		.saddr = sum->saddr, .daddr = sum->daddr, .sport = sum->sport, .dport = sum->dport,
		.proto = sum->ip_proto, .dir = CT_EGRESS,
	};
	const struct egw_value *egw = NULL;
	__be32 nat_addr;
	__be16 nat_port = 0;
	enum drop_reason reason;
	__u8 tcp_flags = 0;
	__u8 state = 0;

	/* Egress gateway: a flow a policy selects is SNATed to the egress IP on its
	 * gateway node only (whatever node its pod is on); on any other node it is not
	 * this node's to translate (it left for the gateway, or was dropped). */
	if (CONFIG.egress_gw_enabled && CONFIG.masq_enabled) {
		egw = egw_lookup(sum->saddr, sum->daddr);
		if (egw && (egw->gateway != config_node_ip() || egw_in_cluster(sum->daddr)))
			return DROP_NONE;
	}
	if (egw) {
		if (!masq_translatable(p, sum))
			return DROP_NONE;
	} else if (!masq_wanted(p, sum)) {
		return DROP_NONE;
	}
	if (sum->ip_proto == IPPROTO_ICMP) {
		if (masq_icmp_id(skb, p, &key.sport) < 0)
			return DROP_NONE;
		key.dport = 0;
	} else if (sum->ip_proto == IPPROTO_TCP) {
		void *data = ctx_data(skb);
		void *data_end = ctx_data_end(skb);
		__u8 *fl;

		if (p->l4_off > 14 + 60)
			return DROP_NONE;
		fl = data + p->l4_off + 13;
		if ((void *)(fl + 1) > data_end)
			return DROP_NONE;
		tcp_flags = *fl;
	}
	nat_addr = egw && egw->egress_ip ? egw->egress_ip : masq_addr(ctx_ifindex(skb));
	reason = masq_snat(&key, nat_addr, tcp_flags, &nat_port, &state);
	if (reason != DROP_NONE) {
		masq_count(reason == DROP_MASQ_NO_PORT ? MASQ_STAT_NO_PORT : MASQ_STAT_FAILED);
		return reason;
	}
	if (state == TRACE_CT_NEW)
		masq_count(MASQ_STAT_NEW);
	/* writes: masq.snat.ipv4.saddr masq.snat.l4.sport */
	if (sum->ip_proto == IPPROTO_ICMP)
		reason = masq_icmp_rewrite(skb, p, nat_addr, sum->daddr, nat_port);
	else
		reason = nat4_rewrite(skb, p, nat_addr, nat_port, sum->daddr, sum->dport);
	if (reason != DROP_NONE) {
		masq_count(MASQ_STAT_FAILED);
		return DROP_MASQ_FAILED;
	}
	sum->lb.action = egw ? TRACE_LB_EGW_SNAT : TRACE_LB_MASQ;
	sum->lb.ct = state;
	sum->lb.orig_saddr = sum->saddr;
	sum->lb.orig_daddr = sum->daddr;
	sum->lb.orig_sport = key.sport;
	sum->lb.orig_dport = sum->dport;
	sum->saddr = nat_addr;
	sum->sport = sum->ip_proto == IPPROTO_ICMP ? 0 : nat_port;
	return DROP_NONE;
}

/* The reply entry of a masqueraded flow for key (CT_REPLY), if live. */
static __always_inline struct ct_entry *masq_reply_lookup(const struct ct_key *key)
{
	struct ct_entry *e = bpf_map_lookup_elem(&snat, key);

	barrier_var(e);
	if (!e || !(e->flags & CT_F_MASQ) || (__s32)(e->lifetime - ct_now()) <= 0)
		return NULL;
	return e;
}

/* An ICMP error to this node about a masqueraded flow (the quoted packet left this
 * node translated: node address:port -> remote): translated back for the pod. The
 * quoted source becomes the pod and its port (or echo identifier), the outer
 * destination the pod; the quoted IPv4 checksum, the quoted L4 checksum when quoted
 * (TCP, UDP unless 0, ICMP echo), the ICMP checksum and the outer IPv4 checksum are
 * updated by hand, as lb_icmp_error_xlate() does. Anything else is left untouched. */
static __always_inline enum drop_reason masq_icmp_error_rev(struct __ctx_buff *skb, struct parsed *p,
							    struct pkt_summary *sum)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	struct ct_key key = { .dir = CT_REPLY };
	__be32 pod;
	__be16 pod_port, *ports, *l4sum;
	__u32 off = p->l4_off, l3diff, l4diff;
	struct icmp_head *ih;
	struct iphdr *in;
	struct ct_entry *e;

	if (off > 14 + 60)
		return DROP_NONE;
	ih = data + off;
	in = data + off + 8;
	if ((void *)(in + 1) > data_end || *(__u8 *)in != 0x45 ||
	    (in->frag_off & bpf_htons(PP_IP_OFFSET)) || in->saddr != p->ip->daddr)
		return DROP_NONE;
	ports = (void *)(in + 1);
	if ((void *)(ports + 4) > data_end)
		return DROP_NONE;
	key.saddr = in->daddr;
	key.daddr = in->saddr;
	key.proto = in->protocol;
	switch (in->protocol) {
	case IPPROTO_TCP:
		key.sport = ports[1];
		key.dport = ports[0];
		l4sum = ports + 8;
		break;
	case IPPROTO_UDP:
		key.sport = ports[1];
		key.dport = ports[0];
		l4sum = ports + 3;
		break;
	case IPPROTO_ICMP:
		if (*(__u8 *)ports != PP_ICMP_ECHO)
			return DROP_NONE;
		/* The quoted echo request: its identifier (ports[2]) is the port. */
		key.dport = ports[2];
		l4sum = ports + 1;
		break;
	default:
		return DROP_NONE;
	}
	e = masq_reply_lookup(&key);
	if (!e)
		return DROP_NONE;
	pod = e->nat_addr;
	pod_port = e->nat_port;

	/* writes: masq.icmperr.quote.ipv4.saddr masq.icmperr.quote.l4.sport masq.icmperr.quote.checksums masq.icmperr.icmp.checksum masq.icmperr.ipv4.daddr */
	l3diff = csum_diff4(in->saddr, pod);
	in->saddr = pod;
	csum_apply_diff(&in->check, l3diff);
	if (in->protocol == IPPROTO_ICMP) {
		/* No pseudo-header: only the identifier counts in the quoted checksum. */
		l4diff = csum_diff2(ports[2], pod_port);
		ports[2] = pod_port;
		if ((void *)(l4sum + 1) <= data_end) {
			__be16 old = *l4sum;

			csum_apply_diff(l4sum, l4diff);
			l4diff = csum_add(l4diff, csum_diff2(old, *l4sum));
		}
	} else {
		l4diff = csum_diff2(ports[0], pod_port);
		ports[0] = pod_port;
		if ((void *)(l4sum + 1) <= data_end && (*l4sum || in->protocol == IPPROTO_TCP)) {
			__be16 old = *l4sum;

			csum_apply_diff(l4sum, csum_add(l3diff, l4diff));
			if (!*l4sum && in->protocol == IPPROTO_UDP)
				*l4sum = 0xffff;
			l4diff = csum_add(l4diff, csum_diff2(old, *l4sum));
		}
	}
	/* The quoted IPv4 header still sums to the same: only the port and quoted
	 * checksum changes reach the ICMP checksum. */
	csum_apply_diff(&ih->checksum, l4diff);
	csum_apply_diff(&p->ip->check, csum_diff4(p->ip->daddr, pod));
	sum->lb.action = TRACE_LB_REV_MASQ;
	sum->lb.ct = TRACE_CT_REPLY;
	sum->lb.orig_saddr = sum->saddr;
	sum->lb.orig_daddr = sum->daddr;
	p->ip->daddr = pod;
	sum->daddr = pod;
	masq_count(MASQ_STAT_ICMP_ERR);
	return DROP_NONE;
}

/* from-netdev, first thing: a reply to a masqueraded flow (TCP, UDP, ICMP echo reply
 * to this node's address and a port of the flow) gets the pod's address and port back;
 * an ICMP error about one is translated (masq_icmp_error_rev()). Anything else is
 * left untouched. The summary then carries the translated tuple (lb.action
 * TRACE_LB_REV_MASQ). */
static __always_inline enum drop_reason masq_ingress(struct __ctx_buff *skb, struct parsed *p,
						     struct pkt_summary *sum)
{
	struct ct_key key = {
		.saddr = sum->saddr, .daddr = sum->daddr, .sport = sum->sport, .dport = sum->dport,
		.proto = sum->ip_proto, .dir = CT_REPLY,
	};
	struct ct_entry *e;
	enum drop_reason reason;
	__u8 tcp_flags = 0;

	if (!CONFIG.masq_enabled || (p->ip->frag_off & bpf_htons(PP_IP_OFFSET)))
		return DROP_NONE;
	switch (sum->ip_proto) {
	case IPPROTO_TCP: {
		void *data = ctx_data(skb);
		void *data_end = ctx_data_end(skb);
		__u8 *fl;

		if (p->l4_off > 14 + 60)
			return DROP_NONE;
		fl = data + p->l4_off + 13;
		if ((void *)(fl + 1) > data_end)
			return DROP_NONE;
		tcp_flags = *fl;
		break;
	}
	case IPPROTO_UDP:
		break;
	case IPPROTO_ICMP:
		if (sum->icmp_type == ICMP_DEST_UNREACH || sum->icmp_type == ICMP_TIME_EXCEEDED ||
		    sum->icmp_type == ICMP_PARAMETERPROB)
			return masq_icmp_error_rev(skb, p, sum);
		if (sum->icmp_type != PP_ICMP_ECHOREPLY || masq_icmp_id(skb, p, &key.dport) < 0)
			return DROP_NONE;
		key.sport = 0;
		break;
	default:
		return DROP_NONE;
	}
	e = masq_reply_lookup(&key);
	if (!e)
		return DROP_NONE;
	ct_refresh(e, ct_now(), sum->ip_proto, ct_pkt_flags(sum->ip_proto, tcp_flags));
	/* writes: masq.rev.ipv4.daddr masq.rev.l4.dport */
	if (sum->ip_proto == IPPROTO_ICMP)
		reason = masq_icmp_rewrite(skb, p, sum->saddr, e->nat_addr, e->nat_port);
	else
		reason = nat4_rewrite(skb, p, sum->saddr, sum->sport, e->nat_addr, e->nat_port);
	if (reason != DROP_NONE)
		return DROP_MASQ_FAILED;
	masq_count(MASQ_STAT_REV);
	sum->lb.action = TRACE_LB_REV_MASQ;
	sum->lb.ct = TRACE_CT_REPLY;
	sum->lb.orig_saddr = sum->saddr;
	sum->lb.orig_daddr = sum->daddr;
	sum->lb.orig_sport = sum->sport;
	sum->lb.orig_dport = key.dport;
	sum->daddr = e->nat_addr;
	if (sum->ip_proto != IPPROTO_ICMP)
		sum->dport = e->nat_port;
	return DROP_NONE;
}

#endif /* PODPATH_MASQ_H */

/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Network policy: per-endpoint verdicts by peer identity, direction, protocol and port
 * (policy map, longest prefix match), and the flows policy let through (policy
 * conntrack), so replies pass and established flows cost one hash lookup. */
#ifndef PODPATH_POLICY_H
#define PODPATH_POLICY_H

#include "common.h"
#include "config.h"
#include "drop.h"
#include "maps.h"
#include "trace.h"

#ifndef POLICY_MAP_SIZE
#define POLICY_MAP_SIZE 262144
#endif
#ifndef POLICY_CT_MAP_SIZE
#define POLICY_CT_MAP_SIZE 65536
#endif

enum policy_dir {
	POLICY_INGRESS = 0, /* towards the endpoint: delivery to the pod */
	POLICY_EGRESS  = 1, /* from the endpoint: its veth's from-container */
};

enum policy_kind {
	POLICY_NONE         = 0,
	POLICY_ALLOW        = 1, /* an allow rule matches */
	POLICY_DENY         = 2, /* a deny rule matches: wins over every allow */
	POLICY_DEFAULT_DENY = 3, /* the endpoint is selected in this direction (prefix ep+dir):
				  * what no rule allows is denied */
};

/* Prefix lengths of struct policy_key (bits after prefixlen). */
#define POLICY_PREFIX_ENDPOINT 40  /* ep, dir: the default-deny marker */
#define POLICY_PREFIX_IDENTITY 96  /* ep, dir, identity: every protocol and port */
#define POLICY_PREFIX_PROTO    112 /* ... proto: every port */
#define POLICY_PREFIX_FULL     128 /* ... dport: 16 bits, fewer for a port range block */

/* Key of the LPM policy map. Fields are matched most significant byte first, so the
 * port is big-endian and a port range is a few prefix blocks. Identity 0 is the
 * wildcard peer (entity "all", an empty selector): looked up second. */
struct policy_key {
	__u32  prefixlen;
	__u32  ep;          /* the endpoint's host-side veth ifindex */
	__u8   dir;         /* enum policy_dir */
	__u8   _pad[3];
	__be32 identity;    /* the peer's security identity, big-endian */
	__u8   proto;       /* IPPROTO_*: TCP, UDP, SCTP, ICMP */
	__u8   _pad2;
	__be16 dport;       /* destination port of the flow (big-endian) */
};

struct policy_entry {
	__u32 kind;         /* enum policy_kind */
	__u32 rule;         /* the agent's number of the rule that produced it, for traces */
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_entry);
	__uint(max_entries, POLICY_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy SEC(".maps");

/* The policy revision: one u32 the agent raises after every policy map change. A
 * conntrack entry remembers the revision of its verdict; a forward packet of an
 * established flow seen under a newer revision is looked up again, as Cilium looks
 * up policy on every non-reply packet: a policy change reaches established flows at
 * their next forward packet, replies of allowed flows keep passing. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy_rev SEC(".maps");

/* The flows policy let through, by IPv4 5-tuple: one entry serves the egress check of
 * the source and the ingress check of the destination (one lookup per packet, even
 * when both pods are on this node). */
struct policy_ct_key {
	__be32 saddr;
	__be32 daddr;
	__be16 sport;       /* ICMP: 0 */
	__be16 dport;
	__u8   proto;
	__u8   _pad[3];
};

enum policy_ct_flags {
	POLICY_CT_REPLY = 1 << 0, /* the reverse of an allowed flow: passes without policy */
	POLICY_CT_AUDIT = 1 << 1, /* allowed only because of policy-audit-mode */
};

struct policy_ct_entry {
	/* policy_rev + 1 when the direction's check last allowed the flow; 0: never.
	 * Indexed by enum policy_dir. */
	__u32 rev[2];
	__u32 flags;        /* enum policy_ct_flags */
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct policy_ct_key);
	__type(value, struct policy_ct_entry);
	__uint(max_entries, POLICY_CT_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} policy_ct SEC(".maps");

/* The revision verdicts are stamped with: never 0. */
static __always_inline __u32 policy_revision(void)
{
	__u32 zero = 0;
	const __u32 *rev = bpf_map_lookup_elem(&policy_rev, &zero);

	return (rev ? *rev : 0) + 1;
}

/* The verdict of the policy map for one new flow: an explicit deny of either lookup
 * wins, then an allow, then the default-deny marker; no entry at all means the
 * endpoint is not selected in that direction (allowed). The agent already turned an
 * allow that a broader deny of the same peer covers into a deny. */
static __always_inline enum policy_kind policy_lookup(__u32 ep, __u8 dir, __u32 identity,
						      __u8 proto, __be16 dport, __u32 *rule)
{
	struct policy_key key = {
		.prefixlen = POLICY_PREFIX_FULL, .ep = ep, .dir = dir,
		.identity = bpf_htonl(identity), .proto = proto, .dport = dport,
	};
	const struct policy_entry *a, *b;
	__u32 ka, kb;

	a = bpf_map_lookup_elem(&policy, &key);
	key.identity = 0;
	b = identity ? bpf_map_lookup_elem(&policy, &key) : NULL;
	ka = a ? a->kind : POLICY_NONE;
	kb = b ? b->kind : POLICY_NONE;
	if (ka == POLICY_DENY || kb == POLICY_DENY) {
		*rule = ka == POLICY_DENY ? a->rule : b->rule;
		return POLICY_DENY;
	}
	if (ka == POLICY_ALLOW || kb == POLICY_ALLOW) {
		*rule = ka == POLICY_ALLOW ? a->rule : b->rule;
		return POLICY_ALLOW;
	}
	*rule = 0;
	if (ka == POLICY_DEFAULT_DENY || kb == POLICY_DEFAULT_DENY)
		return POLICY_DEFAULT_DENY;
	return POLICY_NONE;
}

/* A policy verdict event (bpf-events-policy-verdict-enabled) with the peer identity;
 * denied and audited ones name the drop reason. */
static __always_inline void policy_trace_verdict(struct __ctx_buff *skb, enum obs_point point,
						 enum trace_verdict verdict, enum drop_reason reason,
						 const struct pkt_summary *sum, __u32 identity)
{
	struct trace_tun tun = { .identity = identity };

	if (!CONFIG.policy_verdict_events)
		return;
	trace_emit(skb, point, verdict, reason, PASS_NONE, 0, sum, &tun);
}

/* The identity of an address as the ipcache knows it (world when unknown). */
static __always_inline __u32 policy_ipcache_identity(__be32 addr)
{
	const struct ipcache_info *info = ipcache_lookup(addr);

	return info && info->sec_identity ? info->sec_identity : 2 /* world */;
}

/* The flow's key: the tuple the flow was allowed as. A reply the load balancer
 * translated back is judged on the tuple the backend sent. */
static __always_inline void policy_ct_key_of(struct policy_ct_key *ck, const struct pkt_summary *sum)
{
	int revnat = sum->lb.action == TRACE_LB_REVNAT;

	ck->proto = sum->ip_proto;
	ck->saddr = revnat ? sum->lb.orig_saddr : sum->saddr;
	ck->daddr = revnat ? sum->lb.orig_daddr : sum->daddr;
	if (sum->ip_proto == IPPROTO_TCP || sum->ip_proto == IPPROTO_UDP ||
	    sum->ip_proto == IPPROTO_SCTP) {
		ck->sport = revnat ? sum->lb.orig_sport : sum->sport;
		ck->dport = revnat ? sum->lb.orig_dport : sum->dport;
	}
}

/* One direction's check of a flow whose conntrack entry (a copy, zero when none) is
 * ce: passes when the entry is a reply or this direction allowed it under the
 * current revision, else looks the policy map up (identity 0: the peer's from the
 * ipcache). Sets *dirty when ce changed and must be written back. */
static __always_inline enum drop_reason policy_judge(struct __ctx_buff *skb, enum obs_point point,
						     __u32 ep, __u8 dir, __u32 identity,
						     const struct pkt_summary *sum, const struct policy_ct_key *ck,
						     struct policy_ct_entry *ce, __u32 rev, int *dirty)
{
	enum policy_kind kind;
	__u32 rule, *slot = dir == POLICY_EGRESS ? &ce->rev[1] : &ce->rev[0];

	if ((ce->flags & POLICY_CT_REPLY) || *slot == rev)
		return DROP_NONE;
	if (!identity)
		identity = policy_ipcache_identity(dir == POLICY_EGRESS ? ck->daddr : ck->saddr);
	kind = policy_lookup(ep, dir, identity, ck->proto, ck->dport, &rule);
	if (kind == POLICY_DENY || kind == POLICY_DEFAULT_DENY) {
		enum drop_reason reason = kind == POLICY_DENY ? DROP_POLICY_DENY_RULE : DROP_POLICY_DENIED;

		if (!CONFIG.policy_audit_mode) {
			/* As Cilium: a verdict event for every drop, for allows on new flows. */
			policy_trace_verdict(skb, point, VERDICT_POLICY_DENIED, reason, sum, identity);
			return reason;
		}
		if (!*slot)
			policy_trace_verdict(skb, point, VERDICT_POLICY_AUDIT, reason, sum, identity);
		ce->flags |= POLICY_CT_AUDIT;
	} else if (kind == POLICY_ALLOW && !*slot) {
		/* Only where policy applies: an endpoint no policy selects has no verdicts. */
		policy_trace_verdict(skb, point, VERDICT_POLICY_ALLOWED, DROP_NONE, sum, identity);
	}
	*slot = rev;
	*dirty = 1;
	return DROP_NONE;
}

/* Writes the flow's entry and, for a new flow, the reverse one its replies match. */
static __always_inline void policy_ct_commit(struct policy_ct_key *ck, const struct policy_ct_entry *ce,
					     int existed)
{
	struct policy_ct_entry rev = { .flags = POLICY_CT_REPLY };
	__be32 a = ck->saddr;
	__be16 port = ck->sport;

	bpf_map_update_elem(&policy_ct, ck, ce, BPF_ANY);
	if (existed)
		return;
	ck->saddr = ck->daddr;
	ck->daddr = a;
	ck->sport = ck->dport;
	ck->dport = port;
	bpf_map_update_elem(&policy_ct, ck, &rev, BPF_NOEXIST);
}

/* Enforces ep's policy in direction dir on the packet sum describes; the peer's
 * identity is given (tunnel: the VNI's) or 0 to read it from the ipcache. Returns
 * DROP_NONE to let the packet pass, or the drop reason (the caller traces the drop
 * and drops). Replies of allowed flows and forward packets of flows allowed under the
 * current revision pass on one conntrack lookup. */
static __always_inline enum drop_reason policy_check(struct __ctx_buff *skb, enum obs_point point,
						     __u32 ep, __u8 dir, __u32 identity,
						     const struct pkt_summary *sum)
{
	struct policy_ct_key ck = {};
	struct policy_ct_entry ce = {};
	const struct policy_ct_entry *found;
	enum drop_reason reason;
	int dirty = 0;
	__u32 rev;

	if (!CONFIG.policy_enabled)
		return DROP_NONE;
	policy_ct_key_of(&ck, sum);
	rev = policy_revision();
	found = bpf_map_lookup_elem(&policy_ct, &ck);
	if (found)
		ce = *found;
	reason = policy_judge(skb, point, ep, dir, identity, sum, &ck, &ce, rev, &dirty);
	if (reason == DROP_NONE && dirty)
		policy_ct_commit(&ck, &ce, found != NULL);
	return reason;
}

/* Both checks of a packet between two pods of this node, egress of the source (src_ep)
 * then ingress of the destination (dst_ep), on one conntrack lookup. Returns what
 * policy_check() returns. */
static __always_inline enum drop_reason policy_check_local(struct __ctx_buff *skb, __u32 src_ep,
							   __u32 dst_ep, const struct pkt_summary *sum)
{
	struct policy_ct_key ck = {};
	struct policy_ct_entry ce = {};
	const struct policy_ct_entry *found;
	enum drop_reason reason;
	int dirty = 0;
	__u32 rev;

	if (!CONFIG.policy_enabled)
		return DROP_NONE;
	policy_ct_key_of(&ck, sum);
	rev = policy_revision();
	found = bpf_map_lookup_elem(&policy_ct, &ck);
	if (found)
		ce = *found;
	reason = policy_judge(skb, OBS_FROM_CONTAINER, src_ep, POLICY_EGRESS, 0, sum, &ck, &ce, rev, &dirty);
	if (reason == DROP_NONE)
		reason = policy_judge(skb, OBS_FROM_CONTAINER, dst_ep, POLICY_INGRESS, 0, sum, &ck, &ce, rev, &dirty);
	if (reason == DROP_NONE && dirty)
		policy_ct_commit(&ck, &ce, found != NULL);
	return reason;
}

/* Puts the policy types into BTF for bpf2go. */
const struct {
	enum policy_dir dir;
	enum policy_kind kind;
	enum policy_ct_flags ct_flags;
} pp_btf_anchor_policy = {};

#endif /* PODPATH_POLICY_H */

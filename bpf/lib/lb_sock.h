/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Socket-LB: connect-time service translation for cgroup sock_addr programs (bpf_sock.c). */
#ifndef PODPATH_LB_SOCK_H
#define PODPATH_LB_SOCK_H

#include "common.h"
#include "config.h"
#include "lb.h"

#ifndef LB_SOCK_REV_MAP_SIZE
#define LB_SOCK_REV_MAP_SIZE 65536
#endif

/* What a translated socket talks to: the backend a connect()/sendmsg() got, per
 * socket (its cookie), so recvmsg() and getpeername() can show the frontend again. */
struct lb_sock_rev_key {
	__u64  cookie;  /* bpf_get_socket_cookie() */
	__be32 addr;    /* the backend */
	__be16 port;
	__u8   proto;
	__u8   _pad;
};

struct lb_sock_rev {
	__be32 addr;    /* the frontend the application asked for */
	__be16 port;
	__u16  _pad;
	__u32  backend_id;
	__u32  rev_nat_id;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_sock_rev_key);
	__type(value, struct lb_sock_rev);
	__uint(max_entries, LB_SOCK_REV_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_sock_rev SEC(".maps");

/* The socket's protocol, IPPROTO_TCP or IPPROTO_UDP, 0 for anything else. */
static __always_inline __u8 lb_sock_proto(const struct bpf_sock_addr *ctx)
{
	if (ctx->protocol == IPPROTO_TCP)
		return IPPROTO_TCP;
	if (ctx->protocol == IPPROTO_UDP)
		return IPPROTO_UDP;
	return 0;
}

/* Whether this socket is socket-LB's: bpf-lb-sock on, and with bpf-lb-sock-hostns-only
 * only sockets of the node's own namespace (Cilium compares the netns cookie too);
 * the others (pods) keep the per-packet path of bpf_lxc. */
static __always_inline int lb_sock_applies(struct bpf_sock_addr *ctx)
{
	if (!CONFIG.lb_enabled || !CONFIG.lb_sock)
		return 0;
	if (CONFIG.lb_sock_hostns_only &&
	    bpf_get_netns_cookie(ctx) != CONFIG.lb_sock_host_netns_cookie)
		return 0;
	return 1;
}

/* connect4 / sendmsg4: a destination that is a frontend becomes one of its backends,
 * chosen as bpf_lxc chooses (lb_select(): Maglev or random; the flow hash has no
 * source yet at connect(): source address and port count as 0), and the choice is remembered per
 * socket in lb_sock_rev. A frontend without an active backend is left alone: the
 * per-packet path then answers as it does for any client (its drop or reject). */
static __always_inline void lb_sock_xlate(struct bpf_sock_addr *ctx)
{
	struct lb_service_key key = { .scope = LB_SCOPE_EXTERNAL };
	struct lb_sock_rev_key rkey = {};
	struct lb_sock_rev rev = {};
	struct pkt_summary sum = {};
	const struct lb_service *svc;
	const struct lb_backend *be;
	__u32 backend_id = 0;
	__u8 proto = lb_sock_proto(ctx);

	if (!proto || !lb_sock_applies(ctx))
		return;
	key.addr = ctx->user_ip4;
	key.dport = (__be16)ctx->user_port;
	key.proto = proto;
	svc = bpf_map_lookup_elem(&lb_services, &key);
	if (!svc)
		return;
	/* sessionAffinity ClientIP keys on the client's address, which a socket does not
	 * have before connect(): such services are left to the per-packet path. */
	if (svc->flags & SVC_F_AFFINITY)
		return;
	sum.daddr = key.addr;
	sum.dport = key.dport;
	sum.ip_proto = proto;
	be = lb_select_algo(svc, &sum, &backend_id);
	if (!be)
		return;
	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.addr = be->addr;
	rkey.port = be->port;
	rkey.proto = proto;
	rev.addr = key.addr;
	rev.port = key.dport;
	rev.backend_id = backend_id;
	rev.rev_nat_id = svc->rev_nat_id;
	if (bpf_map_update_elem(&lb_sock_rev, &rkey, &rev, BPF_ANY) < 0)
		return;
	ctx->user_ip4 = be->addr;
	ctx->user_port = be->port;
}

/* recvmsg4 / getpeername4: a peer that is the backend this socket was translated to
 * shows as the frontend it asked for. */
static __always_inline void lb_sock_rev_xlate(struct bpf_sock_addr *ctx)
{
	struct lb_sock_rev_key rkey = {};
	const struct lb_sock_rev *rev;
	__u8 proto = lb_sock_proto(ctx);

	if (!proto || !lb_sock_applies(ctx))
		return;
	rkey.cookie = bpf_get_socket_cookie(ctx);
	rkey.addr = ctx->user_ip4;
	rkey.port = (__be16)ctx->user_port;
	rkey.proto = proto;
	rev = bpf_map_lookup_elem(&lb_sock_rev, &rkey);
	if (!rev)
		return;
	ctx->user_ip4 = rev->addr;
	ctx->user_port = rev->port;
}

#endif /* PODPATH_LB_SOCK_H */

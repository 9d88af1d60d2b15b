/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* The packet context the library headers work on: struct __ctx_buff is the tc
 * program's struct __sk_buff, or with PP_XDP defined before the first include (only
 * bpf_xdp.c) the XDP program's struct xdp_md. Every helper and field the headers
 * use goes through a ctx_*() wrapper here, so one copy of the load balancer,
 * conntrack and NAT code serves both hooks (Cilium's __ctx_buff does the same).
 * For tc the wrappers are the skb helpers themselves: the tc objects compile to the
 * same instructions as before. For XDP:
 *   load/store bytes      bpf_xdp_load_bytes()/bpf_xdp_store_bytes();
 *   l3/l4 csum replace    done in BPF on the checksum field, as the kernel's
 *                         inet_proto_csum_replace*() do (no skb->csum to keep);
 *   adjust room           growing at NET (the DSR IPv4 option) or MAC (tunnel
 *                         headers): bpf_xdp_adjust_head() and the headers before
 *                         the gap moved to the new start;
 *   change tail           bpf_xdp_adjust_tail();
 *   length, ifindex       data_end - data, ingress_ifindex; no GSO, no skb->hash;
 *   skb-only helpers      (redirect_peer/_neigh, tunnel keys, change_type) return
 *                         -EOPNOTSUPP: the XDP program hands such packets to tc
 *                         (XDP_PASS) before any of them would be needed. */
#ifndef PODPATH_CTX_H
#define PODPATH_CTX_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#ifdef PP_XDP
#define __ctx_buff xdp_md
#else
#define __ctx_buff __sk_buff
#endif

/* ctx->data and ctx->data_end, each read by one instruction at its use. Written as
 * plain field reads, clang may compute &ctx->data_end once, spill it and load through
 * the spilled pointer later, which the verifier refuses ("dereference of modified ctx
 * ptr") once a program grows (Cilium's ctx_data()/ctx_data_end() do the same). */
static __always_inline void *ctx_data(const struct __ctx_buff *ctx)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(ctx), "i"(__builtin_offsetof(struct __ctx_buff, data)));
	return p;
}

static __always_inline void *ctx_data_end(const struct __ctx_buff *ctx)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(ctx), "i"(__builtin_offsetof(struct __ctx_buff, data_end)));
	return p;
}

#define PP_EOPNOTSUPP 95

#ifndef PP_XDP

#define CTX_ACT_DROP 2 /* TC_ACT_SHOT */

#define ctx_len(ctx)              ((ctx)->len)
#define ctx_gso_size(ctx)         ((ctx)->gso_size)
#define ctx_ifindex(ctx)          ((ctx)->ifindex)
#define ctx_ingress_ifindex(ctx)  ((ctx)->ingress_ifindex)
#define ctx_hash(ctx)             ((ctx)->hash)
#define ctx_load_bytes            bpf_skb_load_bytes
#define ctx_store_bytes           bpf_skb_store_bytes
#define ctx_l3_csum_replace       bpf_l3_csum_replace
#define ctx_l4_csum_replace       bpf_l4_csum_replace
#define ctx_adjust_room           bpf_skb_adjust_room
#define ctx_change_tail           bpf_skb_change_tail
#define ctx_redirect_peer         bpf_redirect_peer
#define ctx_redirect(ctx, ifindex, flags) bpf_redirect(ifindex, flags)
#define ctx_redirect_neigh        bpf_redirect_neigh
#define ctx_get_tunnel_key        bpf_skb_get_tunnel_key
#define ctx_set_tunnel_key        bpf_skb_set_tunnel_key
#define ctx_change_type           bpf_skb_change_type
#define ctx_get_hash_recalc       bpf_get_hash_recalc

#else /* PP_XDP */

#define CTX_ACT_DROP XDP_DROP

static __always_inline __u32 ctx_len(const struct xdp_md *ctx)
{
	return (__u32)((long)ctx_data_end(ctx) - (long)ctx_data(ctx));
}

#define ctx_gso_size(ctx)         0
#define ctx_ifindex(ctx)          ((ctx)->ingress_ifindex)
#define ctx_ingress_ifindex(ctx)  ((ctx)->ingress_ifindex)
#define ctx_hash(ctx)             0

static __always_inline long ctx_load_bytes(struct xdp_md *ctx, __u32 off, void *to, __u32 len)
{
	return bpf_xdp_load_bytes(ctx, off, to, len);
}

static __always_inline long ctx_store_bytes(struct xdp_md *ctx, __u32 off, const void *from,
					    __u32 len, __u64 flags)
{
	return bpf_xdp_store_bytes(ctx, off, (void *)from, len);
}

/* One's complement helpers, as csum.h has them (csum.h includes common.h, which
 * includes this file, so they are repeated here under their own names). */
static __always_inline __u32 ctx_csum_add(__u32 a, __u32 b)
{
	a += b;
	return a + (a < b);
}

static __always_inline __u16 ctx_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)~sum;
}

/* The checksum at off gets the change from -> to (size 2 or 4 in flags' low bits),
 * or with size 0 the partial-sum difference in to: ~(~HC + ~from + to), as
 * inet_proto_csum_replace4()/_by_diff() compute it. BPF_F_MARK_MANGLED_0 (UDP): a
 * checksum of 0 (none) stays 0, a result of 0 is written as 0xffff. */
static __always_inline long ctx_csum_replace(struct xdp_md *ctx, __u32 off, __u64 from,
					     __u64 to, __u64 flags, int l4)
{
	__u32 size = flags & BPF_F_HDR_FIELD_MASK;
	__u16 check;
	__u32 diff;

	if (bpf_xdp_load_bytes(ctx, off, &check, sizeof(check)) < 0)
		return -1;
	if (l4 && (flags & BPF_F_MARK_MANGLED_0) && !check)
		return 0;
	if (size == 0)
		diff = (__u32)to;
	else if (size == 2)
		diff = ctx_csum_add((__u16)~(__u16)from, (__u16)to);
	else if (size == 4)
		diff = ctx_csum_add(~(__u32)from, (__u32)to);
	else
		return -1;
	check = ctx_csum_fold(ctx_csum_add((__u16)~check, diff));
	if (l4 && (flags & BPF_F_MARK_MANGLED_0) && !check)
		check = 0xffff;
	return bpf_xdp_store_bytes(ctx, off, &check, sizeof(check));
}

#define ctx_l3_csum_replace(ctx, off, from, to, flags) ctx_csum_replace(ctx, off, from, to, flags, 0)
#define ctx_l4_csum_replace(ctx, off, from, to, flags) ctx_csum_replace(ctx, off, from, to, flags, 1)

/* The headers that stay in front of the gap ctx_adjust_room() opens: Ethernet, and for
 * BPF_ADJ_ROOM_NET the 20-byte IPv4 base header (the DSR option goes right after it). */
#define CTX_XDP_MAC_LEN 14
#define CTX_XDP_NET_LEN (14 + 20)

/* Grows the packet by len_diff bytes after the Ethernet header (BPF_ADJ_ROOM_MAC) or
 * after the IPv4 base header (BPF_ADJ_ROOM_NET). Shrinking is never needed at XDP. */
static __always_inline long ctx_adjust_room(struct xdp_md *ctx, __s32 len_diff, __u32 mode,
					    __u64 flags)
{
	__u8 hdr[CTX_XDP_NET_LEN];
	void *data, *data_end;

	if (len_diff <= 0 || len_diff > 256)
		return -PP_EOPNOTSUPP;
	if (mode == BPF_ADJ_ROOM_NET) {
		if (bpf_xdp_load_bytes(ctx, 0, hdr, CTX_XDP_NET_LEN) < 0 ||
		    bpf_xdp_adjust_head(ctx, -len_diff) < 0)
			return -1;
		data = ctx_data(ctx);
		data_end = ctx_data_end(ctx);
		if (data + CTX_XDP_NET_LEN > data_end)
			return -1;
		__builtin_memcpy(data, hdr, CTX_XDP_NET_LEN);
		return 0;
	}
	if (mode == BPF_ADJ_ROOM_MAC) {
		if (bpf_xdp_load_bytes(ctx, 0, hdr, CTX_XDP_MAC_LEN) < 0 ||
		    bpf_xdp_adjust_head(ctx, -len_diff) < 0)
			return -1;
		data = ctx_data(ctx);
		data_end = ctx_data_end(ctx);
		if (data + CTX_XDP_MAC_LEN > data_end)
			return -1;
		__builtin_memcpy(data, hdr, CTX_XDP_MAC_LEN);
		return 0;
	}
	return -PP_EOPNOTSUPP;
}

/* The hash tunnel_src_port() spreads the outer UDP source port with, where tc takes
 * the kernel's flow hash (a secret-keyed hash XDP cannot reproduce): a mix of the
 * IPv4 addresses, protocol and first L4 word (ports), so one flow keeps one port and
 * flows spread over the range. Not the tc path's port for the same flow. */
static __always_inline __u32 ctx_xdp_flow_hash(struct xdp_md *ctx)
{
	struct {
		__u8  vihl, tos;
		__u16 tot_len, id, frag_off;
		__u8  ttl, protocol;
		__u16 check;
		__u32 saddr, daddr, ports;
	} h;
	__u32 x;

	if (bpf_xdp_load_bytes(ctx, 14, &h, sizeof(h)) < 0)
		return 1;
	if ((h.vihl & 0xf) != 5)
		h.ports = 0;
	x = h.saddr * 0x9e3779b1u ^ h.daddr;
	x = (x ^ (x >> 16)) * 0x85ebca6bu ^ h.ports ^ h.protocol;
	x = (x ^ (x >> 13)) * 0xc2b2ae35u;
	return (x ^ (x >> 16)) | 1;
}

static __always_inline long ctx_change_tail(struct xdp_md *ctx, __u32 len, __u64 flags)
{
	return bpf_xdp_adjust_tail(ctx, (int)len - (int)ctx_len(ctx));
}

/* Out of ifindex: XDP_TX when that is the device the packet came in on (no
 * redirect map or peer lookup needed), else bpf_redirect(). */
static __always_inline long ctx_redirect(const struct xdp_md *ctx, __u32 ifindex, __u64 flags)
{
	if (ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(ifindex, flags);
}

/* The arguments are evaluated (void) so that the tc-only paths still compile warning-free. */
#define ctx_redirect_peer(ifindex, flags)           ({ (void)(ifindex); -PP_EOPNOTSUPP; })
#define ctx_redirect_neigh(ifindex, nh, len, flags) ({ (void)(ifindex); (void)(nh); -PP_EOPNOTSUPP; })
#define ctx_get_tunnel_key(ctx, key, len, flags)    ({ (void)(ctx); (void)(key); -PP_EOPNOTSUPP; })
#define ctx_set_tunnel_key(ctx, key, len, flags)    ({ (void)(ctx); (void)(key); -PP_EOPNOTSUPP; })
#define ctx_change_type(ctx, type)                  ({ (void)(ctx); -PP_EOPNOTSUPP; })
#define ctx_get_hash_recalc(ctx)                    ctx_xdp_flow_hash(ctx)

#endif /* PP_XDP */

#endif /* PODPATH_CTX_H */

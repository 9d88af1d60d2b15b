/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Geneve wire format (RFC 8926): base header, TLV options, building and checking options. */
#ifndef PODPATH_GENEVE_H
#define PODPATH_GENEVE_H

#include "common.h"
#include "drop.h"

#define GENEVE_PROTO_ETH        0x6558 /* Transparent Ethernet Bridging: an Ethernet frame follows */
#define GENEVE_F_OAM            0x80   /* O: control message */
#define GENEVE_F_CRITICAL       0x40   /* C: critical options present */
#define GENEVE_OPT_CLASS_CILIUM 0x014B /* Cilium's option class (DSR) */
#define GENEVE_OPT_TYPE_CRIT    0x80   /* the critical bit of an option's type */
#define GENEVE_OPT_TYPE_DSR     0x01   /* Cilium's DSR option: service address and port (dsr.h) */
#define GENEVE_OPT_TYPE_TEST    0x7F   /* podpath test option: see GENEVE_TEST_OPT in encap.h */

/* Options this datapath may add to one packet (the base header allows 252 bytes). */
#ifndef GENEVE_MAX_OPT_BYTES
#define GENEVE_MAX_OPT_BYTES 32
#endif
/* Options a receiver walks at most: each takes 4 bytes or more out of 252. */
#define GENEVE_MAX_OPTS 63

/* The 8-byte base header. */
struct genevehdr {
	__u8   ver_optlen; /* version (2 bits, 0) and options length in 4-byte words (6 bits) */
	__u8   flags;      /* GENEVE_F_OAM, GENEVE_F_CRITICAL, 6 reserved bits */
	__be16 proto;      /* EtherType of the payload */
	__u8   vni[3];     /* virtual network identifier: the source security identity */
	__u8   reserved;
};

/* The 4-byte header of one option; its data follows. */
struct geneve_opt_hdr {
	__be16 opt_class;
	__u8   type;       /* GENEVE_OPT_TYPE_CRIT and 7 bits of type */
	__u8   length;     /* 3 reserved bits and the data length in 4-byte words (5 bits) */
};

/* Options to put into one packet, TLV after TLV, in wire format. */
struct geneve_opts {
	__u32 len;         /* bytes used: a multiple of 4, at most GENEVE_MAX_OPT_BYTES */
	__u8  data[GENEVE_MAX_OPT_BYTES] __attribute__((aligned(4)));
};

/* Appends one option: class, type, and data_len bytes of data (a multiple of 4, at
 * most 124). Callers pass constants for the layout, so the offsets fold at compile
 * time. Returns 0, or -1 when the option does not fit (o is left unchanged). */
static __always_inline int geneve_opt_append(struct geneve_opts *o, __u16 opt_class, __u8 type,
					     const void *data, __u32 data_len)
{
	__u32 off = o->len;
	struct geneve_opt_hdr *h;
	/* writes: geneve.opt.dsr */
	if (data_len % 4 || data_len > 124 || off + sizeof(*h) + data_len > GENEVE_MAX_OPT_BYTES)
		return -1;
	h = (struct geneve_opt_hdr *)&o->data[off];
	h->opt_class = bpf_htons(opt_class);
	h->type = type;
	h->length = data_len / 4;
	__builtin_memcpy(&o->data[off + sizeof(*h)], data, data_len);
	o->len = off + sizeof(*h) + data_len;
	return 0;
}

static __always_inline __u32 geneve_vni(const struct genevehdr *gh)
{
	return (__u32)gh->vni[0] << 16 | (__u32)gh->vni[1] << 8 | gh->vni[2];
}

static __always_inline void geneve_set_vni(struct genevehdr *gh, __u32 vni)
{
	gh->vni[0] = vni >> 16;
	gh->vni[1] = vni >> 8;
	gh->vni[2] = vni;
}

/* Walks the opt_len bytes of options at off (the caller checked they are inside the
 * packet): every option must end inside them, and none may be critical (RFC 8926 3.5:
 * an endpoint drops packets with critical options it does not know; the DSR option is
 * not critical either). */
static __always_inline enum drop_reason geneve_opts_check(struct __ctx_buff *skb, __u32 off,
							  __u32 opt_len)
{
	void *data = ctx_data(skb);
	void *data_end = ctx_data_end(skb);
	__u32 end = off + opt_len;

	/* A real loop, not unrolled: the programs must stay within the 32K-instruction
	 * jump range of one BPF program (the verifier handles bounded loops). */
#pragma clang loop unroll(disable)
	for (int i = 0; i < GENEVE_MAX_OPTS; i++) {
		struct geneve_opt_hdr *h;

		if (off >= end)
			break;
		h = data + off;
		if ((void *)(h + 1) > data_end)
			return DROP_GENEVE_OPT_LEN;
		if (h->type & GENEVE_OPT_TYPE_CRIT)
			return DROP_GENEVE_CRITICAL_OPT;
		off += sizeof(*h) + (h->length & 0x1f) * 4;
	}
	return off == end ? DROP_NONE : DROP_GENEVE_OPT_LEN;
}

#endif /* PODPATH_GENEVE_H */

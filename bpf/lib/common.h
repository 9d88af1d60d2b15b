/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Kernel UAPI includes and small helpers every podpath program needs. */
#ifndef PODPATH_COMMON_H
#define PODPATH_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

/* linux/icmp.h drags in libc headers that do not build for the BPF target. */
struct icmp_head {
	__u8  type;
	__u8  code;
	__u16 checksum;
};

#ifndef ICMP_DEST_UNREACH
#define ICMP_DEST_UNREACH  3
#define ICMP_TIME_EXCEEDED 11
#define ICMP_FRAG_NEEDED   4
#endif
#ifndef ICMP_PARAMETERPROB
#define ICMP_PARAMETERPROB 12
#endif

#ifndef AF_INET
#define AF_INET 2
#endif

#ifndef ETH_ALEN
#define ETH_ALEN 6
#endif

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

/* skb->data and skb->data_end, each read by one instruction at its use. Written as
 * plain field reads, clang may compute &skb->data_end once, spill it and load through
 * the spilled pointer later, which the verifier refuses ("dereference of modified ctx
 * ptr") once a program grows (Cilium's ctx_data()/ctx_data_end() do the same). */
static __always_inline void *ctx_data(const struct __sk_buff *skb)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data)));
	return p;
}

static __always_inline void *ctx_data_end(const struct __sk_buff *skb)
{
	void *p;

	asm volatile("%0 = *(u32 *)(%1 + %2)" : "=r"(p) : "r"(skb), "i"(__builtin_offsetof(struct __sk_buff, data_end)));
	return p;
}

/* tcx return codes (include/uapi/linux/bpf.h names them TCX_*; older headers lack them). */
#define PP_TCX_NEXT     -1
#define PP_TCX_PASS     0
#define PP_TCX_DROP     2

#endif /* PODPATH_COMMON_H */

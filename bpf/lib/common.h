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
#include "ctx.h"

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

/* tcx return codes (include/uapi/linux/bpf.h names them TCX_*; older headers lack them). */
#define PP_TCX_NEXT     -1
#define PP_TCX_PASS     0
#define PP_TCX_DROP     2

#endif /* PODPATH_COMMON_H */

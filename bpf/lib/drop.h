/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Drop reasons: one enum for every program; Go reads the names from BTF. */
#ifndef PODPATH_DROP_H
#define PODPATH_DROP_H

enum drop_reason {
	DROP_NONE            = 0,
	DROP_TRUNCATED_ETH   = 1, /* shorter than an Ethernet header */
	DROP_TRUNCATED_IPV4  = 2, /* shorter than the IPv4 header it announces */
	DROP_BAD_IHL         = 3, /* IPv4 IHL below 5 words */
	DROP_BAD_IP_VERSION  = 4, /* EtherType IPv4 but version field is not 4 */
	DROP_BAD_TOTAL_LEN   = 5, /* IPv4 total length shorter than its header or longer than the frame */
	DROP_TRUNCATED_L4    = 6, /* TCP/UDP/ICMP header cut short */
	DROP_NOT_IPV4        = 7, /* program handles IPv4 only and this is something else */
	DROP_CSUM_L3         = 8, /* bpf_l3_csum_replace() failed while rewriting the IPv4 header */
	__DROP_REASON_MAX,
};

#endif /* PODPATH_DROP_H */

// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* kdrop: the harness's witness of kernel drops. Attached to the kernel's
 * skb:kfree_skb tracepoint (tp_btf), it records every packet the kernel frees as
 * dropped in one of the run's network namespaces (the netns inodes the harness puts
 * in kdrop_netns): the namespace, the device, the drop reason, where in the kernel,
 * and the first bytes of the packet's network header. Not part of the datapath. */

#include <linux/types.h>
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

/* The kernel's own layouts, only the fields read here; CO-RE relocates the offsets
 * against the running kernel's BTF. */
struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct net_device {
	int ifindex;
	struct {
		struct net *net;
	} nd_net;
} __attribute__((preserve_access_index));

struct sock_common {
	struct {
		struct net *net;
	} skc_net;
} __attribute__((preserve_access_index));

struct sock {
	struct sock_common __sk_common;
} __attribute__((preserve_access_index));

struct sk_buff {
	struct net_device *dev;
	struct sock *sk;
	unsigned int len;
	__u16 protocol;
	__u16 network_header;
	unsigned char *head;
} __attribute__((preserve_access_index));

#define KDROP_HDR_LEN 64

/* One dropped packet, as the harness reads it from kdrop_events. */
struct kdrop_record {
	__u64 ktime;    /* bpf_ktime_get_ns() */
	__u64 location; /* kernel address that freed the packet */
	__u32 netns;    /* inode of the namespace (of skb->dev, else of skb->sk) */
	__u32 ifindex;  /* skb->dev's ifindex; 0 when the packet had no device */
	__u32 reason;   /* enum skb_drop_reason */
	__u32 len;      /* skb->len */
	__u16 protocol; /* skb->protocol, network order */
	__u16 hdr_len;  /* bytes of hdr filled */
	__u8 hdr[KDROP_HDR_LEN]; /* from the network header on */
};

/* kdrop_netns: the run's namespaces by inode (value: unused, 1). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u32);
} kdrop_netns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} kdrop_events SEC(".maps");

/* kdrop_lost counts records the ring buffer had no room for. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} kdrop_lost SEC(".maps");

/* Anchor for bpf2go -type kdrop_record. */
const struct kdrop_record *unused_kdrop_record __attribute__((unused));

/* tp_btf/kfree_skb: (struct sk_buff *skb, void *location, enum skb_drop_reason reason,
 * struct sock *rx_sk). */
SEC("tp_btf/kfree_skb")
int kdrop(__u64 *ctx)
{
	struct sk_buff *skb = (struct sk_buff *)ctx[0];
	struct net_device *dev;
	struct kdrop_record *rec;
	unsigned char *head;
	__u32 inum = 0, zero = 0;
	__u16 nh;
	__u64 *lost;

	dev = BPF_CORE_READ(skb, dev);
	if (dev)
		inum = BPF_CORE_READ(dev, nd_net.net, ns.inum);
	else if (BPF_CORE_READ(skb, sk))
		inum = BPF_CORE_READ(skb, sk, __sk_common.skc_net.net, ns.inum);
	if (!inum || !bpf_map_lookup_elem(&kdrop_netns, &inum))
		return 0;

	rec = bpf_ringbuf_reserve(&kdrop_events, sizeof(*rec), 0);
	if (!rec) {
		lost = bpf_map_lookup_elem(&kdrop_lost, &zero);
		if (lost)
			__sync_fetch_and_add(lost, 1);
		return 0;
	}
	rec->ktime = bpf_ktime_get_ns();
	rec->location = ctx[1];
	rec->reason = (__u32)ctx[2];
	rec->netns = inum;
	rec->ifindex = dev ? BPF_CORE_READ(dev, ifindex) : 0;
	rec->len = BPF_CORE_READ(skb, len);
	rec->protocol = BPF_CORE_READ(skb, protocol);
	rec->hdr_len = 0;
	__builtin_memset(rec->hdr, 0, sizeof(rec->hdr));
	nh = BPF_CORE_READ(skb, network_header);
	head = BPF_CORE_READ(skb, head);
	if (head && nh != (__u16)~0U &&
	    !bpf_probe_read_kernel(rec->hdr, sizeof(rec->hdr), head + nh))
		rec->hdr_len = sizeof(rec->hdr);
	bpf_ringbuf_submit(rec, 0);
	return 0;
}

char __license[] SEC("license") = "GPL";

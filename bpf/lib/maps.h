/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Maps shared by the datapath objects, pinned by name so bpf_lxc and bpf_host share them. */
#ifndef PODPATH_MAPS_H
#define PODPATH_MAPS_H

#include "common.h"

/* Default sizes; the Go loader may override them (MapSpec.MaxEntries) before load. */
#ifndef ENDPOINTS_MAP_SIZE
#define ENDPOINTS_MAP_SIZE 65535
#endif
#ifndef IPCACHE_MAP_SIZE
#define IPCACHE_MAP_SIZE 512000
#endif
#ifndef NODES_MAP_SIZE
#define NODES_MAP_SIZE 16384
#endif

enum endpoint_flags {
	ENDPOINT_F_HOST = 1 << 0, /* the node itself: traffic to it goes to the stack */
};

/* A local endpoint (a pod of this node, or the node itself), by IPv4 address. */
struct endpoint_key {
	__be32 ip4;
};

struct endpoint_info {
	__u32 ifindex;          /* host-side veth (lxc...), in the node's namespace */
	__u8  mac[6];           /* the pod's eth0 */
	__u8  node_mac[6];      /* the host-side veth: the pod's router */
	__u32 sec_identity;     /* security identity of the pod */
	__u32 flags;            /* enum endpoint_flags */
};

/* Every known IPv4 prefix (pods anywhere, nodes, world), longest prefix match. */
struct ipcache_key {
	__u32  prefixlen;       /* bits of ip4 that count, 0..32 */
	__be32 ip4;
};

struct ipcache_info {
	__u32  sec_identity;
	__be32 tunnel_endpoint; /* node IP that owns the prefix; 0 = local or world */
	__u32  flags;           /* reserved, 0 */
};

/* Cluster nodes by underlay IPv4: the tunnel endpoints encapsulation may send to and
 * the only outer sources decapsulation accepts. */
struct node_key {
	__be32 ip4;
};

struct node_info {
	__u32 node_id;
	__u32 flags;            /* reserved, 0 */
	__u32 mtu;              /* tunnel MTU towards this node: the largest inner IPv4
				 * packet that crosses the underlay path to it once
				 * encapsulated (path MTU - overhead), as the agent learnt
				 * it; 0 = CONFIG.tunnel_mtu. Only ever lowers it. */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, ENDPOINTS_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} endpoints SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_key);
	__type(value, struct ipcache_info);
	__uint(max_entries, IPCACHE_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ipcache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct node_key);
	__type(value, struct node_info);
	__uint(max_entries, NODES_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} nodes SEC(".maps");

static __always_inline const struct ipcache_info *ipcache_lookup(__be32 ip4)
{
	struct ipcache_key key = { .prefixlen = 32, .ip4 = ip4 };

	return bpf_map_lookup_elem(&ipcache, &key);
}

static __always_inline const struct node_info *node_lookup(__be32 ip4)
{
	struct node_key key = { .ip4 = ip4 };

	return bpf_map_lookup_elem(&nodes, &key);
}

/* Puts enum endpoint_flags into BTF for bpf2go. */
const enum endpoint_flags pp_btf_anchor_maps = 0;

#endif /* PODPATH_MAPS_H */

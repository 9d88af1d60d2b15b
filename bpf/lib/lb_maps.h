/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Service load balancing's maps and their structs: frontends, slots, backends, reverse NAT, Maglev. */
#ifndef PODPATH_LB_MAPS_H
#define PODPATH_LB_MAPS_H

#include "common.h"
#include "conntrack.h"

/* Default sizes (Cilium's bpf-lb-map-max); the loader may override them. These hash
 * maps are not preallocated: they cost memory only for what the agent writes. */
#ifndef LB_SERVICES_MAP_SIZE
#define LB_SERVICES_MAP_SIZE 65536
#endif
#ifndef LB_BACKENDS_MAP_SIZE
#define LB_BACKENDS_MAP_SIZE 65536
#endif
#ifndef LB_SLOTS_MAP_SIZE
#define LB_SLOTS_MAP_SIZE 262144
#endif
#ifndef LB_REV_NAT_MAP_SIZE
#define LB_REV_NAT_MAP_SIZE 65536
#endif
#ifndef LB_MAGLEV_MAP_SIZE
#define LB_MAGLEV_MAP_SIZE 65536
#endif
/* The inner Maglev array's size in the object; the loader sets CONFIG's M. */
#ifndef LB_MAGLEV_TABLE_SIZE
#define LB_MAGLEV_TABLE_SIZE 16381
#endif

/* What a frontend is (lb_service.flags). A Kubernetes Service has one frontend per
 * ClusterIP:port, per node IP:nodePort and per external/LoadBalancer IP:port. */
enum lb_service_flags {
	SVC_F_CLUSTERIP = 1 << 0, /* reachable from pods only */
	SVC_F_NODEPORT  = 1 << 1, /* this node's IP:nodePort: also from outside (from-netdev) */
	SVC_F_EXTERNAL  = 1 << 2, /* an external or LoadBalancer IP: also from outside */
	SVC_F_MAGLEV    = 1 << 3, /* new flows pick their backend from the Maglev table (else at random) */
	/* Service semantics (issue 12). */
	SVC_F_LOCAL     = 1 << 4, /* externalTrafficPolicy (NodePort, external) or internalTrafficPolicy
				   * (ClusterIP) Local: the agent gave it this node's backends only; none
				   * is DROP_SVC_NO_LOCAL_BACKEND, not a reject */
	SVC_F_AFFINITY  = 1 << 5, /* sessionAffinity ClientIP: lb_affinity, affinity_timeout seconds */
	SVC_F_SOURCE_RANGE = 1 << 6, /* loadBalancerSourceRanges: clients from outside must match
				      * lb_source_ranges (with lb_source_range_check) */
	SVC_F_FALLBACK  = 1 << 7, /* no backend is ready: the slots and Maglev table hold the
				   * terminating ones, and new flows may take them (KEP-1669) */
};

/* lb_service_key.scope: Cilium's, for externalTrafficPolicy=Local later. Only
 * LB_SCOPE_EXTERNAL is looked up today. */
enum lb_scope {
	LB_SCOPE_EXTERNAL = 0, /* any backend of the cluster */
	LB_SCOPE_INTERNAL = 1, /* (reserved) backends of this node only */
};

/* A backend's state. Only active backends get new flows; the others keep the flows
 * conntrack already gave them until those end or expire. */
enum lb_backend_state {
	LB_BACKEND_ACTIVE      = 0,
	LB_BACKEND_TERMINATING = 1, /* the pod is going away (Kubernetes' terminating endpoint) */
	LB_BACKEND_MAINTENANCE = 2, /* taken out by the operator */
};

/* The source a pod's packets to its own service get when the service sends them back
 * to the pod itself (Cilium's ipv4-service-loopback-address): 169.254.42.1. */
#define LB_LOOPBACK bpf_htonl(0xa9fe2a01)

/* A frontend. NodePort frontends are keyed by each of this node's IPs explicitly
 * (addr = the node IP; there is no wildcard): the agent knows them, and one exact
 * lookup serves every packet. */
struct lb_service_key {
	__be32 addr;
	__be16 dport;
	__u8   proto;   /* IPPROTO_TCP or IPPROTO_UDP */
	__u8   scope;   /* enum lb_scope */
};

struct lb_service {
	__u32 service_id;    /* the backend set: lb_backend_slots, lb_maglev */
	__u16 backend_count; /* slots 1..backend_count of lb_backend_slots */
	__u16 flags;         /* enum lb_service_flags */
	__u32 rev_nat_id;    /* lb_rev_nat: what replies get as their source (this frontend) */
	__u32 affinity_timeout; /* SVC_F_AFFINITY: seconds a client keeps its backend after its last new flow */
};

/* Random selection: slot s (1..backend_count) of service_id holds a backend id. */
struct lb_slot_key {
	__u32 service_id;
	__u16 slot;
	__u16 _pad;
};

struct lb_backend {
	__be32 addr;
	__be16 port;
	__u8   proto;
	__u8   state;   /* enum lb_backend_state */
};

struct lb_rev_nat {
	__be32 addr;
	__be16 port;
	__u16  _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_service_key);
	__type(value, struct lb_service);
	__uint(max_entries, LB_SERVICES_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_services SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct lb_slot_key);
	__type(value, __u32);
	__uint(max_entries, LB_SLOTS_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backend_slots SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_backend);
	__uint(max_entries, LB_BACKENDS_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct lb_rev_nat);
	__uint(max_entries, LB_REV_NAT_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_rev_nat SEC(".maps");

/* A service's Maglev table: entry j is the backend id of flows with
 * lb_hash() % M == j. BPF_F_INNER_MAP lets the outer map take arrays of any size, so
 * changing M (bpf-lb-maglev-table-size) needs no new outer map: Go replaces every
 * table, and a lookup past the end of a stale one finds nothing. */
struct lb_maglev_inner {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, LB_MAGLEV_TABLE_SIZE);
	/* BPF_F_MMAPABLE: Go fills a new table with one memory copy (a syscall per entry
	 * made 10,000 tables of 16381 entries take 45 s). */
	__uint(map_flags, BPF_F_INNER_MAP | BPF_F_MMAPABLE);
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__type(key, __u32); /* service_id */
	__uint(max_entries, LB_MAGLEV_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
	__array(values, struct lb_maglev_inner);
} lb_maglev SEC(".maps");

/* Session affinity (sessionAffinity: ClientIP): a client's backend per service, kept
 * while new flows keep coming within the service's affinity_timeout. Pinned, so a
 * restarted agent finds its clients' backends where they were. */
struct lb_affinity_key {
	__u32  service_id;
	__be32 client;
};

struct lb_affinity {
	__u32 backend_id;
	__u32 last_used; /* ct_now() seconds of the last flow given this backend */
};

#ifndef LB_AFFINITY_MAP_SIZE
#define LB_AFFINITY_MAP_SIZE 65536
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb_affinity_key);
	__type(value, struct lb_affinity);
	__uint(max_entries, LB_AFFINITY_MAP_SIZE);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_affinity SEC(".maps");

/* loadBalancerSourceRanges: the CIDRs a frontend's clients may come from. prefixlen
 * counts the service_id's 32 bits too (32 + the CIDR's length). */
struct lb_src_range_key {
	__u32  prefixlen;
	__u32  service_id;
	__be32 addr;
};

#ifndef LB_SRC_RANGE_MAP_SIZE
#define LB_SRC_RANGE_MAP_SIZE 16384
#endif

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct lb_src_range_key);
	__type(value, __u8);
	__uint(max_entries, LB_SRC_RANGE_MAP_SIZE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} lb_source_ranges SEC(".maps");

/* Puts the load balancer's enums, and conntrack.h's (it has no anchor of its own),
 * into BTF for bpf2go. */
const struct {
	enum lb_service_flags lb_service_flags;
	enum lb_scope lb_scope;
	enum lb_backend_state lb_backend_state;
	enum ct_dir ct_dir;
	enum ct_flags ct_flags;
} pp_btf_anchor_lb = {};

#endif /* PODPATH_LB_MAPS_H */

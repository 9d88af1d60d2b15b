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
	DROP_CSUM_L3         = 8, /* a checksum helper failed while rewriting the IPv4 header (no longer
				   * produced; the code stays taken: the names are dense, Go counts them) */
	/* Encapsulation (from-container, tunnel mode). */
	DROP_UNKNOWN_TUNNEL_ENDPOINT = 9,  /* the ipcache names a tunnel endpoint that is not in the nodes map */
	DROP_NO_SOURCE_IDENTITY      = 10, /* source is no local endpoint, or its identity is 0 or wider than a 24-bit VNI */
	DROP_TUNNEL_KEY              = 11, /* bpf_skb_set/get_tunnel_key() failed */
	DROP_ENCAP_FAILED            = 12, /* bpf_skb_adjust_room() could not make room for the outer headers */
	/* Decapsulation (from-netdev Geneve, from-overlay VXLAN). */
	DROP_TUNNEL_FRAGMENT         = 13, /* Geneve in an outer IPv4 fragment: BPF does not reassemble */
	DROP_TRUNCATED_GENEVE        = 14, /* shorter than UDP + the 8-byte Geneve header */
	DROP_GENEVE_VERSION          = 15, /* Geneve version is not 0 */
	DROP_GENEVE_CONTROL          = 16, /* Geneve O bit: a control message, never forwarded (RFC 8926 3.4) */
	DROP_GENEVE_CRITICAL_OPT     = 17, /* a critical Geneve option this datapath does not understand (C bit) */
	DROP_GENEVE_PROTOCOL         = 18, /* Geneve protocol type is not 0x6558 (Ethernet) */
	DROP_GENEVE_OPT_LEN          = 19, /* Geneve options run past the packet, or an option past the options */
	DROP_BAD_VNI                 = 20, /* VNI 0: no source identity */
	DROP_TRUNCATED_INNER         = 21, /* the encapsulated frame is shorter than Ethernet + IPv4 headers */
	DROP_UNKNOWN_TUNNEL_PEER     = 22, /* outer source is not a node of the cluster (nodes map) */
	DROP_TUNNEL_WRONG_NODE       = 23, /* inner destination is no endpoint of this node: sent to the wrong node */
	DROP_DECAP_FAILED            = 24, /* bpf_skb_adjust_room() could not remove the outer headers */
	DROP_TUNNEL_ECN              = 25, /* outer CE on a not-ECT inner packet (RFC 6040 4.2) */
	/* Service load balancing (lb.h, lb_icmp.h, nodeport.h, nat.h, conntrack.h). */
	DROP_NO_SERVICE_BACKEND      = 26, /* a service frontend with no active backend to give a new flow */
	DROP_NAT_FAILED              = 27, /* a checksum helper failed while rewriting addresses or ports */
	DROP_SNAT_NO_PORT            = 28, /* NodePort SNAT found no free source port towards the backend */
	DROP_CT_CREATE_FAILED        = 29, /* a conntrack or SNAT entry could not be written */
	DROP_DSR_OPT_NO_ROOM         = 30, /* the IPv4 header has no room left for the 8-byte DSR option */
	DROP_DSR_OPT_FAILED          = 31, /* bpf_skb_adjust_room() could not make room for the DSR option */
	DROP_FRAG_NEEDED_UNANSWERED  = 32, /* too big for the way to the backend (DSR option, tunnel), DF set,
					    * and no ICMP answer could be built (IPv4 options, helper failure) */
	DROP_SPOOFED_SOURCE          = 33, /* for a local pod from the wire with the source address of this node or of one of its
					    * pods: never legitimate (the stack calls it a martian source), but
					    * bpf_redirect_peer() would skip the stack's check */
	DROP_MISSED_TAIL_CALL        = 34, /* the program a tail call should continue in is missing from its
					    * program array (a loader bug): nothing sensible can be done */
	/* Masquerading (masq.h): the range 40-49 is masquerading's. */
	DROP_MASQ_NO_PORT            = 40, /* a pod's new flow leaving the cluster found no free source port
					    * (identifier) in the masquerade range towards its destination */
	DROP_MASQ_FAILED             = 41, /* a masquerade entry could not be written, or the packet could not be rewritten */
	/* Service semantics (issue 12: ETP/ITP Local, source ranges, reject): 50-59. */
	DROP_SVC_NO_LOCAL_BACKEND    = 50, /* externalTrafficPolicy or internalTrafficPolicy Local: no backend on this node */
	DROP_SVC_SOURCE_RANGE        = 51, /* loadBalancerSourceRanges: the client is in none of the service's ranges */
	DROP_SVC_REJECT_FAILED       = 52, /* service-no-backend-response=reject, but no answer could be built
					    * (IPv4 options, helper failure) */
	/* Socket-LB and host-namespace clients (60-64). */
	DROP_HOST_SVC_UNTRANSLATED   = 60, /* a node's own packet routed to a service address that the load balancer does not
					   * translate (not TCP/UDP, or no such frontend): it has nowhere to go */
	/* IPIP decapsulation (IPIP/CrossSubnet, issue 14): range 65-69. */
	DROP_IPIP_UNKNOWN_PEER       = 65, /* IPIP (protocol 4) to this node from an outer source that is no node of the cluster */
	DROP_IPIP_TRUNCATED_INNER    = 66, /* IPIP whose payload is shorter than an IPv4 header */
	DROP_IPIP_INNER_NOT_IPV4     = 67, /* IPIP whose payload is not IPv4 (version field not 4) */
	/* Network policy (policy.h): 70-79. */
	DROP_POLICY_DENIED           = 70, /* the endpoint is selected by a policy in this direction and no rule allows the flow (default deny) */
	DROP_POLICY_DENY_RULE        = 71, /* a deny rule (ingressDeny/egressDeny) matches the flow: deny wins over every allow */
	/* Egress gateway (egressgw.h): 80-84. */
	DROP_NO_EGRESS_GATEWAY       = 80, /* a CiliumEgressGatewayPolicy selects the flow but no node matches its
					    * nodeSelector (Cilium's "No egress gateway found") */
	/* IPv4 fragments to services (lb_frag.h): 85-89. */
	DROP_FRAG_NOT_FOUND          = 85, /* a later fragment of a TCP/UDP datagram whose first fragment this node has not
					    * seen (or no longer remembers): its ports, and so its translation, are unknown */
	/* Service addresses from outside (kpr-addr, issue 12): 90-94. */
	DROP_IS_CLUSTER_IP           = 90, /* a packet from outside the node to a ClusterIP frontend with
					   * bpf-lb-external-clusterip false (Cilium's "Is a ClusterIP") */
	__DROP_REASON_MAX,
};

#endif /* PODPATH_DROP_H */

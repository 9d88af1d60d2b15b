// SPDX-License-Identifier: Apache-2.0

package hubble

import flowpb "github.com/cilium/cilium/api/v1/flow"

// DropReasons maps podpath's drop reasons (by their C name in bpf/lib/drop.h) to the
// closest Hubble drop reason. A name missing here becomes DROP_REASON_UNKNOWN, with
// podpath's name in the flow's summary. The policy drop reasons (70-79) are the policy
// work's to add: POLICY_DENIED, POLICY_DENY and AUTH_REQUIRED are their counterparts.
var DropReasons = map[string]flowpb.DropReason{
	"DROP_TRUNCATED_ETH":           flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_TRUNCATED_IPV4":          flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_BAD_IHL":                 flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_BAD_IP_VERSION":          flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_BAD_TOTAL_LEN":           flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_TRUNCATED_L4":            flowpb.DropReason_CT_TRUNCATED_OR_INVALID_HEADER,
	"DROP_NOT_IPV4":                flowpb.DropReason_UNSUPPORTED_L3_PROTOCOL,
	"DROP_CSUM_L3":                 flowpb.DropReason_ERROR_WHILE_CORRECTING_L3_CHECKSUM,
	"DROP_UNKNOWN_TUNNEL_ENDPOINT": flowpb.DropReason_NO_TUNNEL_OR_ENCAPSULATION_ENDPOINT,
	"DROP_NO_SOURCE_IDENTITY":      flowpb.DropReason_INVALID_IDENTITY,
	"DROP_TUNNEL_KEY":              flowpb.DropReason_ERROR_RETRIEVING_TUNNEL_KEY,
	"DROP_ENCAP_FAILED":            flowpb.DropReason_ERROR_WRITING_TO_PACKET,
	"DROP_TUNNEL_FRAGMENT":         flowpb.DropReason_IP_FRAGMENTATION_NOT_SUPPORTED,
	"DROP_TRUNCATED_GENEVE":        flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_GENEVE_VERSION":          flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_GENEVE_CONTROL":          flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_GENEVE_CRITICAL_OPT":     flowpb.DropReason_INVALID_GENEVE_OPTION,
	"DROP_GENEVE_PROTOCOL":         flowpb.DropReason_UNSUPPORTED_L2_PROTOCOL,
	"DROP_GENEVE_OPT_LEN":          flowpb.DropReason_INVALID_GENEVE_OPTION,
	"DROP_BAD_VNI":                 flowpb.DropReason_INVALID_VNI,
	"DROP_TRUNCATED_INNER":         flowpb.DropReason_INVALID_PACKET_DROPPED,
	"DROP_UNKNOWN_TUNNEL_PEER":     flowpb.DropReason_UNKNOWN_SENDER,
	"DROP_TUNNEL_WRONG_NODE":       flowpb.DropReason_NO_MATCHING_LOCAL_CONTAINER_FOUND,
	"DROP_DECAP_FAILED":            flowpb.DropReason_ERROR_WRITING_TO_PACKET,
	// DROP_TUNNEL_ECN (RFC 6040 outer CE on a not-ECT inner packet) has no
	// counterpart: DROP_REASON_UNKNOWN.
	"DROP_NO_SERVICE_BACKEND": flowpb.DropReason_SERVICE_BACKEND_NOT_FOUND,
	"DROP_IS_CLUSTER_IP":      flowpb.DropReason_IS_A_CLUSTERIP,
	"DROP_NAT_FAILED":         flowpb.DropReason_ERROR_WHILE_CORRECTING_L4_CHECKSUM,
	"DROP_SNAT_NO_PORT":       flowpb.DropReason_NO_MAPPING_FOR_NAT_MASQUERADE,
	"DROP_CT_CREATE_FAILED":   flowpb.DropReason_CT_MAP_INSERTION_FAILED,
	"DROP_DSR_OPT_NO_ROOM":    flowpb.DropReason_UNSUPPORTED_PROTOCOL_FOR_DSR_ENCAP,
	"DROP_DSR_OPT_FAILED":     flowpb.DropReason_ERROR_WRITING_TO_PACKET,
	// DROP_FRAG_NEEDED_UNANSWERED (too big for the way to the backend, DF set) has
	// no counterpart: DROP_REASON_UNKNOWN.
	"DROP_SPOOFED_SOURCE": flowpb.DropReason_INVALID_SOURCE_IP,
}

// DropReason maps podpath's drop reason name to Hubble's, and says whether the
// mapping is known.
func DropReason(name string) (flowpb.DropReason, bool) {
	r, ok := DropReasons[name]
	if !ok {
		return flowpb.DropReason_DROP_REASON_UNKNOWN, false
	}
	return r, true
}

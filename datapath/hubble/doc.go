// SPDX-License-Identifier: Apache-2.0

// Package hubble turns podpath's trace records (datapath/trace) into Hubble flows
// (github.com/cilium/cilium/api/v1/flow) and serves them with Hubble's Observer gRPC
// API (github.com/cilium/cilium/api/v1/observer), so the stock `hubble observe` CLI
// reads a podpath node. It also keeps the agent's Prometheus metrics that come from
// the same records (drops by reason, forwarded packets by observation point, policy
// verdicts).
//
// The ring buffer of trace records has one consumer: an agent serving Hubble reads it,
// so a `podpath monitor` or a scenario's trace collector on the same node does not see
// those records. That is why the agent serves Hubble only when asked to.
//
// # Drop reasons
//
// podpath's drop reasons (bpf/lib/drop.h) map to the closest flow.DropReason as
// DropReasons says; a reason without a close Cilium counterpart is
// DROP_REASON_UNKNOWN, and the flow's summary names podpath's own reason
// ("podpath DROP_TUNNEL_ECN"). Every dropped flow's summary names podpath's reason.
package hubble

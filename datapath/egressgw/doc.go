// SPDX-License-Identifier: Apache-2.0

// Package egressgw reads CiliumEgressGatewayPolicy objects and turns them, with the
// cluster's pods and nodes, into the entries of the egress gateway map
// (bpf/lib/egressgw.h).
package egressgw

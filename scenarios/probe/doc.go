// SPDX-License-Identifier: Apache-2.0

// Package probe drives and observes traffic inside a running topology's namespaces:
// echo and whoami servers, ping, bulk TCP, DF datagrams, iperf3 and the host-stack
// nftables counters.
package probe

// SPDX-License-Identifier: Apache-2.0

// Package capture records the packets of any interface in any network namespace with
// AF_PACKET sockets, writes one pcap per interface and answers queries about what each
// hop saw.
package capture

// SPDX-License-Identifier: Apache-2.0

// Package progtest holds the BPF_PROG_TEST_RUN fixtures, fuzzers and benchmarks of
// every BPF program (and their real-namespace tcx tests), by program and path.
//
// Files are named <program>[_<path>][_<kind>]_test.go. The program is probe
// (bpf_probe), lxc (bpf_lxc's from/to_container), host (bpf_host's
// from/to_netdev), native (bpf_lxc and bpf_host together on native routing),
// overlay (the VXLAN and Geneve paths of all three objects) or lb (the service load
// balancer wherever it runs). The path is what the packets take: routing,
// clusterip, nodeport, dsr, icmp, pmtud, geneve, vxlan. No kind means test-run
// fixtures; the kinds are fuzz, bench, and attach (programs attached with tcx in
// namespaces, real traffic). helpers_test.go builds node 1's namespace and the
// fixture cluster; lb_helpers_test.go and overlay_helpers_test.go add their parts.
package progtest

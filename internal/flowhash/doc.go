// SPDX-License-Identifier: Apache-2.0

// Package flowhash is the load balancer's flow hash as bpf/lib/lb_hash.h documents it,
// written in Go from that description, for the fixtures and the catalog's spec oracles
// that predict where a flow goes (Maglev slot, SNAT source port).
package flowhash

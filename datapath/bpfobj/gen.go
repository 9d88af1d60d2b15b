// SPDX-License-Identifier: Apache-2.0

package bpfobj

// Objects and bindings are committed; `make generate` rebuilds them with clang.
// The multiarch include dirs hold <asm/types.h> on Debian; only the host's exists.
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type trace_record -type drop_reason -type obs_point -type trace_verdict Probe ../../bpf/bpf_probe.c -- -I../../bpf/lib -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror

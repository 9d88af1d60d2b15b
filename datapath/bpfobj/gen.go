// SPDX-License-Identifier: Apache-2.0

package bpfobj

// Objects and bindings are committed; `make generate` rebuilds them with clang.
// The multiarch include dirs hold <asm/types.h> on Debian; only the host's exists.
// Map keys and values and the CONFIG struct are generated without -type (bpf2go
// emits the types of maps and variables by itself); the enums and the trace record
// live in the unnamed anchor struct of trace.h, so they are named here.
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type trace_record -type drop_reason -type pass_reason -type obs_point -type trace_verdict -type monitor_aggregation -type host_routing -type routing_mode -type tunnel_protocol -type trace_tunnel -type trace_lb -type trace_ct -type lb_mode Probe ../../bpf/bpf_probe.c -- -I../../bpf/lib -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type trace_record -type drop_reason -type pass_reason -type obs_point -type trace_verdict -type monitor_aggregation -type host_routing -type routing_mode -type tunnel_protocol -type trace_tunnel -type trace_lb -type trace_ct -type lb_mode -type lb_service_flags -type lb_scope -type lb_backend_state -type ct_dir -type ct_flags Lxc ../../bpf/bpf_lxc.c -- -I../../bpf/lib -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type trace_record -type drop_reason -type pass_reason -type obs_point -type trace_verdict -type monitor_aggregation -type host_routing -type routing_mode -type tunnel_protocol -type trace_tunnel -type trace_lb -type trace_ct -type lb_mode -type lb_service_flags -type lb_scope -type lb_backend_state -type ct_dir -type ct_flags -type masq_cidr_key Host ../../bpf/bpf_host.c -- -I../../bpf/lib -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type trace_record -type drop_reason -type pass_reason -type obs_point -type trace_verdict -type monitor_aggregation -type host_routing -type routing_mode -type tunnel_protocol -type trace_tunnel -type trace_lb -type trace_ct -type lb_mode -type lb_service_flags -type lb_scope -type lb_backend_state -type ct_dir -type ct_flags Xdp ../../bpf/bpf_xdp.c -- -I../../bpf/lib -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type trace_record -type drop_reason -type pass_reason -type obs_point -type trace_verdict -type monitor_aggregation -type host_routing -type routing_mode -type tunnel_protocol -type trace_tunnel -type trace_lb -type trace_ct -type lb_mode -type lb_service_flags -type lb_scope -type lb_backend_state -type ct_dir -type ct_flags Overlay ../../bpf/bpf_overlay.c -- -I../../bpf/lib -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type trace_record -type drop_reason -type pass_reason -type obs_point -type trace_verdict -type monitor_aggregation -type host_routing -type routing_mode -type tunnel_protocol -type trace_tunnel -type trace_lb -type trace_ct -type lb_mode -type lb_service_flags -type lb_scope -type lb_backend_state -type ct_dir -type ct_flags Sock ../../bpf/bpf_sock.c -- -I../../bpf/lib -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
// Kdrop is the harness's witness of kernel drops (skb:kfree_skb), not datapath code;
// scenarios/kdrop loads it.
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type kdrop_record Kdrop ../../bpf/kdrop.c -- -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror
// Impair is the harness's link impairment (loss, duplication), not datapath code;
// scenarios/impair loads it.
//go:generate go tool bpf2go -target bpfel -go-package bpfobj -type impair_config -type impair_stats Impair ../../bpf/impair.c -- -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu -O2 -Wall -Werror

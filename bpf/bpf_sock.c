// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bpf_sock: socket-LB (bpf-lb-sock), attached to a node's cgroup v2. connect4 and
 * sendmsg4 turn a service frontend into a backend before the first packet exists, so
 * the per-packet path sees plain pod-to-pod traffic; recvmsg4 and getpeername4 show
 * the application the frontend it asked for (lb_sock.h). Every program allows the
 * call (returns 1): translation is all they do. */

#include "common.h"
#include "lb_sock.h"

SEC("cgroup/connect4")
int sock_connect4(struct bpf_sock_addr *ctx)
{
	lb_sock_xlate(ctx);
	return 1;
}

SEC("cgroup/sendmsg4")
int sock_sendmsg4(struct bpf_sock_addr *ctx)
{
	lb_sock_xlate(ctx);
	return 1;
}

SEC("cgroup/recvmsg4")
int sock_recvmsg4(struct bpf_sock_addr *ctx)
{
	lb_sock_rev_xlate(ctx);
	return 1;
}

SEC("cgroup/getpeername4")
int sock_getpeername4(struct bpf_sock_addr *ctx)
{
	lb_sock_rev_xlate(ctx);
	return 1;
}

char __license[] SEC("license") = "Dual BSD/GPL";

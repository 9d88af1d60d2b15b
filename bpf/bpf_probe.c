// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* bpf_probe: a pass-through observer for any tcx hook. It proves the whole chain —
 * load, constants, tcx attach, ring buffer — and drops only malformed IPv4, by name. */

#include "common.h"
#include "config.h"
#include "parse.h"
#include "trace.h"

SEC("tc")
int probe(struct __sk_buff *skb)
{
	struct pkt_summary sum = {};
	struct parsed p = {};
	enum drop_reason reason;

	reason = parse_eth(skb, &p, &sum);
	if (reason == DROP_NONE && sum.eth_proto == bpf_htons(ETH_P_IP))
		reason = parse_ipv4(skb, &p, &sum);
	if (reason != DROP_NONE) {
		trace_drop(skb, OBS_PROBE, reason, &sum);
		return PP_TCX_DROP;
	}
	trace_pass(skb, OBS_PROBE, PASS_NONE, &sum);
	return PP_TCX_NEXT;
}

char __license[] SEC("license") = "Dual BSD/GPL";

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

	if (parse_frame(skb, &p, &sum, NULL, &reason) == PARSE_DROP) {
		trace_drop(skb, OBS_PROBE, reason, &sum);
		return PP_TCX_DROP;
	}
	trace_pass(skb, OBS_PROBE, PASS_NONE, &sum);
	return PP_TCX_NEXT;
}

char __license[] SEC("license") = "Dual BSD/GPL";

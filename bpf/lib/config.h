/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/* Runtime configuration: one read-only struct the Go loader sets before load. */
#ifndef PODPATH_CONFIG_H
#define PODPATH_CONFIG_H

#include "common.h"

/* Mirrors Cilium's monitor-aggregation levels. */
enum monitor_aggregation {
	AGGREGATION_NONE   = 0, /* every packet is traced */
	AGGREGATION_LOW    = 1, /* (reserved for per-flow sampling) */
	AGGREGATION_MEDIUM = 2, /* only drops and flow-changing verdicts are traced */
	AGGREGATION_MAX    = 3, /* only drops are traced */
};

struct podpath_config {
	__u32 node_id;            /* stamped on every trace record */
	__u32 monitor_aggregation; /* enum monitor_aggregation */
};

/* volatile: clang must not fold the zero initialiser; the loader rewrites .rodata. */
volatile const struct podpath_config CONFIG = {};

#endif /* PODPATH_CONFIG_H */

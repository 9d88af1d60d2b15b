// SPDX-License-Identifier: Apache-2.0

package report

// KernelDropsFile is the name of a run's kernel drop log in its artifacts: one
// KernelDrop per line, as JSON.
const KernelDropsFile = "kdrops.jsonl"

// StepDrops are the packets the kernel dropped in the run's namespaces during one step
// (scenarios/kdrop, the skb:kfree_skb tracepoint).
type StepDrops struct {
	Stage string       `json:"stage"`
	Step  string       `json:"step"`
	Kind  string       `json:"kind"`
	Drops []KernelDrop `json:"drops"`
	// Failed says a check of the step failed (the drops are in its evidence);
	// otherwise they were a warning.
	Failed bool `json:"failed,omitempty"`
}

// KernelDrop is one packet the kernel dropped: where, why and what.
type KernelDrop struct {
	Member   string `json:"member"`
	Device   string `json:"device,omitempty"`
	Reason   string `json:"reason"`
	Location string `json:"location"`
	Packet   string `json:"packet"`
	Len      uint32 `json:"len"`
}

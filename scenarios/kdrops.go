// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"podpath/scenarios/kdrop"
	"podpath/scenarios/report"
	"podpath/topology"
)

// kernelDrops is the run's witness of kernel drops (scenarios/kdrop): opened at the
// first topology, watching every topology's namespaces, read around every step.
type kernelDrops struct {
	w      *kdrop.Witness
	tried  bool
	mark   int  // drops recorded before the current step
	failed bool // a check of the current step failed
	log    *os.File
}

// watchKernelDrops opens the witness once (a run without it says so once and goes
// on) and adds t's namespaces to it.
func (r *Run) watchKernelDrops(t topology.Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := &r.kdrops
	if !k.tried {
		k.tried = true
		w, err := kdrop.Open()
		if err != nil {
			r.Progress("running without the kernel drop witness: %v", err)
			return
		}
		k.w = w
	}
	if k.w == nil {
		return
	}
	ns := map[string]string{}
	for _, m := range t.Members() {
		ns[m.Name] = m.NsPath
	}
	if err := k.w.Watch(t.Name(), ns); err != nil {
		r.Progress("kernel drop witness: %v", err)
	}
}

// unwatchKernelDrops stops watching t's namespaces (before they go).
func (r *Run) unwatchKernelDrops(t topology.Cluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kdrops.w != nil {
		r.kdrops.w.Unwatch(t.Name())
	}
}

// closeKernelDrops detaches the witness at the end of the run.
func (r *Run) closeKernelDrops() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := &r.kdrops
	var err error
	if k.w != nil {
		if n := k.w.Lost(); n > 0 {
			r.Progress("kernel drop witness: %d drops not recorded (ring buffer full)", n)
		}
		err = k.w.Close()
		k.w = nil
	}
	if k.log != nil {
		if cerr := k.log.Close(); err == nil {
			err = cerr
		}
		k.log = nil
	}
	return err
}

// kernelDropsStepStarted marks the drops recorded so far: the step's are those after.
func (r *Run) kernelDropsStepStarted() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.kdrops.w != nil {
		r.kdrops.mark = r.kdrops.w.Drain()
	}
	r.kdrops.failed = false
}

// kernelDropsEvidence is the evidence a failing check adds: the kernel drops of the
// run's namespaces since its step started ("" when no witness). r.mu is held.
// (Every access to r.kdrops holds r.mu: a step abandoned after its deadline may still
// record checks.)
func (r *Run) kernelDropsEvidence() string {
	k := &r.kdrops
	k.failed = true
	if k.w == nil {
		return ""
	}
	all := k.w.Since(k.mark)
	drops := kdrop.Relevant(all)
	if len(drops) == 0 {
		return fmt.Sprintf("\nkernel drops in the run's namespaces during this step (skb:kfree_skb): none (%d left out: multicast, or queued at a closing socket)", len(all))
	}
	return fmt.Sprintf("\nkernel drops in the run's namespaces during this step (skb:kfree_skb): %d (%d left out: multicast, or queued at a closing socket)\n%s",
		len(drops), len(all)-len(drops), kdrop.Format(drops, "  ", 20))
}

// kernelDropsStepEnded writes every drop of the step to kdrops.jsonl, records the
// relevant ones (kdrop.Relevant) in the run's result and, when no check of the step
// failed, prints them as a warning: not a failure.
func (r *Run) kernelDropsStepEnded(s *Stage, step StepSpec) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k := &r.kdrops
	if k.w == nil {
		return
	}
	all := k.w.Since(k.mark)
	sd := report.StepDrops{Stage: stageLabel(s.Spec), Step: step.Path, Kind: step.Kind, Failed: k.failed}
	r.writeKernelDrops(sd, all)
	drops := kdrop.Relevant(all)
	if len(drops) == 0 {
		return
	}
	for _, d := range drops {
		sd.Drops = append(sd.Drops, report.KernelDrop{Member: d.Member, Device: d.Device, Reason: d.Reason,
			Location: d.Location, Packet: d.Packet, Len: d.Len})
	}
	r.KernelDrops = append(r.KernelDrops, sd)
	if !k.failed {
		fmt.Fprintf(r.out, "WARN  %s (%s): the kernel dropped %d packets in the run's namespaces (not a check):\n%s",
			step.Path, step.Kind, len(drops), kdrop.Format(drops, "        ", 10))
	}
}

// writeKernelDrops appends a step's drops to the run's kdrops.jsonl.
func (r *Run) writeKernelDrops(sd report.StepDrops, drops []kdrop.Drop) {
	k := &r.kdrops
	if len(drops) == 0 {
		return
	}
	if k.log == nil {
		f, err := os.Create(filepath.Join(r.Artifacts, report.KernelDropsFile))
		if err != nil {
			r.Progress("kernel drops not written: %v", err)
			return
		}
		k.log = f
	}
	enc := json.NewEncoder(k.log)
	for _, d := range drops {
		_ = enc.Encode(struct {
			Stage string `json:"stage"`
			Step  string `json:"step"`
			kdrop.Drop
		}{sd.Stage, sd.Step, d})
	}
}

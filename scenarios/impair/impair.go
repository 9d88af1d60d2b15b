// SPDX-License-Identifier: Apache-2.0

// Package impair loses and duplicates packets on a topology link with the harness's
// own tc program (bpf/impair.c), because this kernel has neither netem nor sch_fq:
// `tc qdisc add dev X root netem loss 1%` and `... root fq` both answer "Specified
// qdisc kind is unknown". It attaches to the link's bridge port in the segment's
// namespace, tcx ingress for what the member sends and tcx egress for what it
// receives, so no program of the datapath under test runs twice for a duplicate.
// Delay and reordering need a queue that holds packets (netem, or fq with EDT
// timestamps): neither exists here, so they are not offered.
package impair

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"

	"podpath/datapath/bpfobj"
)

// Spec is what to do to the packets crossing a link, in both directions.
type Spec struct {
	// LossPPM and DupPPM are per million packets.
	LossPPM, DupPPM uint32
	// Seed makes the decisions reproducible: the same seed and the same packet
	// sequence lose and duplicate the same packets.
	Seed uint64
}

// Stats are the program's counters, both directions added up.
type Stats struct {
	Packets, Lost, Duplicated, GSO uint64
}

// Link is an impairment attached to one bridge port.
type Link struct {
	objs  [2]bpfobj.ImpairObjects
	links []link.Link
}

// Attach impairs the bridge port port (an interface of the current network namespace:
// call it inside the segment's namespace) with spec in both directions.
func Attach(port string, spec Spec) (*Link, error) {
	l, err := netlink.LinkByName(port)
	if err != nil {
		return nil, fmt.Errorf("impair %s: %w", port, err)
	}
	out := &Link{}
	for i, attach := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
		if err := bpfobj.LoadImpairObjects(&out.objs[i], nil); err != nil {
			out.Close()
			return nil, fmt.Errorf("impair %s: load: %w", port, err)
		}
		cfg := bpfobj.ImpairImpairConfig{Seed: spec.Seed + uint64(i), LossPpm: spec.LossPPM, DupPpm: spec.DupPPM}
		if attach == ebpf.AttachTCXIngress {
			cfg.Ingress = 1
		}
		if err := out.objs[i].ImpairSettings.Put(uint32(0), cfg); err != nil {
			out.Close()
			return nil, fmt.Errorf("impair %s: settings: %w", port, err)
		}
		tl, err := link.AttachTCX(link.TCXOptions{Program: out.objs[i].Impair, Attach: attach, Interface: l.Attrs().Index})
		if err != nil {
			out.Close()
			return nil, fmt.Errorf("impair %s: attach %s: %w", port, attach, err)
		}
		out.links = append(out.links, tl)
	}
	return out, nil
}

// Stats reads the counters of both directions.
func (l *Link) Stats() (Stats, error) {
	var sum Stats
	for i := range l.objs {
		if l.objs[i].ImpairCounters == nil {
			continue
		}
		var s bpfobj.ImpairImpairStats
		if err := l.objs[i].ImpairCounters.Lookup(uint32(0), &s); err != nil {
			return sum, fmt.Errorf("impair counters: %w", err)
		}
		sum.Packets += s.Packets
		sum.Lost += s.Lost
		sum.Duplicated += s.Duplicated
		sum.GSO += s.Gso
	}
	return sum, nil
}

// Close detaches and unloads everything Attach made.
func (l *Link) Close() error {
	var errs []error
	for _, tl := range l.links {
		errs = append(errs, tl.Close())
	}
	for i := range l.objs {
		errs = append(errs, l.objs[i].Close())
	}
	l.links = nil
	return errors.Join(errs...)
}

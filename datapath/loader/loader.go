// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"podpath/datapath/bpfobj"
)

// Config is struct podpath_config of bpf/lib/config.h: the constants every program
// reads. It is set in .rodata before load, so the verifier sees the values.
type Config = bpfobj.ProbePodpathConfig

// Monitor aggregation levels (Cilium's monitor-aggregation: none, low, medium, maximum).
const (
	AggregationNone   = 0
	AggregationLow    = 1
	AggregationMedium = 2
	AggregationMax    = 3
)

// SetConfig writes cfg into the CONFIG constant of spec.
func SetConfig(spec *ebpf.CollectionSpec, cfg Config) error {
	v, ok := spec.Variables["CONFIG"]
	if !ok {
		return errors.New("set config: object has no CONFIG constant")
	}
	if err := v.Set(cfg); err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	return nil
}

// LoadProbe loads bpf_probe.c with cfg set. Close the objects when done.
func LoadProbe(cfg Config) (*bpfobj.ProbeObjects, error) {
	spec, err := bpfobj.LoadProbe()
	if err != nil {
		return nil, fmt.Errorf("load probe spec: %w", err)
	}
	if err := SetConfig(spec, cfg); err != nil {
		return nil, err
	}
	var objs bpfobj.ProbeObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load probe: %w", explainVerifier(err))
	}
	return &objs, nil
}

func explainVerifier(err error) error {
	var ve *ebpf.VerifierError
	if errors.As(err, &ve) {
		return fmt.Errorf("%+v", ve)
	}
	return err
}

// Direction selects the tcx hook.
type Direction int

const (
	Ingress Direction = iota
	Egress
)

func (d Direction) String() string {
	if d == Egress {
		return "egress"
	}
	return "ingress"
}

// ErrTCXNotSupported reports a kernel without tcx (Linux 6.6+).
var ErrTCXNotSupported = errors.New("tcx attach is not supported by this kernel (requires Linux >= 6.6)")

// AttachTCX attaches prog to the tcx hook of ifindex (`bpftool net attach tcx_ingress`).
// The returned link detaches the program when closed, unless it was pinned.
func AttachTCX(prog *ebpf.Program, ifindex int, dir Direction) (link.Link, error) {
	attach := ebpf.AttachTCXIngress
	if dir == Egress {
		attach = ebpf.AttachTCXEgress
	}
	l, err := link.AttachTCX(link.TCXOptions{Program: prog, Attach: attach, Interface: ifindex})
	if errors.Is(err, ebpf.ErrNotSupported) {
		return nil, fmt.Errorf("attach tcx %s on ifindex %d: %w", dir, ifindex, ErrTCXNotSupported)
	}
	if err != nil {
		return nil, fmt.Errorf("attach tcx %s on ifindex %d: %w", dir, ifindex, err)
	}
	return l, nil
}

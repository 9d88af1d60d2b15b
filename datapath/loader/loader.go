// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
)

// setConfig writes cfg into the CONFIG constant of spec.
func setConfig(spec *ebpf.CollectionSpec, cfg bpfconfig.Config) error {
	v, ok := spec.Variables["CONFIG"]
	if !ok {
		return errors.New("set config: object has no CONFIG constant")
	}
	if err := v.Set(cfg); err != nil {
		return fmt.Errorf("set config: %w", err)
	}
	return nil
}

// LoadProbe loads bpf_probe.c with cfg set. Its ring buffer is private (not pinned).
// Close the objects when done.
func LoadProbe(cfg bpfconfig.Config) (*bpfobj.ProbeObjects, error) {
	spec, err := bpfobj.LoadProbe()
	if err != nil {
		return nil, fmt.Errorf("load probe spec: %w", err)
	}
	if err := setConfig(spec, cfg); err != nil {
		return nil, err
	}
	unpin(spec)
	var objs bpfobj.ProbeObjects
	if err := spec.LoadAndAssign(&objs, nil); err != nil {
		return nil, fmt.Errorf("load probe: %w", explainVerifier(err))
	}
	return &objs, nil
}

func unpin(spec *ebpf.CollectionSpec) {
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
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
var ErrTCXNotSupported error = &MissingFeatureError{Feature: "tcx attach", MinKernel: "6.6"}

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

// ErrXDPNativeNotSupported reports a device whose driver cannot run XDP natively
// (bpf-lb-acceleration native fails with it; best-effort leaves acceleration off).
var ErrXDPNativeNotSupported = errors.New("the device's driver does not support native XDP")

// ErrXDPMTUTooLarge reports a device that runs native XDP but not at its MTU: a veth
// whose peer's MTU exceeds what fits in a page refuses a program without multi-buffer
// support (ERANGE), which bpf_xdp is (a jumbo-frame NIC).
var ErrXDPMTUTooLarge = errors.New("the device's MTU is too large for native XDP of a single-buffer program")

// AttachXDP attaches prog to the XDP hook of ifindex in native (driver) mode
// (`ip link set dev DEV xdpdrv obj ...`, as a link). Generic (skb) mode is never
// used: it runs after the skb is built, which is what XDP acceleration avoids.
// The returned link detaches the program when closed.
func AttachXDP(prog *ebpf.Program, ifindex int) (link.Link, error) {
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EOPNOTSUPP) {
		return nil, fmt.Errorf("attach xdp (native) on ifindex %d: %w: %w", ifindex, ErrXDPNativeNotSupported, err)
	}
	if errors.Is(err, unix.ERANGE) {
		return nil, fmt.Errorf("attach xdp (native) on ifindex %d: %w: %w", ifindex, ErrXDPMTUTooLarge, err)
	}
	if err != nil {
		return nil, fmt.Errorf("attach xdp (native) on ifindex %d: %w", ifindex, err)
	}
	return l, nil
}

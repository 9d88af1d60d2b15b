// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/link"

	"podpath/datapath/config"
	"podpath/datapath/loader"
)

// xdpDir is the pin name's direction part of an XDP link (<device>@xdp).
const xdpDir = "xdp"

// attachXDP puts bpf_xdp on dev's XDP hook in native mode through a pinned link, when
// bpf-lb-acceleration asks for it. native: a device whose driver cannot run native XDP
// fails the agent with the reason; best-effort: that device stays without XDP and
// the status says why. disabled: an XDP link a previous agent pinned is removed, so
// switching acceleration off takes effect. A link already pinned for the device is
// updated in place (BPF_LINK_UPDATE), as for tcx.
func (d *datapath) attachXDP(name string, mode config.LBAcceleration) error {
	pinName := strings.ReplaceAll(name, ".", "_") + "@" + xdpDir // bpffs refuses dots (linkPinName)
	pin := filepath.Join(d.bpffs, "links", pinName)
	if mode == config.LBAccelerationDisabled {
		if l, err := link.LoadPinnedLink(pin, nil); err == nil {
			_ = l.Unpin()
			l.Close()
		} else if !errors.Is(err, os.ErrNotExist) {
			_ = os.Remove(pin)
		}
		return nil
	}
	dev, err := d.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("device %s: %w", name, err)
	}
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		info, ierr := l.Info()
		if ierr == nil && info.XDP() != nil && int(info.XDP().Ifindex) == dev.Attrs().Index {
			if err := l.Update(d.dp.XDP); err == nil {
				d.links[pinName] = l
				d.adopted = true
				d.xdpOn = append(d.xdpOn, name)
				return nil
			}
		}
		_ = l.Unpin()
		l.Close()
	}
	l, err := loader.AttachXDP(d.dp.XDP, dev.Attrs().Index)
	if err != nil {
		if mode == config.LBAccelerationBestEffort {
			d.xdpOff = append(d.xdpOff, fmt.Sprintf("%s (%v)", name, err))
			return nil
		}
		return fmt.Errorf("bpf-lb-acceleration native: %s: %w", name, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return fmt.Errorf("pin xdp link %s: %w", pin, err)
	}
	d.links[pinName] = l
	d.xdpOn = append(d.xdpOn, name)
	return nil
}

// xdpStatus is the status line of bpf-lb-acceleration: the devices served at XDP and
// those best-effort left without.
func (d *datapath) xdpStatus(mode config.LBAcceleration) string {
	if mode == config.LBAccelerationDisabled {
		return "Disabled"
	}
	s := fmt.Sprintf("%s, XDP on %v", mode, d.xdpOn)
	if len(d.xdpOff) > 0 {
		s += fmt.Sprintf(", off on %v", d.xdpOff)
	}
	return s
}

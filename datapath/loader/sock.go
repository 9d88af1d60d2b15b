// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"
	"os"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
)

// MapLBSockRev is socket-LB's per-socket reverse translation (bpf/lib/lb_sock.h),
// pinned under Options.PinPath like the shared maps.
const MapLBSockRev = "lb_sock_rev"

// SockLinks are bpf_sock's four programs attached to one cgroup.
type SockLinks []link.Link

// Close detaches every program.
func (l SockLinks) Close() error {
	var errs []error
	for _, x := range l {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

// AttachSock attaches bpf_sock's connect4, sendmsg4, recvmsg4 and getpeername4 to
// the cgroup v2 directory cgroupPath (`bpftool cgroup attach PATH connect4 PROG`, and
// so on), so every socket of a process in that cgroup or below is translated at
// connect()/sendmsg() time (socket-LB, bpf-lb-sock). Never attach to the root of a
// hierarchy shared with other workloads: it rewrites their connections too. The
// programs stay attached as long as the returned links (or their pins) live.
func (d *Datapath) AttachSock(cgroupPath string) (SockLinks, error) {
	if st, err := os.Stat(cgroupPath); err != nil {
		return nil, fmt.Errorf("attach socket-lb to %s: %w", cgroupPath, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("attach socket-lb to %s: not a directory", cgroupPath)
	}
	progs := []struct {
		prog *ebpf.Program
		typ  ebpf.AttachType
	}{
		{d.Sock.SockConnect4, ebpf.AttachCGroupInet4Connect},
		{d.Sock.SockSendmsg4, ebpf.AttachCGroupUDP4Sendmsg},
		{d.Sock.SockRecvmsg4, ebpf.AttachCGroupUDP4Recvmsg},
		{d.Sock.SockGetpeername4, ebpf.AttachCgroupInet4GetPeername},
	}
	var links SockLinks
	for _, p := range progs {
		l, err := link.AttachCgroup(link.CgroupOptions{Path: cgroupPath, Attach: p.typ, Program: p.prog})
		if err != nil {
			_ = links.Close()
			return nil, fmt.Errorf("attach %s to cgroup %s: %w", p.typ, cgroupPath, err)
		}
		links = append(links, l)
	}
	return links, nil
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"podpath/datapath/config"
)

// netnsCookie is the cookie of the agent's network namespace, the node's
// (getsockopt SO_NETNS_COOKIE): bpf-lb-sock-hostns-only translates its sockets only.
func netnsCookie() (uint64, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, fmt.Errorf("netns cookie: %w", err)
	}
	defer unix.Close(fd)
	v, err := unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_NETNS_COOKIE)
	if err != nil {
		return 0, fmt.Errorf("netns cookie (SO_NETNS_COOKIE, Linux >= 5.14): %w", err)
	}
	return v, nil
}

// sockPins name the pinned cgroup links of socket-LB under BPFFS/links.
var sockPins = []string{"cgroup@connect4", "cgroup@sendmsg4", "cgroup@recvmsg4", "cgroup@getpeername4"}

// attachSock attaches socket-LB (bpf-lb-sock with kube-proxy replacement) to the
// node's cgroup through pinned links (`bpftool cgroup attach CGROUP connect4 ...`),
// adopting and updating the links a previous agent pinned; without socket-LB it
// removes such links, so a restart with bpf-lb-sock off stops translating.
func (d *datapath) attachSock(c *config.Config, cgroup string, log *slog.Logger) error {
	on := c.LBSock && c.KubeProxyReplacement == config.KPRTrue
	if on && cgroup == "" {
		log.Warn("config bpf-lb-sock: true is not done: the agent was given no cgroup (--cgroup), so sockets are translated per packet only", "key", "bpf-lb-sock")
		on = false
	}
	pins := make([]string, len(sockPins))
	for i, n := range sockPins {
		pins[i] = filepath.Join(d.bpffs, "links", n)
	}
	if !on {
		var errs []error
		for _, p := range pins {
			if l, err := link.LoadPinnedLink(p, nil); err == nil {
				errs = append(errs, l.Unpin(), l.Close())
			}
		}
		return errors.Join(errs...)
	}
	progs := []*ebpf.Program{d.dp.Sock.SockConnect4, d.dp.Sock.SockSendmsg4, d.dp.Sock.SockRecvmsg4, d.dp.Sock.SockGetpeername4}
	fresh := false
	for i, p := range pins {
		l, err := link.LoadPinnedLink(p, nil)
		if err != nil {
			fresh = true
			break
		}
		if err := l.Update(progs[i]); err != nil {
			l.Close()
			fresh = true
			break
		}
		d.links[sockPins[i]] = l
	}
	if !fresh {
		return nil
	}
	for i, p := range pins {
		if l, ok := d.links[sockPins[i]]; ok {
			_ = l.Unpin()
			l.Close()
			delete(d.links, sockPins[i])
		} else if l, err := link.LoadPinnedLink(p, nil); err == nil {
			_ = l.Unpin()
			l.Close()
		}
		_ = os.Remove(p)
	}
	links, err := d.dp.AttachSock(cgroup)
	if err != nil {
		return err
	}
	for i, l := range links {
		if err := l.Pin(pins[i]); err != nil {
			_ = links.Close()
			return fmt.Errorf("pin socket-lb link %s: %w", pins[i], err)
		}
		d.links[sockPins[i]] = l
	}
	log.Info("socket-lb attached", "cgroup", cgroup, "hostns-only", c.LBSockHostnsOnly)
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"podpath/topology"
)

import ()

// sendUDP sends one datagram of size payload bytes from src to dst's echo server with
// DF set (df) or clear and checks the whole datagram comes back.
func SendUDP(ctx context.Context, t topology.Cluster, src, dst string, size int, df bool) error {
	to, err := t.Pod(dst)
	if err != nil {
		return err
	}
	server, err := StartEcho(t, UDP, dst)
	if err != nil {
		return err
	}
	defer server.Close()
	return t.Do(src, func() error {
		d := net.Dialer{Timeout: 2 * time.Second, Control: func(_, _ string, c syscall.RawConn) error {
			mode := unix.IP_PMTUDISC_DONT
			if df {
				mode = unix.IP_PMTUDISC_DO
			}
			var serr error
			err := c.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, mode) })
			return errors.Join(err, serr)
		}}
		c, err := d.DialContext(ctx, "udp4", netip.AddrPortFrom(to.IP, EchoPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		msg := bytes.Repeat([]byte{0xa5}, size)
		if _, err := c.Write(msg); err != nil {
			return err
		}
		buf := make([]byte, size+1)
		k, err := c.Read(buf)
		if err != nil {
			return err
		}
		if k != size {
			return fmt.Errorf("echo of %d bytes, sent %d", k, size)
		}
		return nil
	})
}

// dfDatagram sends, from member over a connected UDP socket with DF set
// (IP_PMTUDISC_DO), a datagram of size bytes of IPv4 to dst; once the socket knows a
// smaller path MTU (IP_MTU, from an ICMP frag-needed) it sends one of that size and
// waits for its echo. Returns the path MTU learned.
func DFDatagram(ctx context.Context, t topology.Cluster, member string, dst netip.AddrPort, size int) (int, error) {
	var mtu int
	err := t.Do(member, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU_DISCOVER, unix.IP_PMTUDISC_DO); err != nil {
			return err
		}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 2}); err != nil {
			return err
		}
		if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()}); err != nil {
			return err
		}
		deadline := time.Now().Add(3 * time.Second)
		for {
			// A send after the ICMP fails with EMSGSIZE: the socket learned the MTU.
			_, err := unix.Write(fd, make([]byte, size-28))
			if m, gerr := unix.GetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_MTU); gerr == nil && m < size {
				mtu = m
				break
			}
			if err != nil && !errors.Is(err, unix.EMSGSIZE) {
				return fmt.Errorf("send %d bytes to %s: %w", size, dst, err)
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("after 3 s of %d-byte DF datagrams to %s the socket still has path MTU %d", size, dst, size)
			}
			time.Sleep(100 * time.Millisecond)
		}
		payload := make([]byte, mtu-28)
		_, _ = rand.Read(payload)
		// The ICMP also left a pending EMSGSIZE on the socket, reported by one call.
		if _, err := unix.Write(fd, payload); errors.Is(err, unix.EMSGSIZE) {
			_, err = unix.Write(fd, payload)
			if err != nil {
				return fmt.Errorf("send %d bytes (the learned MTU) to %s: %w", mtu, dst, err)
			}
		} else if err != nil {
			return fmt.Errorf("send %d bytes (the learned MTU) to %s: %w", mtu, dst, err)
		}
		buf := make([]byte, 65536)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return fmt.Errorf("echo of the %d-byte datagram from %s: %w", mtu, dst, err)
		}
		if !bytes.Equal(buf[:n], payload) {
			return fmt.Errorf("echo of the %d-byte datagram: %d bytes that differ", mtu, n)
		}
		return nil
	})
	return mtu, err
}

// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"podpath/topology"
)

import ()

// bulkTCP sends n bytes from src to dst's echo server and reads them back.
func BulkTCP(ctx context.Context, t topology.Cluster, src, dst string, n int) error {
	to, err := t.Pod(dst)
	if err != nil {
		return err
	}
	server, err := StartEcho(t, TCP, dst)
	if err != nil {
		return err
	}
	defer server.Close()
	return t.Do(src, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", netip.AddrPortFrom(to.IP, EchoPort).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		done := make(chan error, 1)
		go func() {
			buf := make([]byte, 64<<10)
			got := 0
			for got < n {
				k, err := c.Read(buf)
				if err != nil {
					done <- fmt.Errorf("read back after %d of %d bytes: %w", got, n, err)
					return
				}
				got += k
			}
			done <- nil
		}()
		if _, err := c.Write(make([]byte, n)); err != nil {
			return fmt.Errorf("bulk TCP %s -> %s: %w", src, dst, err)
		}
		return <-done
	})
}

// tcpEchoBulk sends n random bytes from member to dst (an echo server behind it) and
// reads them back.
func TCPEchoBulk(ctx context.Context, t topology.Cluster, member string, dst netip.AddrPort, n int) error {
	return t.Do(member, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, "tcp4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		data := make([]byte, n)
		_, _ = rand.Read(data)
		werr := make(chan error, 1)
		go func() {
			_, err := c.Write(data)
			werr <- err
		}()
		got := make([]byte, n)
		if _, err := io.ReadFull(c, got); err != nil {
			return fmt.Errorf("read back: %w (write: %v)", err, <-werr)
		}
		if err := <-werr; err != nil {
			return err
		}
		if !bytes.Equal(got, data) {
			return errors.New("the echoed bytes differ from the sent ones")
		}
		return nil
	})
}

// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"podpath/internal/nsutil"
	"podpath/topology"
)

// Protocol is one kind of probe traffic.
type Protocol string

// Probe protocols.
const (
	ICMP Protocol = "icmp"
	TCP  Protocol = "tcp"
	UDP  Protocol = "udp"
)

func (Protocol) Values() []string { return []string{string(ICMP), string(TCP), string(UDP)} }

// probePort is where echo servers listen inside pods.
const EchoPort = 7777

// Exchange sends one probe from pod src to pod dst over proto and checks the answer:
// an ICMP echo via ping, or a TCP/UDP echo from a server the harness runs inside dst's
// namespace (its sockets are born there). It returns what went wrong, with output.
func Exchange(ctx context.Context, t topology.Cluster, proto Protocol, src, dst string) error {
	to, err := t.Pod(dst)
	if err != nil {
		return err
	}
	switch proto {
	case ICMP:
		out, err := Exec(ctx, t, 2*time.Second, src, "ping", "-c1", "-W2", to.IP.String())
		if err != nil {
			return fmt.Errorf("icmp %s -> %s: %w", src, dst, err)
		}
		_ = out
		return nil
	case TCP, UDP:
		return Echo(ctx, t, proto, src, dst, to.IP)
	}
	return fmt.Errorf("unknown protocol %q (want icmp, tcp or udp)", proto)
}

func Echo(ctx context.Context, t topology.Cluster, proto Protocol, src, dst string, dstIP netip.Addr) error {
	server, err := StartEcho(t, proto, dst)
	if err != nil {
		return err
	}
	defer server.Close()
	return ExchangeAddr(ctx, t, src, proto, netip.AddrPortFrom(dstIP, EchoPort))
}

// startEcho opens an echo server on probePort inside member's namespace; the
// listening socket is created there, so it serves that namespace only.
func StartEcho(t topology.Cluster, proto Protocol, member string) (io.Closer, error) {
	return StartEchoOn(t, proto, member, EchoPort)
}

// startEchoOn is startEcho on port.
func StartEchoOn(t topology.Cluster, proto Protocol, member string, port uint16) (io.Closer, error) {
	c, err := StartServer(t, proto, member, port,
		func(c net.Conn) {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.Copy(c, c)
		},
		func(b []byte, _ net.Addr) []byte { return b })
	if err != nil {
		return nil, fmt.Errorf("%s echo server in %s: %w", proto, member, err)
	}
	return c, nil
}

// startServer listens on port inside member's namespace: over TCP every connection
// goes to serve, over UDP every datagram gets answer's reply.
func StartServer(t topology.Cluster, proto Protocol, member string, port uint16,
	serve func(net.Conn), answer func(b []byte, from net.Addr) []byte) (io.Closer, error) {
	m, err := t.Member(member)
	if err != nil {
		return nil, err
	}
	addr := ":" + strconv.Itoa(int(port))
	if proto == TCP {
		return nsutil.ServeTCP(m.NsPath, addr, serve)
	}
	return nsutil.ServeUDP(m.NsPath, addr, answer)
}

// PingLoss runs `ping -i interval -c count` from src to dst and returns how many
// requests went unanswered.
func PingLoss(ctx context.Context, t topology.Cluster, src string, dst netip.Addr, count int, interval time.Duration) (lost int, out string, err error) {
	// ping sends count requests interval apart and waits up to 1 s (-W 1) for the last.
	within := time.Duration(count)*interval + time.Second
	b, err := Exec(ctx, t, within, src, "ping", "-q", "-c", strconv.Itoa(count), "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1", dst.String())
	out = string(b)
	var sent, recv int
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "packets transmitted") {
			fmt.Sscanf(line, "%d packets transmitted, %d received", &sent, &recv)
		}
	}
	if sent == 0 {
		return count, out, errors.Join(errors.New("no ping statistics"), err)
	}
	return sent - recv, out, nil
}

// exchangeAddr sends one probe from member to dst (a service frontend) and checks the
// echo comes back from dst.
func ExchangeAddr(ctx context.Context, t topology.Cluster, member string, proto Protocol, dst netip.AddrPort) error {
	msg := fmt.Sprintf("podpath %s service probe from %s %d", proto, member, time.Now().UnixNano())
	return t.Do(member, func() error {
		d := net.Dialer{Timeout: 2 * time.Second}
		c, err := d.DialContext(ctx, string(proto)+"4", dst.String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Write([]byte(msg)); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return fmt.Errorf("%s %s -> %s: %w", proto, member, dst, err)
		}
		if string(buf) != msg {
			return fmt.Errorf("%s %s -> %s: echo %q", proto, member, dst, buf)
		}
		return nil
	})
}

type Closers []io.Closer

func (c Closers) Close() error {
	var errs []error
	for _, x := range c {
		errs = append(errs, x.Close())
	}
	return errors.Join(errs...)
}

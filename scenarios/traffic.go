// SPDX-License-Identifier: Apache-2.0

package scenarios

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

func (Protocol) values() []string { return []string{string(ICMP), string(TCP), string(UDP)} }

// probePort is where echo servers listen inside pods.
const probePort = 7777

// Exchange sends one probe from pod src to pod dst over proto and checks the answer:
// an ICMP echo via ping, or a TCP/UDP echo from a server the harness runs inside dst's
// namespace (its sockets are born there). It returns what went wrong, with output.
func Exchange(ctx context.Context, t *topology.Topology, proto Protocol, src, dst string) error {
	to, err := t.Pod(dst)
	if err != nil {
		return err
	}
	switch proto {
	case ICMP:
		out, err := t.Exec(ctx, src, "ping", "-c1", "-W2", to.IP.String())
		if err != nil {
			return fmt.Errorf("icmp %s -> %s: %w", src, dst, err)
		}
		_ = out
		return nil
	case TCP, UDP:
		return echo(ctx, t, proto, src, dst, to.IP)
	}
	return fmt.Errorf("unknown protocol %q (want icmp, tcp or udp)", proto)
}

func echo(ctx context.Context, t *topology.Topology, proto Protocol, src, dst string, dstIP netip.Addr) error {
	server, err := startEcho(t, proto, dst)
	if err != nil {
		return err
	}
	defer server.Close()
	return exchangeAddr(ctx, t, src, proto, netip.AddrPortFrom(dstIP, probePort))
}

// startEcho opens an echo server on probePort inside member's namespace; the
// listening socket is created there, so it serves that namespace only.
func startEcho(t *topology.Topology, proto Protocol, member string) (io.Closer, error) {
	return startEchoOn(t, proto, member, probePort)
}

// startEchoOn is startEcho on port.
func startEchoOn(t *topology.Topology, proto Protocol, member string, port uint16) (io.Closer, error) {
	var closer io.Closer
	addr := ":" + strconv.Itoa(int(port))
	err := t.Do(member, func() error {
		if proto == TCP {
			ln, err := net.Listen("tcp4", addr)
			if err != nil {
				return err
			}
			closer = ln
			go serveTCP(ln)
			return nil
		}
		pc, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return err
		}
		closer = pc
		go serveUDP(pc)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("%s echo server in %s: %w", proto, member, err)
	}
	return closer, nil
}

func serveTCP(ln net.Listener) {
	acceptLoop(ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_, _ = io.Copy(c, c)
	})
}

// acceptLoop serves every connection ln accepts with serve, in its own goroutine,
// until ln is closed; serve's connection is closed when it returns.
func acceptLoop(ln net.Listener, serve func(net.Conn)) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			serve(c)
		}()
	}
}

func serveUDP(pc net.PacketConn) {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

// PingLoss runs `ping -i interval -c count` from src to dst and returns how many
// requests went unanswered.
func PingLoss(ctx context.Context, t *topology.Topology, src string, dst netip.Addr, count int, interval time.Duration) (lost int, out string, err error) {
	b, err := t.Exec(ctx, src, "ping", "-q", "-c", strconv.Itoa(count), "-i", fmt.Sprintf("%.3f", interval.Seconds()), "-W", "1", dst.String())
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

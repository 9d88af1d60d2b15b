// SPDX-License-Identifier: Apache-2.0

// Package sockprobe is a one-shot TCP/UDP echo client that reports what its own
// socket saw: the peer getpeername() returns and, for UDP, the source recvfrom()
// returns. It runs as a process of its own (podpath probe-sock, or a test binary
// re-executed) so that it can be born in a cgroup where socket-LB programs apply.
package sockprobe

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// Result is what the client prints, one JSON line.
type Result struct {
	Proto string `json:"proto"`
	Dst   string `json:"dst"`   // what the application asked for
	Peer  string `json:"peer"`  // getpeername() after connect (connected sockets)
	From  string `json:"from"`  // recvfrom() source of the echo (unconnected UDP)
	Local string `json:"local"` // getsockname()
	Echo  bool   `json:"echo"`  // the echo matched the message
	Error string `json:"error,omitempty"`
}

// Run sends msg to dst over proto ("tcp", "udp": connected UDP socket, or
// "udp-sendto": unconnected, sendto/recvfrom) and waits up to timeout for the echo.
func Run(proto string, dst netip.AddrPort, msg string, timeout time.Duration) Result {
	r := Result{Proto: proto, Dst: dst.String()}
	if err := run(&r, proto, dst, msg, timeout); err != nil {
		r.Error = err.Error()
	}
	return r
}

func sockaddr(sa unix.Sockaddr) string {
	if in, ok := sa.(*unix.SockaddrInet4); ok {
		return netip.AddrPortFrom(netip.AddrFrom4(in.Addr), uint16(in.Port)).String()
	}
	return fmt.Sprint(sa)
}

func run(r *Result, proto string, dst netip.AddrPort, msg string, timeout time.Duration) error {
	typ := unix.SOCK_STREAM
	if proto != "tcp" {
		typ = unix.SOCK_DGRAM
	}
	fd, err := unix.Socket(unix.AF_INET, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(timeout.Nanoseconds())
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_SNDTIMEO, &tv)
	to := &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())}
	if proto == "udp-sendto" {
		if err := unix.Sendto(fd, []byte(msg), 0, to); err != nil {
			return fmt.Errorf("sendto %s: %w", dst, err)
		}
	} else {
		if err := unix.Connect(fd, to); err != nil {
			return fmt.Errorf("connect %s: %w", dst, err)
		}
		if sa, err := unix.Getpeername(fd); err == nil {
			r.Peer = sockaddr(sa)
		} else {
			return fmt.Errorf("getpeername: %w", err)
		}
		if _, err := unix.Write(fd, []byte(msg)); err != nil {
			return fmt.Errorf("write %s: %w", dst, err)
		}
	}
	if sa, err := unix.Getsockname(fd); err == nil {
		r.Local = sockaddr(sa)
	}
	buf := make([]byte, len(msg)+64)
	got := 0
	deadline := time.Now().Add(timeout)
	for got < len(msg) && time.Now().Before(deadline) {
		n, from, err := unix.Recvfrom(fd, buf[got:], 0)
		if err != nil {
			return fmt.Errorf("receive from %s: %w", dst, err)
		}
		if from != nil {
			r.From = sockaddr(from)
		}
		if n == 0 {
			break
		}
		got += n
		if typ == unix.SOCK_DGRAM {
			break
		}
	}
	r.Echo = string(buf[:got]) == msg
	if !r.Echo {
		return fmt.Errorf("echo from %s: got %q, want %q", dst, buf[:got], msg)
	}
	return nil
}

// Main is the command: args proto dst msg; it prints one JSON Result and returns
// the exit code (0 when the echo came back).
func Main(args []string, print func(string)) int {
	if len(args) != 3 {
		print(`{"error":"usage: PROTO DST MSG"}`)
		return 2
	}
	dst, err := netip.ParseAddrPort(args[1])
	if err != nil {
		print(fmt.Sprintf(`{"error":%q}`, err.Error()))
		return 2
	}
	r := Run(args[0], dst, args[2], 2*time.Second)
	b, _ := json.Marshal(r)
	print(string(b))
	if r.Error != "" {
		return 1
	}
	return 0
}

// Parse reads the JSON line Main printed (the last line of out).
func Parse(out []byte) (Result, error) {
	var r Result
	lines := splitLines(out)
	if len(lines) == 0 {
		return r, fmt.Errorf("sockprobe: no output")
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &r); err != nil {
		return r, fmt.Errorf("sockprobe: output %q: %w", out, err)
	}
	return r, nil
}

func splitLines(b []byte) []string {
	var out []string
	start := 0
	for i, c := range b {
		if c == '\n' {
			if i > start {
				out = append(out, string(b[start:i]))
			}
			start = i + 1
		}
	}
	if start < len(b) {
		out = append(out, string(b[start:]))
	}
	return out
}

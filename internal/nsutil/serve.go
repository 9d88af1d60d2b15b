// SPDX-License-Identifier: Apache-2.0

package nsutil

import "net"

// ServeTCP listens on addr (tcp4) inside the namespace at nsPath: the socket belongs
// to that namespace whichever thread serves it. Every connection is handed to serve
// in its own goroutine and closed when serve returns, until the listener is closed.
func ServeTCP(nsPath, addr string, serve func(net.Conn)) (net.Listener, error) {
	var ln net.Listener
	if err := Do(nsPath, func() (err error) { ln, err = net.Listen("tcp4", addr); return err }); err != nil {
		return nil, err
	}
	go func() {
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
	}()
	return ln, nil
}

// ServeUDP listens on addr (udp4) inside the namespace at nsPath and answers every
// datagram with what answer returns for it (nil: nothing), until the socket is closed.
func ServeUDP(nsPath, addr string, answer func(b []byte, from net.Addr) []byte) (net.PacketConn, error) {
	var pc net.PacketConn
	if err := Do(nsPath, func() (err error) { pc, err = net.ListenPacket("udp4", addr); return err }); err != nil {
		return nil, err
	}
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if out := answer(buf[:n], from); out != nil {
				_, _ = pc.WriteTo(out, from)
			}
		}
	}()
	return pc, nil
}

// SPDX-License-Identifier: Apache-2.0

package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"podpath/internal/nsutil"
)

const (
	// DefaultSnaplen is the number of bytes kept per packet: enough for GSO/GRO-sized
	// frames (up to 64 KiB of payload plus headers, or BIG TCP up to 256 KiB).
	DefaultSnaplen = 262144
	// DefaultRcvBuf is the socket receive buffer asked for each capture socket.
	DefaultRcvBuf = 8 << 20
)

// Options tune the capture sockets. The zero value uses the defaults.
type Options struct {
	// Snaplen is the most bytes kept of each packet (DefaultSnaplen when 0). Longer
	// packets are truncated; Packet.Length keeps their wire length.
	Snaplen int
	// RcvBuf is the socket receive buffer in bytes (DefaultRcvBuf when 0). As root it is
	// forced past net.core.rmem_max (SO_RCVBUFFORCE).
	RcvBuf int
}

func (o Options) withDefaults() Options {
	if o.Snaplen <= 0 {
		o.Snaplen = DefaultSnaplen
	}
	if o.RcvBuf <= 0 {
		o.RcvBuf = DefaultRcvBuf
	}
	return o
}

// PacketType is the sockaddr_ll packet type the kernel gives a captured frame: whether
// it was addressed to this host, broadcast, multicast, to another host, or sent by it.
type PacketType uint8

// Packet types, as in linux/if_packet.h.
const (
	PacketHost      PacketType = unix.PACKET_HOST
	PacketBroadcast PacketType = unix.PACKET_BROADCAST
	PacketMulticast PacketType = unix.PACKET_MULTICAST
	PacketOtherHost PacketType = unix.PACKET_OTHERHOST
	PacketOutgoing  PacketType = unix.PACKET_OUTGOING
)

// Outgoing reports whether the frame was sent by the interface rather than received.
func (t PacketType) Outgoing() bool { return t == PacketOutgoing }

func (t PacketType) String() string {
	switch t {
	case PacketHost:
		return "host"
	case PacketBroadcast:
		return "broadcast"
	case PacketMulticast:
		return "multicast"
	case PacketOtherHost:
		return "otherhost"
	case PacketOutgoing:
		return "outgoing"
	}
	return fmt.Sprintf("pkttype(%d)", uint8(t))
}

// Source reads every frame sent or received on one interface of one network namespace
// through an AF_PACKET socket (`tcpdump -i IFACE` inside the namespace, without libpcap).
// It implements gopacket.PacketDataSource; each CaptureInfo carries the frame's
// PacketType as its only AncillaryData. Close unblocks a pending read at once.
type Source struct {
	file     *os.File
	raw      syscall.RawConn
	ifindex  int
	linkType layers.LinkType
	buf      []byte
	oob      []byte

	mu      sync.Mutex // guards dropped
	dropped uint64
}

// OpenSource opens a capture socket on iface inside the network namespace at nsPath
// (the caller's own namespace when nsPath is empty). The socket is created and bound by a
// thread inside the namespace, so it stays attached to that namespace's interface.
func OpenSource(nsPath, iface string, opts Options) (*Source, error) {
	opts = opts.withDefaults()
	var s *Source
	open := func() error {
		var err error
		s, err = openSource(iface, opts)
		return err
	}
	var err error
	if nsPath == "" {
		err = open()
	} else {
		err = nsutil.Do(nsPath, open)
	}
	if err != nil {
		if nsPath == "" {
			return nil, fmt.Errorf("open capture on %s: %w", iface, err)
		}
		return nil, fmt.Errorf("open capture on %s in %s: %w", iface, nsPath, err)
	}
	return s, nil
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

func openSource(iface string, opts Options) (_ *Source, err error) {
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return nil, fmt.Errorf("look up interface: %w", err)
	}
	// Protocol 0 receives nothing until bind names the interface and ETH_P_ALL, so no
	// frame of another interface slips in between socket and bind.
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket AF_PACKET: %w", err)
	}
	defer func() {
		if err != nil {
			unix.Close(fd)
		}
	}()
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, opts.RcvBuf); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, opts.RcvBuf); err != nil {
			return nil, fmt.Errorf("set SO_RCVBUF: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
		return nil, fmt.Errorf("set SO_TIMESTAMPNS: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return nil, fmt.Errorf("set PACKET_AUXDATA: %w", err)
	}
	// A virtio_net_hdr before each frame tells the GSO segment size of super-packets:
	// veths carry unsegmented GSO skbs, which no real wire would.
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_VNET_HDR, 1); err != nil {
		return nil, fmt.Errorf("set PACKET_VNET_HDR: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		return nil, fmt.Errorf("bind to %s (ifindex %d): %w", iface, ifi.Index, err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return nil, fmt.Errorf("getsockname: %w", err)
	}
	ll, ok := sa.(*unix.SockaddrLinklayer)
	if !ok {
		return nil, fmt.Errorf("getsockname: unexpected address %T", sa)
	}
	lt, err := linkTypeOf(ll.Hatype)
	if err != nil {
		return nil, err
	}
	// A non-blocking descriptor becomes pollable: reads park in the runtime poller and
	// Close wakes them.
	file := os.NewFile(uintptr(fd), "packet:"+iface)
	raw, err := file.SyscallConn()
	if err != nil {
		file.Close()
		return nil, fmt.Errorf("raw conn: %w", err)
	}
	return &Source{
		file:     file,
		raw:      raw,
		ifindex:  ifi.Index,
		linkType: lt,
		buf:      make([]byte, vnetHdrLen+opts.Snaplen),
		oob:      make([]byte, 256),
	}, nil
}

// linkTypeOf maps an ARPHRD_* device type to the pcap link type of its SOCK_RAW frames.
func linkTypeOf(hatype uint16) (layers.LinkType, error) {
	switch hatype {
	case unix.ARPHRD_ETHER, unix.ARPHRD_LOOPBACK:
		return layers.LinkTypeEthernet, nil
	case unix.ARPHRD_NONE, unix.ARPHRD_TUNNEL, unix.ARPHRD_TUNNEL6, unix.ARPHRD_IPGRE:
		return layers.LinkTypeRaw, nil
	}
	return 0, fmt.Errorf("unsupported device type ARPHRD %d", hatype)
}

// vnetHdrLen is sizeof(struct virtio_net_hdr), which precedes every frame read.
const vnetHdrLen = 10

// GSO describes a GSO super-packet: the kernel will cut it into segments of Size bytes
// of payload each before it reaches a real wire. Size 0: an ordinary frame.
type GSO struct {
	Type uint8 // VIRTIO_NET_HDR_GSO_* (1 TCPv4, 3 UDP, 4 TCPv6, 5 UDP_L4)
	Size uint16
}

// LinkType is the link-layer header type of the frames (Ethernet, or Raw IP for devices
// without a link-layer header).
func (s *Source) LinkType() layers.LinkType { return s.linkType }

// ReadPacketData returns the next frame. The data is only valid until the next call. It
// returns io.EOF once the source is closed.
func (s *Source) ReadPacketData() ([]byte, gopacket.CaptureInfo, error) {
	var (
		n, oobn int
		from    unix.Sockaddr
		rerr    error
	)
	recv := func(fd uintptr) bool {
		for {
			n, oobn, _, from, rerr = unix.Recvmsg(int(fd), s.buf, s.oob, unix.MSG_TRUNC)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	}
	err := s.raw.Read(recv)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// An expired deadline fails Read before it looks at the socket, yet frames that
		// arrived before it may still be queued (their reader not yet scheduled): drain
		// them with direct non-blocking reads, which no deadline stops.
		var got bool
		if cerr := s.raw.Control(func(fd uintptr) { got = recv(fd) }); cerr == nil && got {
			err = nil
		}
	}
	if err != nil {
		if errors.Is(err, os.ErrClosed) {
			return nil, gopacket.CaptureInfo{}, io.EOF
		}
		return nil, gopacket.CaptureInfo{}, fmt.Errorf("recvmsg: %w", err)
	}
	if rerr != nil {
		return nil, gopacket.CaptureInfo{}, fmt.Errorf("recvmsg: %w", rerr)
	}
	if n < vnetHdrLen {
		return nil, gopacket.CaptureInfo{}, fmt.Errorf("recvmsg: %d bytes, shorter than the virtio_net_hdr", n)
	}
	gso := GSO{Type: s.buf[1], Size: binary.NativeEndian.Uint16(s.buf[4:6])}
	if gso.Type == 0 { // VIRTIO_NET_HDR_GSO_NONE
		gso.Size = 0
	}
	// With MSG_TRUNC, n is the frame's full length even when the buffer held less.
	n -= vnetHdrLen
	capLen, wireLen := min(n, len(s.buf)-vnetHdrLen), n
	ci := gopacket.CaptureInfo{InterfaceIndex: s.ifindex}
	var pkttype PacketType
	if ll, ok := from.(*unix.SockaddrLinklayer); ok {
		pkttype = PacketType(ll.Pkttype)
	}
	ci.AncillaryData = []interface{}{pkttype, gso}
	data := s.buf[vnetHdrLen : vnetHdrLen+capLen]
	cmsgs, err := unix.ParseSocketControlMessage(s.oob[:oobn])
	if err != nil {
		return nil, gopacket.CaptureInfo{}, fmt.Errorf("parse control messages: %w", err)
	}
	for _, m := range cmsgs {
		switch {
		case m.Header.Level == unix.SOL_SOCKET && m.Header.Type == unix.SCM_TIMESTAMPNS &&
			len(m.Data) >= int(unsafe.Sizeof(unix.Timespec{})):
			ts := (*unix.Timespec)(unsafe.Pointer(&m.Data[0]))
			ci.Timestamp = time.Unix(ts.Unix())
		case m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA &&
			len(m.Data) >= int(unsafe.Sizeof(unix.TpacketAuxdata{})):
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
			wireLen = int(aux.Len)
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 && s.linkType == layers.LinkTypeEthernet {
				data, wireLen = s.insertVLAN(data, aux), wireLen+4
			}
		}
	}
	if ci.Timestamp.IsZero() {
		ci.Timestamp = time.Now()
	}
	ci.CaptureLength = len(data)
	ci.Length = max(wireLen, len(data))
	return data, ci, nil
}

// insertVLAN puts back the 802.1Q tag the kernel moved out of the frame into metadata, as
// libpcap does, so the frame reads as it was on the wire.
func (s *Source) insertVLAN(data []byte, aux *unix.TpacketAuxdata) []byte {
	if len(data) < 12 {
		return data
	}
	tpid := uint16(layers.EthernetTypeDot1Q)
	if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
		tpid = aux.Vlan_tpid
	}
	out := make([]byte, len(data)+4)
	copy(out, data[:12])
	binary.BigEndian.PutUint16(out[12:], tpid)
	binary.BigEndian.PutUint16(out[14:], aux.Vlan_tci)
	copy(out[16:], data[12:])
	return out
}

// Dropped returns how many frames the kernel dropped so far because the socket buffer
// was full (PACKET_STATISTICS), accumulated over the socket's life.
func (s *Source) Dropped() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.raw.Control(func(fd uintptr) {
		// Reading the statistics resets them, hence the running sum.
		if st, err := unix.GetsockoptTpacketStats(int(fd), unix.SOL_PACKET, unix.PACKET_STATISTICS); err == nil {
			s.dropped += uint64(st.Drops)
		}
	})
	return s.dropped
}

// Close closes the socket; a pending ReadPacketData returns io.EOF.
func (s *Source) Close() error {
	if err := s.file.Close(); err != nil && !errors.Is(err, os.ErrClosed) {
		return fmt.Errorf("close capture socket: %w", err)
	}
	return nil
}

// SetReadDeadline makes reads return an error wrapping os.ErrDeadlineExceeded once t has
// passed and no frame is queued; a zero t removes the deadline.
func (s *Source) SetReadDeadline(t time.Time) error {
	if err := s.file.SetReadDeadline(t); err != nil {
		return fmt.Errorf("set capture read deadline: %w", err)
	}
	return nil
}

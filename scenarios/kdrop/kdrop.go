// SPDX-License-Identifier: Apache-2.0

// Package kdrop is the harness's witness of kernel drops: a BPF program on the
// kernel's skb:kfree_skb tracepoint (bpf/kdrop.c) records every packet the kernel drops
// in the run's network namespaces, with the namespace, the device, the kernel's drop
// reason (enum skb_drop_reason, named from the kernel's BTF), the kernel function that
// dropped it and the packet's headers. It sees what podpath's own hooks and AF_PACKET
// captures cannot: rp_filter, netfilter, a missing route, a full queue.
package kdrop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"

	"podpath/datapath/bpfobj"
	"podpath/datapath/btfnames"
	"podpath/internal/nsutil"
)

// Drop is one packet the kernel dropped in a watched namespace.
type Drop struct {
	Time     time.Time `json:"time"`
	Topology string    `json:"topology"`
	Member   string    `json:"member"`
	Netns    uint32    `json:"netns"`             // namespace inode
	Device   string    `json:"device,omitempty"`  // name of the ifindex in Member ("" without a device)
	Ifindex  uint32    `json:"ifindex,omitempty"` // skb->dev's ifindex
	Reason   string    `json:"reason"`            // "NETFILTER_DROP" (SKB_DROP_REASON_ left out)
	Code     uint32    `json:"code"`              // the enum value
	Location string    `json:"location"`          // kernel symbol+offset, or the address
	Len      uint32    `json:"len"`               // skb->len
	Packet   string    `json:"packet"`            // the network header, decoded
	// LeftOut says why the drop is not shown in evidence and warnings ("" when it is):
	// "multicast" for link chatter (IGMP, MLD, neighbour solicitations) the kernel drops
	// in namespaces that do not listen; "closing socket" for a packet that was
	// delivered and sat unread in a socket's queue when the socket closed.
	LeftOut string `json:"leftOut,omitempty"`
}

// Relevant returns the drops whose LeftOut is empty.
func Relevant(drops []Drop) []Drop {
	var out []Drop
	for _, d := range drops {
		if d.LeftOut == "" {
			out = append(out, d)
		}
	}
	return out
}

// leftOut is Drop.LeftOut for a record of reason name.
func leftOut(r Record, reason string) string {
	switch {
	case Multicast(r):
		return "multicast"
	case reason == "QUEUE_PURGE" || reason == "SOCKET_CLOSE":
		return "closing socket"
	}
	return ""
}

// String is one line: member/device: reason at location: packet.
func (d Drop) String() string {
	where := d.Member
	if d.Device != "" {
		where += "/" + d.Device
	} else if d.Ifindex != 0 {
		where += fmt.Sprintf("/if%d", d.Ifindex)
	}
	return fmt.Sprintf("%s: %s at %s: %s (%d bytes)", where, d.Reason, d.Location, d.Packet, d.Len)
}

// Format writes drops one per line with prefix, at most max of them (then a count of
// the rest).
func Format(drops []Drop, prefix string, max int) string {
	var b strings.Builder
	for i, d := range drops {
		if i == max {
			fmt.Fprintf(&b, "%s... and %d more\n", prefix, len(drops)-max)
			break
		}
		fmt.Fprintf(&b, "%s%s\n", prefix, d)
	}
	return b.String()
}

// Record is the raw record of the BPF program, as read from the ring buffer.
type Record = bpfobj.KdropKdropRecord

const recordSize = 8 + 8 + 4*4 + 2 + 2 + 64

// DecodeRecord decodes a ring buffer sample (little endian, the layout of struct
// kdrop_record).
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if len(b) < recordSize {
		return r, fmt.Errorf("decode kdrop record: %d bytes, want %d", len(b), recordSize)
	}
	le := binary.LittleEndian
	r.Ktime = le.Uint64(b[0:])
	r.Location = le.Uint64(b[8:])
	r.Netns = le.Uint32(b[16:])
	r.Ifindex = le.Uint32(b[20:])
	r.Reason = le.Uint32(b[24:])
	r.Len = le.Uint32(b[28:])
	r.Protocol = le.Uint16(b[32:])
	r.HdrLen = le.Uint16(b[34:])
	copy(r.Hdr[:], b[36:recordSize])
	return r, nil
}

// Packet describes the network header of a record: "10.0.0.1:5000 > 10.0.1.2:80 tcp"
// for IPv4 (ports for TCP and UDP, type/code for ICMP), else the ethertype.
func Packet(r Record) string {
	proto := r.Protocol>>8 | r.Protocol<<8 // network order
	hdr := r.Hdr[:min(int(r.HdrLen), len(r.Hdr))]
	switch {
	case proto == 0x0806:
		return "arp"
	case proto == 0x86dd:
		if len(hdr) >= 40 && hdr[0]>>4 == 6 {
			src, _ := netip.AddrFromSlice(hdr[8:24])
			dst, _ := netip.AddrFromSlice(hdr[24:40])
			return fmt.Sprintf("ipv6 %s > %s next-header %d", src, dst, hdr[6])
		}
		return "ipv6"
	case proto != 0x0800 && proto != 0:
		return fmt.Sprintf("ethertype %#04x", proto)
	}
	if len(hdr) < 20 || hdr[0]>>4 != 4 {
		return fmt.Sprintf("ethertype %#04x, header not read", proto)
	}
	ihl := int(hdr[0]&0x0f) * 4
	src := netip.AddrFrom4([4]byte(hdr[12:16]))
	dst := netip.AddrFrom4([4]byte(hdr[16:20]))
	ttl, p := hdr[8], hdr[9]
	l4 := hdr[min(ihl, len(hdr)):]
	frag := binary.BigEndian.Uint16(hdr[6:8])&0x1fff != 0
	var s string
	switch {
	case (p == 6 || p == 17) && len(l4) >= 4 && !frag:
		name := map[byte]string{6: "tcp", 17: "udp"}[p]
		s = fmt.Sprintf("%s:%d > %s:%d %s", src, binary.BigEndian.Uint16(l4[0:]), dst, binary.BigEndian.Uint16(l4[2:]), name)
	case p == 1 && len(l4) >= 2 && !frag:
		s = fmt.Sprintf("%s > %s icmp type %d code %d", src, dst, l4[0], l4[1])
	default:
		s = fmt.Sprintf("%s > %s proto %d", src, dst, p)
	}
	return fmt.Sprintf("%s ttl %d", s, ttl)
}

// Multicast reports whether the record's packet went to an IPv4 multicast or broadcast
// address or an IPv6 multicast address.
func Multicast(r Record) bool {
	proto := r.Protocol>>8 | r.Protocol<<8
	hdr := r.Hdr[:min(int(r.HdrLen), len(r.Hdr))]
	switch {
	case proto == 0x0800 && len(hdr) >= 20 && hdr[0]>>4 == 4:
		dst := netip.AddrFrom4([4]byte(hdr[16:20]))
		return dst.IsMulticast() || dst == netip.AddrFrom4([4]byte{255, 255, 255, 255})
	case proto == 0x86dd && len(hdr) >= 40 && hdr[0]>>4 == 6:
		return hdr[24] == 0xff
	}
	return false
}

// watched is one watched namespace.
type watched struct {
	topology, member, path string
	ifnames                map[uint32]string
}

// Witness is the attached program and what it recorded.
type Witness struct {
	objs    bpfobj.KdropObjects
	link    link.Link
	rd      *ringbuf.Reader
	reasons btfnames.Enum
	boot    time.Time // wall time of ktime 0

	mu    sync.Mutex
	nets  map[uint32]*watched
	drops []Drop
	syms  *kallsyms
}

// Open loads bpf/kdrop.c and attaches it to skb:kfree_skb. It fails without root, BTF
// or the tracepoint; the caller then runs without the witness.
func Open() (*Witness, error) {
	kernel, err := btf.LoadKernelSpec()
	if err != nil {
		return nil, fmt.Errorf("open kdrop: kernel BTF: %w", err)
	}
	reasons, err := btfnames.FromTypes(kernel, "skb_drop_reason")
	if err != nil {
		return nil, fmt.Errorf("open kdrop: %w", err)
	}
	w := &Witness{reasons: reasons, nets: map[uint32]*watched{}}
	if err := bpfobj.LoadKdropObjects(&w.objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{KernelTypes: kernel}}); err != nil {
		return nil, fmt.Errorf("open kdrop: load: %w", err)
	}
	if w.link, err = link.AttachTracing(link.TracingOptions{Program: w.objs.Kdrop}); err != nil {
		w.objs.Close()
		return nil, fmt.Errorf("open kdrop: attach tp_btf/kfree_skb: %w", err)
	}
	if w.rd, err = ringbuf.NewReader(w.objs.KdropEvents); err != nil {
		w.link.Close()
		w.objs.Close()
		return nil, fmt.Errorf("open kdrop: ring buffer: %w", err)
	}
	w.boot = bootTime()
	return w, nil
}

// Watch adds the namespaces of a topology's members (member name -> namespace path)
// to the namespaces whose drops are recorded.
func (w *Witness) Watch(topology string, members map[string]string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for member, path := range members {
		if path == "" {
			continue
		}
		ino, err := nsutil.Inode(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("watch %s: %w", member, err))
			continue
		}
		if err := w.objs.KdropNetns.Put(uint32(ino), uint32(1)); err != nil {
			errs = append(errs, fmt.Errorf("watch %s: %w", member, err))
			continue
		}
		w.nets[uint32(ino)] = &watched{topology: topology, member: member, path: path, ifnames: map[uint32]string{}}
	}
	return errors.Join(errs...)
}

// Unwatch reads what is left and stops recording the namespaces of topology (call it
// before they are deleted: an inode may be reused).
func (w *Witness) Unwatch(topology string) {
	w.Drain()
	w.mu.Lock()
	defer w.mu.Unlock()
	for ino, n := range w.nets {
		if n.topology == topology {
			_ = w.objs.KdropNetns.Delete(ino)
			delete(w.nets, ino)
		}
	}
}

// Drain reads every record in the ring buffer now and returns the number of drops
// recorded so far (a mark for Since).
func (w *Witness) Drain() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.rd.SetDeadline(time.Now())
	var rec ringbuf.Record
	for {
		if err := w.rd.ReadInto(&rec); err != nil {
			break
		}
		r, err := DecodeRecord(rec.RawSample)
		if err != nil {
			continue
		}
		w.drops = append(w.drops, w.drop(r))
	}
	return len(w.drops)
}

// Since drains and returns the drops recorded after mark (a Drain result).
func (w *Witness) Since(mark int) []Drop {
	n := w.Drain()
	w.mu.Lock()
	defer w.mu.Unlock()
	if mark > n {
		return nil
	}
	return append([]Drop(nil), w.drops[mark:n]...)
}

// Lost is the number of drops the ring buffer had no room for.
func (w *Witness) Lost() uint64 {
	var n uint64
	_ = w.objs.KdropLost.Lookup(uint32(0), &n)
	return n
}

// Close detaches the program and frees its maps.
func (w *Witness) Close() error {
	return errors.Join(w.rd.Close(), w.link.Close(), w.objs.Close())
}

// drop names a record: member, device, reason, location. w.mu is held.
func (w *Witness) drop(r Record) Drop {
	d := Drop{Time: w.boot.Add(time.Duration(r.Ktime)), Netns: r.Netns, Ifindex: r.Ifindex, Code: r.Reason,
		Len: r.Len, Packet: Packet(r), Reason: ReasonName(w.reasons, r.Reason)}
	d.LeftOut = leftOut(r, d.Reason)
	if n := w.nets[r.Netns]; n != nil {
		d.Topology, d.Member = n.topology, n.member
		if r.Ifindex != 0 {
			d.Device = n.ifname(r.Ifindex)
		}
	}
	if w.syms == nil {
		w.syms = readKallsyms()
	}
	d.Location = w.syms.name(r.Location)
	return d
}

// ReasonName is the kernel's name of drop reason code without SKB_DROP_REASON_
// ("NETFILTER_DROP"), or "reason(N)".
func ReasonName(reasons btfnames.Enum, code uint32) string {
	if name, ok := reasons[uint64(code)]; ok {
		return strings.TrimPrefix(name, "SKB_DROP_REASON_")
	}
	return fmt.Sprintf("reason(%d)", code)
}

// ifname is the name of ifindex in the namespace, looked up once (the device may be
// gone: then it stays unnamed).
func (n *watched) ifname(ifindex uint32) string {
	if name, ok := n.ifnames[ifindex]; ok {
		return name
	}
	var name string
	_ = nsutil.Do(n.path, func() error {
		ifc, err := net.InterfaceByIndex(int(ifindex))
		if err == nil {
			name = ifc.Name
		}
		return err
	})
	n.ifnames[ifindex] = name
	return name
}

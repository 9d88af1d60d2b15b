// SPDX-License-Identifier: Apache-2.0

package capture

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/pcapgo"
	"golang.org/x/sys/unix"
)

// ErrStopped is returned by WaitFor when the session stopped before enough packets
// matched.
var ErrStopped = errors.New("capture stopped")

// Point is one interface to capture on.
type Point struct {
	Member    string // node, pod, router or client name, used in reports and file names
	Interface string // interface name inside the namespace
	NsPath    string // network namespace (nsutil.Path(name)); empty for the caller's own
}

func (p Point) String() string { return p.Member + "/" + p.Interface }

type pointKey struct{ member, iface string }

// Session captures on many points at once, from Start until Stop.
type Session struct {
	points []*point
	byKey  map[pointKey]*point

	wg       sync.WaitGroup
	stopping atomic.Bool
	stopAt   atomic.Int64 // unix nanoseconds of the Stop call
	stopOnce sync.Once
	stopErr  error
}

type point struct {
	Point
	src      *Source
	pcapPath string
	file     *os.File
	bw       *bufio.Writer
	w        *pcapgo.Writer // nil without pcap or after a write error
	err      error          // first capture or write error, owned by the reader goroutine

	mu      sync.Mutex
	packets []Packet      // capture order
	changed chan struct{} // closed and replaced at every new packet and at stop
	done    bool
}

// Start captures on every point with default Options; see Options.Start.
func Start(dir string, points ...Point) (*Session, error) { return Options{}.Start(dir, points...) }

// Start opens one AF_PACKET socket per point and captures until Stop. Each point's frames
// go to dir/<member>_<iface>.pcap (nanosecond pcap, readable by Wireshark and tshark); an
// empty dir keeps packets in memory only. Stop the session before deleting the
// namespaces: open sockets keep a namespace alive.
func (o Options) Start(dir string, points ...Point) (_ *Session, err error) {
	o = o.withDefaults()
	s := &Session{byKey: make(map[pointKey]*point, len(points))}
	files := make(map[string]Point)
	for _, pt := range points {
		if pt.Member == "" || pt.Interface == "" {
			return nil, fmt.Errorf("start capture: point %q needs a member and an interface", pt)
		}
		k := pointKey{pt.Member, pt.Interface}
		if _, dup := s.byKey[k]; dup {
			return nil, fmt.Errorf("start capture: point %s given twice", pt)
		}
		p := &point{Point: pt, changed: make(chan struct{})}
		if dir != "" {
			name := fileName(pt.Member) + "_" + fileName(pt.Interface) + ".pcap"
			if other, dup := files[name]; dup {
				return nil, fmt.Errorf("start capture: points %s and %s would share %s", other, pt, name)
			}
			files[name] = pt
			p.pcapPath = filepath.Join(dir, name)
		}
		s.byKey[k] = p
		s.points = append(s.points, p)
	}
	if dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("start capture: %w", err)
		}
	}
	defer func() {
		if err != nil {
			for _, p := range s.points {
				p.close()
			}
		}
	}()
	for _, p := range s.points {
		if err := p.open(o); err != nil {
			return nil, fmt.Errorf("start capture on %s: %w", p.Point, err)
		}
	}
	for _, p := range s.points {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.run(p)
		}()
	}
	return s, nil
}

// fileName keeps name readable in a file name: anything but letters, digits, '.', '-'
// and '_' becomes '-'.
func fileName(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_':
			return r
		}
		return '-'
	}, name)
}

func (p *point) open(o Options) error {
	src, err := OpenSource(p.NsPath, p.Interface, o)
	if err != nil {
		return err
	}
	p.src = src
	if p.pcapPath == "" {
		return nil
	}
	f, err := os.Create(p.pcapPath)
	if err != nil {
		return fmt.Errorf("create pcap: %w", err)
	}
	p.file, p.bw = f, bufio.NewWriterSize(f, 1<<20)
	p.w = pcapgo.NewWriterNanos(p.bw)
	if err := p.w.WriteFileHeader(uint32(o.Snaplen), src.LinkType()); err != nil {
		return fmt.Errorf("write pcap header to %s: %w", p.pcapPath, err)
	}
	return nil
}

// close releases the socket and the pcap file, flushing what was written.
func (p *point) close() error {
	var errs []error
	if p.src != nil {
		errs = append(errs, p.src.Close())
	}
	if p.file != nil {
		if err := p.bw.Flush(); err != nil {
			errs = append(errs, fmt.Errorf("flush %s: %w", p.pcapPath, err))
		}
		if err := p.file.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close %s: %w", p.pcapPath, err))
		}
		p.file = nil
	}
	return errors.Join(errs...)
}

// run reads one point until the socket is closed or, once Stop was called, drained.
func (s *Session) run(p *point) {
	for {
		data, ci, err := p.src.ReadPacketData()
		switch {
		case err == nil:
		case errors.Is(err, io.EOF), errors.Is(err, os.ErrDeadlineExceeded):
			return
		case errors.Is(err, unix.ENETDOWN):
			// The interface went down; the socket resumes when it comes back up.
			continue
		default:
			p.err = fmt.Errorf("capture on %s: %w", p.Point, err)
			return
		}
		if s.stopping.Load() && ci.Timestamp.UnixNano() > s.stopAt.Load() {
			return // drained up to Stop; the rest came later
		}
		data = bytes.Clone(data)
		ci.CaptureLength = len(data)
		pkt := Packet{
			Member:    p.Member,
			Interface: p.Interface,
			Timestamp: ci.Timestamp,
			Data:      data,
			Length:    ci.Length,
			LinkType:  p.src.LinkType(),
			decoded:   &decodeCache{},
		}
		for _, a := range ci.AncillaryData {
			switch a := a.(type) {
			case PacketType:
				pkt.Outgoing = a.Outgoing()
			case GSO:
				pkt.GSO = a
			}
		}
		if p.w != nil {
			if err := p.w.WritePacket(ci, data); err != nil {
				p.err = fmt.Errorf("write %s: %w", p.pcapPath, err)
				p.w = nil
			}
		}
		p.mu.Lock()
		p.packets = append(p.packets, pkt)
		close(p.changed)
		p.changed = make(chan struct{})
		p.mu.Unlock()
	}
}

// Stop ends every capture, keeping the frames already queued in the sockets, and
// flushes and closes the pcap files. The packets stay queryable. It returns at once on
// idle interfaces; calling it again returns the first result.
func (s *Session) Stop() error {
	s.stopOnce.Do(func() {
		now := time.Now()
		s.stopAt.Store(now.UnixNano())
		s.stopping.Store(true)
		for _, p := range s.points {
			p.src.Dropped() // latch the drop counter while the socket is open
			// Read what is queued, then stop at the first empty read.
			if err := p.src.SetReadDeadline(now); err != nil {
				p.src.Close()
			}
		}
		s.wg.Wait()
		var errs []error
		for _, p := range s.points {
			errs = append(errs, p.err, p.close())
			p.mu.Lock()
			p.done = true
			close(p.changed)
			p.mu.Unlock()
		}
		s.stopErr = errors.Join(errs...)
		if s.stopErr != nil {
			s.stopErr = fmt.Errorf("stop capture: %w", s.stopErr)
		}
	})
	return s.stopErr
}

// Points returns the capture points in the order given to Start.
func (s *Session) Points() []Point {
	out := make([]Point, len(s.points))
	for i, p := range s.points {
		out[i] = p.Point
	}
	return out
}

// PcapPath returns the pcap file of a point, or "" for an unknown point or a session
// without a directory. The file is complete after Stop.
func (s *Session) PcapPath(member, iface string) string {
	if p := s.byKey[pointKey{member, iface}]; p != nil {
		return p.pcapPath
	}
	return ""
}

// Dropped returns how many frames the kernel dropped over all points because a capture
// socket's buffer was full. Checks that find a packet missing should report it.
func (s *Session) Dropped() uint64 {
	var n uint64
	for _, p := range s.points {
		n += p.src.Dropped()
	}
	return n
}

func (p *point) snapshot() []Packet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.packets[:len(p.packets):len(p.packets)]
}

func byTime(a, b Packet) int { return a.Timestamp.Compare(b.Timestamp) }

func filter(pkts []Packet, f Filter) []Packet {
	var out []Packet
	for _, pk := range pkts {
		if f.match(pk) {
			out = append(out, pk)
		}
	}
	return out
}

// Packets returns the packets seen so far at one point that f matches, in timestamp
// order; nil for an unknown point.
func (s *Session) Packets(member, iface string, f Filter) []Packet {
	p := s.byKey[pointKey{member, iface}]
	if p == nil {
		return nil
	}
	out := filter(p.snapshot(), f)
	slices.SortStableFunc(out, byTime)
	return out
}

// All returns the packets seen so far at every point that f matches, in timestamp order:
// with a filter that singles out one packet, these are its hops.
func (s *Session) All(f Filter) []Packet {
	var out []Packet
	for _, p := range s.points {
		out = append(out, filter(p.snapshot(), f)...)
	}
	slices.SortStableFunc(out, byTime)
	return out
}

// Path returns the first packet f matches at each point, in timestamp order: the path
// of one packet through the topology. Points where f matched nothing are absent.
func (s *Session) Path(f Filter) []Packet {
	var out []Packet
	for _, p := range s.points {
		if m := filter(p.snapshot(), f); len(m) > 0 {
			out = append(out, slices.MinFunc(m, byTime))
		}
	}
	slices.SortStableFunc(out, func(a, b Packet) int {
		return cmp.Or(byTime(a, b), cmp.Compare(a.Member, b.Member), cmp.Compare(a.Interface, b.Interface))
	})
	return out
}

// WaitFor blocks until n packets matching f were seen at one point, and returns all the
// matches seen by then in timestamp order. It fails when ctx ends or the session stops
// first, returning the matches seen so far with the error.
func (s *Session) WaitFor(ctx context.Context, member, iface string, f Filter, n int) ([]Packet, error) {
	p := s.byKey[pointKey{member, iface}]
	if p == nil {
		return nil, fmt.Errorf("wait for packets on %s/%s: no such capture point", member, iface)
	}
	var matched []Packet
	next := 0
	for {
		p.mu.Lock()
		fresh, ch, done := p.packets[next:], p.changed, p.done
		next = len(p.packets)
		p.mu.Unlock()
		matched = append(matched, filter(fresh, f)...)
		if len(matched) >= n {
			slices.SortStableFunc(matched, byTime)
			return matched, nil
		}
		if done {
			return matched, fmt.Errorf("wait for %d packets on %s/%s: saw %d: %w", n, member, iface, len(matched), ErrStopped)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return matched, fmt.Errorf("wait for %d packets on %s/%s: saw %d: %w", n, member, iface, len(matched), ctx.Err())
		}
	}
}

// compile-time check that Source is a gopacket packet source.
var _ gopacket.PacketDataSource = (*Source)(nil)

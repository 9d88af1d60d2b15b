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

// DefaultWait bounds a wait that gives no deadline of its own (WaitFor, Await without
// Within), whatever its context's: no wait for packets is unbounded, and a step's
// longer deadline does not stretch one.
const DefaultWait = 10 * time.Second

// evidencePackets is how many of the last packets at a point a failed wait lists.
const evidencePackets = 8

// Wait is one bounded wait for packets at a capture point.
type Wait struct {
	Member, Interface string
	Filter            Filter
	// N is how many matching packets to wait for (at least 1).
	N int
	// What names what is awaited, for the error: "ICMP frag-needed to pod1a".
	What string
	// Within is the wait's deadline from the call (0: DefaultWait). The earlier of it
	// and the context's deadline wins.
	Within time.Duration
}

// WaitFor blocks until n packets matching f were seen at one point, and returns all the
// matches seen by then in timestamp order. It fails when ctx ends, the session stops or
// DefaultWait passes first, returning the matches seen so far
// with an error that lists the last packets seen at the point.
func (s *Session) WaitFor(ctx context.Context, member, iface string, f Filter, n int) ([]Packet, error) {
	return s.Await(ctx, Wait{Member: member, Interface: iface, Filter: f, N: n})
}

// Await is WaitFor with a deadline and a description of its own. On failure the error
// says what it waited for, for how long, and what it saw instead: the count and the
// last packets captured at the point, matching or not. It wraps ctx.Err()
// (context.DeadlineExceeded when the deadline passed) or ErrStopped.
func (s *Session) Await(ctx context.Context, w Wait) ([]Packet, error) {
	what := w.What
	if what == "" {
		what = fmt.Sprintf("%d packets", w.N)
	} else if w.N > 1 {
		what = fmt.Sprintf("%d x %s", w.N, what)
	}
	p := s.byKey[pointKey{w.Member, w.Interface}]
	if p == nil {
		return nil, fmt.Errorf("wait for %s on %s/%s: no such capture point", what, w.Member, w.Interface)
	}
	ctx, cancel := context.WithTimeout(ctx, cmp.Or(w.Within, DefaultWait))
	defer cancel()
	start := time.Now()
	fail := func(matched []Packet, cause error) ([]Packet, error) {
		slices.SortStableFunc(matched, byTime)
		return matched, fmt.Errorf("waited %v for %s on %s/%s (%d of %d matched: %w); saw: %s",
			time.Since(start).Round(time.Millisecond), what, w.Member, w.Interface, len(matched), max(w.N, 1), cause, s.Seen(w.Member, w.Interface, evidencePackets))
	}
	var matched []Packet
	next := 0
	for {
		p.mu.Lock()
		fresh, ch, done := p.packets[next:], p.changed, p.done
		next = len(p.packets)
		p.mu.Unlock()
		matched = append(matched, filter(fresh, w.Filter)...)
		if len(matched) >= w.N {
			slices.SortStableFunc(matched, byTime)
			return matched, nil
		}
		if done {
			return fail(matched, ErrStopped)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fail(matched, ctx.Err())
		}
	}
}

// Seen describes what a point captured so far, for evidence: the packet count and the
// last packets (at most last), one summary a line.
func (s *Session) Seen(member, iface string, last int) string {
	pkts := s.Packets(member, iface, nil)
	if len(pkts) == 0 {
		return "0 packets"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d packets", len(pkts))
	if len(pkts) > last {
		fmt.Fprintf(&b, ", the last %d", last)
		pkts = pkts[len(pkts)-last:]
	}
	b.WriteString(":")
	for _, pk := range pkts {
		b.WriteString("\n  " + pk.Summary())
	}
	return b.String()
}

// compile-time check that Source is a gopacket packet source.
var _ gopacket.PacketDataSource = (*Source)(nil)

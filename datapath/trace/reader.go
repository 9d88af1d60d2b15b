// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
)

// Reader reads decoded records from a trace_events ring buffer map.
type Reader struct {
	rd *ringbuf.Reader
}

// NewReader opens the ring buffer. Close it when done.
func NewReader(events *ebpf.Map) (*Reader, error) {
	rd, err := ringbuf.NewReader(events)
	if err != nil {
		return nil, fmt.Errorf("open trace ring buffer: %w", err)
	}
	return &Reader{rd: rd}, nil
}

// ErrTimeout is returned by ReadTimeout when no record arrived in time.
var ErrTimeout = errors.New("no trace record before the deadline")

// Read blocks until a record arrives or the reader is closed.
func (r *Reader) Read() (Record, error) {
	r.rd.SetDeadline(time.Time{})
	return r.read()
}

// ReadTimeout waits at most d for the next record.
func (r *Reader) ReadTimeout(d time.Duration) (Record, error) {
	r.rd.SetDeadline(time.Now().Add(d))
	return r.read()
}

func (r *Reader) read() (Record, error) {
	rec, err := r.rd.Read()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return Record{}, ErrTimeout
	}
	if err != nil {
		return Record{}, fmt.Errorf("read trace ring buffer: %w", err)
	}
	return Decode(rec.RawSample)
}

// Drain returns every record already in the buffer without waiting for more.
func (r *Reader) Drain() ([]Record, error) {
	var out []Record
	for {
		rec, err := r.ReadTimeout(time.Nanosecond)
		if errors.Is(err, ErrTimeout) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, rec)
	}
}

// Close unblocks a pending Read and releases the ring buffer.
func (r *Reader) Close() error { return r.rd.Close() }

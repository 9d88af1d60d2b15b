// SPDX-License-Identifier: Apache-2.0

package trace

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// MonitorOptions select what Monitor prints.
type MonitorOptions struct {
	// Node limits the monitor to one node; empty: every node of the topology. Monitor
	// itself watches the nodes it is given: the caller picks them (scenarios.Monitor).
	Node string
	// JSON prints one JSON object per record instead of a line of text.
	JSON bool
	// Type filters records: "" (all), "drop" (drops only) or "trace" (all but drops).
	Type string
	// Count stops the monitor after that many records; 0: until ctx is done.
	Count int
	// Backlog also prints the records queued before the monitor started (from a time
	// nobody read the ring buffer); by default they are consumed silently.
	Backlog bool
	// Warn, when set, receives notes such as a node without a datapath.
	Warn func(string)

	// Ready, when set, is called once every ring buffer is open.
	Ready func()
}

// Validate checks the options that do not depend on the nodes.
func (o MonitorOptions) Validate() error {
	switch o.Type {
	case "", MonitorTypeDrop, MonitorTypeTrace:
	default:
		return fmt.Errorf("monitor type %q: want %s or %s", o.Type, MonitorTypeDrop, MonitorTypeTrace)
	}
	if o.Count < 0 {
		return fmt.Errorf("monitor count %d: want 0 (no limit) or more", o.Count)
	}
	return nil
}

// Monitor types accepted by MonitorOptions.Type.
const (
	MonitorTypeDrop  = "drop"
	MonitorTypeTrace = "trace"
)

// MonitorNode is one node to monitor: its name, where its agent pinned the trace ring
// buffer, and its network namespace (to name interfaces; empty: indexes only).
type MonitorNode struct {
	Name, Pin, NsPath string
}

// ErrNoDatapath says none of the nodes given to Monitor has a pinned trace ring buffer.
var ErrNoDatapath = errors.New("no running datapath")

// MonitorRecord is one record as `podpath monitor --json` prints it.
type MonitorRecord struct {
	Node          string    `json:"node"`
	NodeID        uint32    `json:"nodeID"`
	Time          time.Time `json:"time"`
	KtimeNs       uint64    `json:"ktimeNs"`
	ObsPoint      string    `json:"obsPoint"`
	Ifindex       uint32    `json:"ifindex"`
	Ifname        string    `json:"ifname,omitempty"`
	Verdict       string    `json:"verdict"`
	DropReason    string    `json:"dropReason,omitempty"`
	PassReason    string    `json:"passReason,omitempty"`
	TargetIfindex uint32    `json:"targetIfindex,omitempty"`
	TargetIfname  string    `json:"targetIfname,omitempty"`
	Len           uint32    `json:"len"`
	Src           string    `json:"src,omitempty"`
	Dst           string    `json:"dst,omitempty"`
	Proto         uint8     `json:"proto,omitempty"`
	SrcPort       uint16    `json:"srcPort,omitempty"`
	DstPort       uint16    `json:"dstPort,omitempty"`
	TTL           uint8     `json:"ttl,omitempty"`
	// Tunnel names the encapsulation the packet went into or came out of, with the
	// source identity it carried and the remote node.
	Tunnel         string `json:"tunnel,omitempty"`
	SrcIdentity    uint32 `json:"srcIdentity,omitempty"`
	TunnelEndpoint string `json:"tunnelEndpoint,omitempty"`
	// LBAction, CTState and BackendID say what the service load balancer did, and
	// OrigSrc/OrigDst the tuple as received (Src/Dst are then the translated one).
	LBAction  string `json:"lbAction,omitempty"`
	CTState   string `json:"ctState,omitempty"`
	BackendID uint32 `json:"backendID,omitempty"`
	OrigSrc   string `json:"origSrc,omitempty"`
	OrigDst   string `json:"origDst,omitempty"`
	Summary   string `json:"summary"`
}

type nodeRecord struct {
	node string
	rec  Record
}

// monitorNode is one node's open ring buffer, and the names of its interfaces.
type monitorNode struct {
	name string
	m    *ebpf.Map
	rd   *Reader
	ifn  *IfNamer
}

func (n *monitorNode) close() {
	if n.rd != nil {
		_ = n.rd.Close()
	}
	if n.m != nil {
		_ = n.m.Close()
	}
	n.ifn.Close()
}

// IfNamer names a node's interfaces by index, through a netlink handle in its
// namespace. Without a handle it names none: records carry indexes only.
type IfNamer struct {
	nl    *netlink.Handle
	names map[uint32]string
}

// NewIfNamer names the interfaces of the namespace at nsPath (none when it cannot be
// opened).
func NewIfNamer(nsPath string) *IfNamer {
	n := &IfNamer{names: map[uint32]string{}}
	if nsPath == "" {
		return n
	}
	if ns, err := netns.GetFromPath(nsPath); err == nil {
		n.nl, _ = netlink.NewHandleAt(ns)
		ns.Close()
	}
	return n
}

func (n *IfNamer) name(idx uint32) string {
	if n == nil || idx == 0 || n.nl == nil {
		return ""
	}
	if s, ok := n.names[idx]; ok {
		return s
	}
	l, err := n.nl.LinkByIndex(int(idx))
	if err != nil {
		return "" // gone, or not yet there: try again next time
	}
	n.names[idx] = l.Attrs().Name
	return n.names[idx]
}

// Close releases the netlink handle.
func (n *IfNamer) Close() {
	if n != nil && n.nl != nil {
		n.nl.Close()
	}
}

// NewMonitorRecord renders node's record r with names; wallOffset (WallOffset) turns
// its CLOCK_MONOTONIC time into wall time.
func NewMonitorRecord(node string, r Record, names *Names, ifn *IfNamer, wallOffset int64) MonitorRecord {
	jr := MonitorRecord{
		Node: node, NodeID: r.NodeID, KtimeNs: r.KtimeNs,
		Time:     time.Unix(0, wallOffset+int64(r.KtimeNs)).UTC(),
		ObsPoint: names.ObsPoint(r.ObsPoint), Ifindex: r.Ifindex, Ifname: ifn.name(r.Ifindex),
		Verdict: names.Verdict(r.Verdict), TargetIfindex: r.TargetIfindex, TargetIfname: ifn.name(r.TargetIfindex),
		Len: r.PktLen, Summary: r.Pkt.String(),
	}
	if r.DropReason != 0 {
		jr.DropReason = names.DropReason(r.DropReason)
	}
	if r.PassReason != 0 {
		jr.PassReason = names.PassReason(r.PassReason)
	}
	if r.Pkt.HasIPv4 {
		jr.Src, jr.Dst, jr.Proto, jr.TTL = r.Pkt.Src.String(), r.Pkt.Dst.String(), r.Pkt.IPProto, r.Pkt.TTL
		if r.Pkt.HasTransport {
			jr.SrcPort, jr.DstPort = r.Pkt.SrcPort, r.Pkt.DstPort
		}
	}
	if r.Tunnel != 0 {
		jr.Tunnel = names.Tunnel(r.Tunnel)
		jr.SrcIdentity = r.SrcIdentity
		if r.TunnelEndpoint.IsValid() {
			jr.TunnelEndpoint = r.TunnelEndpoint.String()
		}
	}
	if r.LB.Action != 0 {
		jr.LBAction, jr.CTState, jr.BackendID = names.LBAction(r.LB.Action), names.CTState(r.LB.CT), r.LB.BackendID
		jr.OrigSrc, jr.OrigDst = r.LB.OrigSrc.String(), r.LB.OrigDst.String()
	}
	return jr
}

// WallOffset is what to add to a CLOCK_MONOTONIC time to get wall time, now.
func WallOffset() int64 { return time.Now().UnixNano() - int64(monotonicNow()) }

// Monitor streams the trace records of running datapaths to w, like `cilium monitor`:
// it reads the pinned trace ring buffer of every node given and prints one line per
// record, prefixed with the node name, drop and pass reasons and verdicts by name. It
// returns when ctx is done (nil) or after opts.Count records. A node without a pinned
// ring buffer is reported to opts.Warn and skipped; when no node has one, Monitor
// returns ErrNoDatapath.
//
// A ring buffer has one consumer position: the monitor consumes the records it reads,
// so anything else reading the same buffer at the same time (a scenario run checking
// verdicts, a second monitor) competes with it and each sees only part of the records.
func Monitor(ctx context.Context, w io.Writer, want []MonitorNode, opts MonitorOptions) error {
	if err := opts.Validate(); err != nil {
		return err
	}
	warn := opts.Warn
	if warn == nil {
		warn = func(string) {}
	}
	names, err := DefaultNames()
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	var dropVerdict uint16
	for v, s := range names.Verdicts {
		if s == "VERDICT_DROP" {
			dropVerdict = uint16(v)
		}
	}

	nodes := map[string]*monitorNode{}
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	var missing []MonitorNode
	for _, want := range want {
		n, err := openMonitorNode(want)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, want)
			continue
		}
		if err != nil {
			return fmt.Errorf("monitor %s: %w", want.Name, err)
		}
		nodes[want.Name] = n
	}
	if len(nodes) == 0 {
		return ErrNoDatapath
	}
	for _, n := range missing {
		warn(fmt.Sprintf("node %s has no running datapath (no %s): not monitored", n.Name, n.Pin))
	}

	start := monotonicNow()
	wallOffset := WallOffset()
	if opts.Ready != nil {
		opts.Ready()
	}

	recs := make(chan nodeRecord)
	errs := make(chan error, len(nodes))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				r, err := n.rd.Read()
				if err != nil {
					select {
					case <-done: // closed by us
					default:
						errs <- fmt.Errorf("monitor %s: %w", n.name, err)
					}
					return
				}
				select {
				case recs <- nodeRecord{n.name, r}:
				case <-done:
					return
				}
			}
		}()
	}
	defer func() {
		close(done)
		for _, n := range nodes {
			_ = n.rd.Close() // unblocks Read
		}
		wg.Wait()
	}()

	enc := json.NewEncoder(w)
	printed := 0
	for {
		var nr nodeRecord
		select {
		case <-ctx.Done():
			return nil
		case err := <-errs:
			return err
		case nr = <-recs:
		}
		r := nr.rec
		if !opts.Backlog && r.KtimeNs < start {
			continue
		}
		isDrop := r.Verdict == dropVerdict
		if (opts.Type == MonitorTypeDrop && !isDrop) || (opts.Type == MonitorTypeTrace && isDrop) {
			continue
		}
		if opts.JSON {
			jr := NewMonitorRecord(nr.node, r, names, nodes[nr.node].ifn, wallOffset)
			if err := enc.Encode(jr); err != nil {
				return fmt.Errorf("monitor: %w", err)
			}
		} else if _, err := fmt.Fprintf(w, "%s: %s\n", nr.node, names.Format(r)); err != nil {
			return fmt.Errorf("monitor: %w", err)
		}
		printed++
		if opts.Count > 0 && printed >= opts.Count {
			return nil
		}
	}
}

// openMonitorNode opens node's pinned trace ring buffer; an error wrapping
// fs.ErrNotExist means the node has no datapath pinned.
func openMonitorNode(node MonitorNode) (_ *monitorNode, err error) {
	n := &monitorNode{name: node.Name}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	pin := node.Pin
	if _, err := os.Stat(pin); err != nil {
		return nil, err
	}
	if n.m, err = ebpf.LoadPinnedMap(pin, nil); err != nil {
		return nil, fmt.Errorf("load pinned map %s: %w", pin, err)
	}
	if n.rd, err = NewReader(n.m); err != nil {
		return nil, fmt.Errorf("%s: %w", pin, err)
	}
	n.ifn = NewIfNamer(node.NsPath)
	return n, nil
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

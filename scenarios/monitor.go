// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"podpath/datapath/loader"
	"podpath/datapath/trace"
	"podpath/topology"
)

// MonitorOptions select what Monitor prints.
type MonitorOptions struct {
	// Node limits the monitor to one node; empty: every node of the topology.
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

// Monitor types accepted by MonitorOptions.Type.
const (
	MonitorTypeDrop  = "drop"
	MonitorTypeTrace = "trace"
)

// TraceEventsPath is where a node's agent pins its trace ring buffer:
// <topology Dir>/bpffs/<node>/maps/trace_events.
func TraceEventsPath(t topology.Cluster, node string) string {
	return filepath.Join(t.Dir(), "bpffs", node, "maps", loader.MapTraceEvents)
}

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
	rec  trace.Record
}

// monitorNode is one node's open ring buffer, and the names of its interfaces.
type monitorNode struct {
	name string
	m    *ebpf.Map
	rd   *trace.Reader
	ifn  *ifNamer
}

func (n *monitorNode) close() {
	if n.rd != nil {
		_ = n.rd.Close()
	}
	if n.m != nil {
		_ = n.m.Close()
	}
	n.ifn.close()
}

// ifNamer names a node's interfaces by index, through a netlink handle in its
// namespace. Without a handle it names none: records carry indexes only.
type ifNamer struct {
	nl    *netlink.Handle
	names map[uint32]string
}

func newIfNamer(t topology.Cluster, node string) *ifNamer {
	n := &ifNamer{names: map[uint32]string{}}
	if m, err := t.Member(node); err == nil {
		if ns, err := netns.GetFromPath(m.NsPath); err == nil {
			n.nl, _ = netlink.NewHandleAt(ns)
			ns.Close()
		}
	}
	return n
}

func (n *ifNamer) name(idx uint32) string {
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

func (n *ifNamer) close() {
	if n != nil && n.nl != nil {
		n.nl.Close()
	}
}

// newMonitorRecord renders node's record r with names; wallOffset turns its
// CLOCK_MONOTONIC time into wall time.
func newMonitorRecord(node string, r trace.Record, names *trace.Names, ifn *ifNamer, wallOffset int64) MonitorRecord {
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

// wallOffset is what to add to a CLOCK_MONOTONIC time to get wall time, now.
func wallOffset() int64 { return time.Now().UnixNano() - int64(monotonicNow()) }

// Monitor streams the trace records of a running topology's datapath to w, like
// `cilium monitor`: it reads every node's pinned trace ring buffer (or only
// opts.Node's) and prints one line per record, prefixed with the node name, drop and
// pass reasons and verdicts by name. It returns when ctx is done (nil) or after
// opts.Count records.
//
// A ring buffer has one consumer position: the monitor consumes the records it reads,
// so anything else reading the same buffer at the same time (a scenario run checking
// verdicts, a second monitor) competes with it and each sees only part of the records.
func Monitor(ctx context.Context, w io.Writer, t topology.Cluster, opts MonitorOptions) error {
	switch opts.Type {
	case "", MonitorTypeDrop, MonitorTypeTrace:
	default:
		return fmt.Errorf("monitor type %q: want %s or %s", opts.Type, MonitorTypeDrop, MonitorTypeTrace)
	}
	if opts.Count < 0 {
		return fmt.Errorf("monitor count %d: want 0 (no limit) or more", opts.Count)
	}
	warn := opts.Warn
	if warn == nil {
		warn = func(string) {}
	}
	names, err := trace.DefaultNames()
	if err != nil {
		return fmt.Errorf("monitor: %w", err)
	}
	var dropVerdict uint16
	for v, s := range names.Verdicts {
		if s == "VERDICT_DROP" {
			dropVerdict = uint16(v)
		}
	}

	var want []string
	if opts.Node != "" {
		if _, err := t.Node(opts.Node); err != nil {
			return err
		}
		want = []string{opts.Node}
	} else {
		for _, n := range t.Nodes() {
			want = append(want, n.Name)
		}
	}
	nodes := map[string]*monitorNode{}
	defer func() {
		for _, n := range nodes {
			n.close()
		}
	}()
	var missing []string
	for _, name := range want {
		n, err := openMonitorNode(t, name)
		if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, name)
			continue
		}
		if err != nil {
			return fmt.Errorf("monitor %s: %w", name, err)
		}
		nodes[name] = n
	}
	if len(nodes) == 0 {
		where := ""
		if opts.Node != "" {
			where = " on " + opts.Node
		}
		return fmt.Errorf("topology %s has no running datapath%s: start agents (podNetwork: agent)", t.Name(), where)
	}
	for _, name := range missing {
		warn(fmt.Sprintf("node %s has no running datapath (no %s): not monitored", name, TraceEventsPath(t, name)))
	}

	start := monotonicNow()
	wallOffset := wallOffset()
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
			jr := newMonitorRecord(nr.node, r, names, nodes[nr.node].ifn, wallOffset)
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
func openMonitorNode(t topology.Cluster, node string) (_ *monitorNode, err error) {
	n := &monitorNode{name: node}
	defer func() {
		if err != nil {
			n.close()
		}
	}()
	pin := TraceEventsPath(t, node)
	if _, err := os.Stat(pin); err != nil {
		return nil, err
	}
	if n.m, err = ebpf.LoadPinnedMap(pin, nil); err != nil {
		return nil, fmt.Errorf("load pinned map %s: %w", pin, err)
	}
	if n.rd, err = trace.NewReader(n.m); err != nil {
		return nil, fmt.Errorf("%s: %w", pin, err)
	}
	n.ifn = newIfNamer(t, node)
	return n, nil
}

// monotonicNow reads CLOCK_MONOTONIC, the clock of bpf_ktime_get_ns.
func monotonicNow() uint64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return uint64(ts.Nano())
}

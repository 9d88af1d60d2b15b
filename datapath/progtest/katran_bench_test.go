// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"

	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// BenchmarkKatranSideBySide measures Katran's XDP balancer (an object built from a
// Katran checkout, PODPATH_KATRAN_OBJ; skipped without it) and podpath's XDP NodePort
// program on the same TCP packet to the same VIP:port, in one process, round by round:
// each round runs every path PODPATH_KATRAN_PKTS times (repeat=1, the kernel's own
// duration of each run), in an order that rotates from round to round, so that a busy
// shared machine slows every path alike. Medians over PODPATH_KATRAN_ROUNDS rounds,
// gross and net of the empty XDP program measured in the same rounds, and the ratios
// podpath/Katran (per round, then the median) are reported as metrics; the table with
// the spread (min..max over rounds) is printed. docs/katran-side-by-side.md says what
// each side does per packet; scripts/katran-bench.sh runs it.
//
// Every round first checks, outside the measured time, that each path does what it is
// named after: Katran returns XDP_TX with the packet IPIP-encapsulated to the real
// behind the next hop's MAC; its LRU-miss counter grows by one per new-flow packet and
// not at all on established packets; podpath returns XDP_REDIRECT.
func BenchmarkKatranSideBySide(b *testing.B) {
	obj := os.Getenv("PODPATH_KATRAN_OBJ")
	if obj == "" {
		b.Skip("PODPATH_KATRAN_OBJ is not set: point it at a Katran balancer object (scripts/katran-bench.sh builds one)")
	}
	testutil.RequireRoot(b)
	rounds := envInt(b, "PODPATH_KATRAN_ROUNDS", 21)
	pkts := envInt(b, "PODPATH_KATRAN_PKTS", 10000)
	if rounds < 1 || pkts < 1 {
		b.Fatalf("PODPATH_KATRAN_ROUNDS=%d, PODPATH_KATRAN_PKTS=%d: both must be at least 1", rounds, pkts)
	}

	// The same frames for both sides: an outside client's TCP segment to node 1's
	// NodePort 192.168.50.1:30080, which is Katran's VIP too.
	syn, ack := xFrame.to(npRemote).tcp(synOnly), xFrame.to(npRemote).tcp(ackOnly)
	k := loadKatran(b, obj, npRemote, katranReal, gw2MAC)

	empty, err := testrun.EmptyXDPProgram()
	if err != nil {
		b.Fatal(err)
	}
	defer empty.Close()

	paths := []*sidePath{
		{name: "empty", prog: empty, pkt: ack, check: func() error { return checkVerdict(empty, ack, testrun.XDPPass) }},
		{name: "katran-new", prog: k.prog, pkt: syn, reset: k.forget, check: func() error { return k.checkNew(syn) }, misses: k.lruMisses, missesPerRun: 1},
		{name: "katran-est", prog: k.prog, pkt: ack, check: func() error { return k.checkEstablished(ack) }, misses: k.lruMisses, missesPerRun: 0},
	}
	for _, mode := range []config.LBMode{config.LBModeSNAT, config.LBModeDSR} {
		cfg := lbConfig(b, lbOpts{Mode: mode})
		// Forwarded packets are not traced: the per-packet cost is the datapath's.
		cfg.MonitorAggregation = uint32(bpfobj.LxcMonitorAggregationAGGREGATION_MAX)
		e := newNodePortEnv(b, "katran-"+string(mode), cfg)
		l := e.d.LB
		sp := snatPort(cfg, clientX, backendR, 6)
		reset := func() error {
			_ = l.CTTCP.Delete(ctKeyOf(clientX, npRemote, 6, maps.CTService))
			_ = l.SNAT.Delete(ctKeyOf(backendR, netip.AddrPortFrom(hostIP, sp), 6, maps.CTReply))
			return nil
		}
		prog, ns := e.d.XDP, e.f.path
		name := strings.ToLower(string(mode))
		paths = append(paths,
			&sidePath{name: name + "-new", prog: prog, pkt: syn, ns: ns, reset: reset,
				check: func() error { _ = reset(); return checkVerdict(prog, syn, testrun.XDPRedirect) }},
			&sidePath{name: name + "-est", prog: prog, pkt: ack, ns: ns,
				check: func() error { return checkVerdict(prog, ack, testrun.XDPRedirect) }})
	}

	for r := range rounds {
		// Rotate the order so that no path always runs first (after the netns setup,
		// or right after another path warmed or cooled the caches).
		for i := range paths {
			p := paths[(i+r)%len(paths)]
			if err := p.round(pkts); err != nil {
				b.Fatalf("round %d, %s: %v", r, p.name, err)
			}
		}
	}
	report(b, paths, rounds, pkts)
}

// katranReal is the one real behind Katran's VIP: node 2's backend address.
var katranReal = remotePodIP

// sidePath is one measured path: prog on pkt, in namespace ns (empty: the caller's),
// with reset before every run (new flows) and check before every round (not timed).
// misses, when set, counts the program's flow-table misses: each run must add
// missesPerRun, or the runs took another path than the one measured.
type sidePath struct {
	name         string
	prog         *ebpf.Program
	pkt          []byte
	ns           string
	reset        func() error
	check        func() error
	misses       func() (uint64, error)
	missesPerRun uint64
	rounds       []float64 // ns/pkt of each round
}

func (p *sidePath) round(n int) error {
	run := func() error {
		if err := p.check(); err != nil {
			return fmt.Errorf("before measuring: %w", err)
		}
		var before uint64
		if p.misses != nil {
			var err error
			if before, err = p.misses(); err != nil {
				return err
			}
		}
		ns, err := testrun.MeasureRuns(p.prog, p.pkt, n, p.reset)
		if err != nil {
			return err
		}
		if p.misses != nil {
			after, err := p.misses()
			if err != nil {
				return err
			}
			if d, want := after-before, p.missesPerRun*uint64(n); d != want {
				return fmt.Errorf("%d flow-table misses in %d runs, want %d: the runs took another path", d, n, want)
			}
		}
		p.rounds = append(p.rounds, ns)
		return nil
	}
	if p.ns == "" {
		return run()
	}
	return nsutil.Do(p.ns, run)
}

func checkVerdict(prog *ebpf.Program, pkt []byte, want testrun.Verdict) error {
	res, err := testrun.Run(prog, pkt)
	if err != nil {
		return err
	}
	if res.Verdict != want {
		return fmt.Errorf("verdict %s, want %s: the benchmark would measure another path",
			testrun.XDPVerdictString(res.Verdict), testrun.XDPVerdictString(want))
	}
	return nil
}

// report logs the table and reports the medians and ratios as metrics.
func report(b *testing.B, paths []*sidePath, rounds, pkts int) {
	b.Helper()
	byName := map[string]*sidePath{}
	for _, p := range paths {
		byName[p.name] = p
	}
	empty := byName["empty"].rounds
	netOf := func(p *sidePath) []float64 {
		out := make([]float64, len(p.rounds))
		for i, v := range p.rounds {
			out[i] = v - empty[i]
		}
		return out
	}
	var tbl strings.Builder
	fmt.Fprintf(&tbl, "\n%d rounds x %d packets per path, repeat=1, XDP test-run, ns/pkt (median [min..max] over rounds)\n", rounds, pkts)
	fmt.Fprintf(&tbl, "%-12s %-28s %-28s\n", "path", "gross", "net of empty")
	for _, p := range paths {
		g := p.rounds
		fmt.Fprintf(&tbl, "%-12s %-28s", p.name, spread(g))
		b.ReportMetric(median(g), p.name+"-ns/pkt")
		if p.name != "empty" {
			n := netOf(p)
			fmt.Fprintf(&tbl, " %-28s", spread(n))
			b.ReportMetric(median(n), p.name+"-net-ns/pkt")
		}
		fmt.Fprintln(&tbl)
	}
	fmt.Fprintf(&tbl, "ratios podpath/Katran (per round, median [min..max])\n")
	for _, pp := range []string{"snat", "dsr"} {
		for _, kind := range []string{"new", "est"} {
			pod, kat := byName[pp+"-"+kind], byName["katran-"+kind]
			gr, nr := ratios(pod.rounds, kat.rounds), ratios(netOf(pod), netOf(kat))
			fmt.Fprintf(&tbl, "%-12s gross %-24s net %s\n", pp+"-"+kind, spreadX(gr), spreadX(nr))
			b.ReportMetric(median(gr), "x-"+pp+"-"+kind+"/katran")
			b.ReportMetric(median(nr), "x-"+pp+"-"+kind+"/katran-net")
		}
	}
	// Printed, not logged: go test cuts a benchmark's log to 10 lines without -v.
	fmt.Print(tbl.String())
}

func ratios(a, b []float64) []float64 {
	out := make([]float64, len(a))
	for i := range a {
		out[i] = a[i] / b[i]
	}
	return out
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(v []float64) string {
	return fmt.Sprintf("%.0f [%.0f..%.0f]", median(v), slices.Min(v), slices.Max(v))
}

func spreadX(v []float64) string {
	return fmt.Sprintf("%.2fx [%.2f..%.2f]", median(v), slices.Min(v), slices.Max(v))
}

func envInt(tb testing.TB, name string, def int) int {
	tb.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		tb.Fatalf("%s=%q: %v", name, s, err)
	}
	return n
}

// Katran, loaded from its object and programmed by our own code with one VIP, one
// real, the VIP's consistent-hashing ring all pointing at that real, the default
// next hop's MAC, and one LRU (connection table) per CPU as Katran's control plane
// would attach them.
type katran struct {
	coll     *ebpf.Collection
	prog     *ebpf.Program
	lrus     []*ebpf.Map
	stats    *ebpf.Map
	maxVIPs  uint32
	ncpu     int
	flow     []byte // the packets' flow_key, as the program builds it
	real     netip.Addr
	nextHop  net.HardwareAddr
	sinceCap int // new flows since the connection-rate counter was cleared
}

// katranLRUSize is each CPU's connection table: Katran's control plane divides its
// LRU size over the forwarding cores; 100000 per CPU keeps this benchmark's memory
// small (it only ever holds one flow).
const katranLRUSize = 100000

// The layouts of Katran's map keys and values this code writes, checked against the
// object's BTF before anything is written: size, then named members' offsets.
var katranLayouts = map[string]struct {
	size    uint32
	offsets map[string]uint32
}{
	"vip_definition":  {20, map[string]uint32{"port": 16, "proto": 18}},
	"vip_meta":        {8, map[string]uint32{"flags": 0, "vip_num": 4}},
	"real_definition": {20, map[string]uint32{"flags": 16}},
	"ctl_value":       {8, nil},
	"flow_key":        {40, map[string]uint32{"proto": 36}},
	"real_pos_lru":    {16, map[string]uint32{"pos": 0, "atime": 8}},
	"lb_stats":        {16, map[string]uint32{"v1": 0, "v2": 8}},
}

// Stats map indexes above MAX_VIPS (Katran's balancer_consts.h).
const (
	katranLRUCntrs        = 0 // v1: packets to a VIP, v2: LRU misses
	katranNewConnRateCntr = 2 // v1: new connections in the current second
)

func loadKatran(tb testing.TB, path string, vip netip.AddrPort, real netip.Addr, nextHop net.HardwareAddr) *katran {
	tb.Helper()
	spec, err := ebpf.LoadCollectionSpec(path)
	if err != nil {
		tb.Fatalf("load %s: %v", path, err)
	}
	checkKatranLayouts(tb, spec)
	var progName string
	for name, p := range spec.Programs {
		if p.Type == ebpf.XDP && p.SectionName == "xdp" {
			progName = name
		}
	}
	if progName == "" {
		tb.Fatalf("%s: no XDP program in section xdp (has %v)", path, keys(spec.Programs))
	}
	// The balancer's program only; no pinning: this process owns the maps.
	for name := range spec.Programs {
		if name != progName {
			delete(spec.Programs, name)
		}
	}
	for _, m := range spec.Maps {
		m.Pinning = ebpf.PinNone
	}
	coll, err := ebpf.NewCollection(spec)
	if err != nil {
		var ve *ebpf.VerifierError
		if errors.As(err, &ve) {
			tb.Fatalf("load Katran's %s: %+v", progName, ve)
		}
		tb.Fatalf("load Katran's %s: %v", progName, err)
	}
	tb.Cleanup(func() { coll.Close() })
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		tb.Fatal(err)
	}
	k := &katran{coll: coll, prog: coll.Programs[progName], stats: coll.Maps["stats"], ncpu: ncpu, real: real, nextHop: nextHop}
	// MAX_VIPS and RING_SIZE are compile-time settings: read them back from the
	// maps' sizes (stats holds 2 * MAX_VIPS, ch_rings MAX_VIPS * RING_SIZE).
	k.maxVIPs = spec.Maps["stats"].MaxEntries / 2
	ringSize := spec.Maps["ch_rings"].MaxEntries / k.maxVIPs

	must := func(what string, err error) {
		tb.Helper()
		if err != nil {
			tb.Fatalf("program Katran's %s: %v", what, err)
		}
	}
	// vip_map: the VIP (address, port in network order, proto) -> vip_num 0, no flags.
	vkey := make([]byte, 20)
	a4 := vip.Addr().As4()
	copy(vkey, a4[:])
	binary.BigEndian.PutUint16(vkey[16:], vip.Port())
	vkey[18] = 6
	vmeta := make([]byte, 8) // flags 0, vip_num 0
	must("vip_map", coll.Maps["vip_map"].Put(vkey, vmeta))
	// reals: real 1 (0 means "no real" to Katran) is the backend, IPv4.
	rdef := make([]byte, 20)
	r4 := real.As4()
	copy(rdef, r4[:])
	must("reals", coll.Maps["reals"].Put(uint32(1), rdef))
	// ch_rings: every position of VIP 0's ring points at real 1.
	ringKeys := make([]uint32, ringSize)
	ringVals := make([]uint32, ringSize)
	for i := range ringKeys {
		ringKeys[i], ringVals[i] = uint32(i), 1
	}
	_, err = coll.Maps["ch_rings"].BatchUpdate(ringKeys, ringVals, nil)
	must("ch_rings", err)
	// ctl_array[0]: the default next hop's MAC, where every encapsulated packet goes.
	ctl := make([]byte, 8)
	copy(ctl, nextHop)
	must("ctl_array", coll.Maps["ctl_array"].Put(uint32(0), ctl))
	// lru_mapping: one LRU per CPU, as Katran's control plane attaches them.
	inner := spec.Maps["lru_mapping"].InnerMap.Copy()
	inner.MaxEntries = katranLRUSize
	for cpu := range ncpu {
		inner.Name = fmt.Sprintf("katran_lru%d", cpu)
		m, err := ebpf.NewMap(inner)
		must("an LRU", err)
		tb.Cleanup(func() { m.Close() })
		must("lru_mapping", coll.Maps["lru_mapping"].Put(uint32(cpu), m))
		k.lrus = append(k.lrus, m)
	}
	// The flow_key the program builds from the benchmark's packets (zeroed, then
	// source, destination, ports as on the wire, protocol).
	k.flow = make([]byte, 40)
	c4, d4 := clientX.Addr().As4(), vip.Addr().As4()
	copy(k.flow[0:], c4[:])
	copy(k.flow[16:], d4[:])
	binary.BigEndian.PutUint16(k.flow[32:], clientX.Port())
	binary.BigEndian.PutUint16(k.flow[34:], vip.Port())
	k.flow[36] = 6
	return k
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func checkKatranLayouts(tb testing.TB, spec *ebpf.CollectionSpec) {
	tb.Helper()
	seen := map[string]bool{}
	for _, m := range spec.Maps {
		for _, typ := range []btf.Type{m.Key, m.Value} {
			s, ok := btf.UnderlyingType(typ).(*btf.Struct)
			if !ok {
				continue
			}
			want, ok := katranLayouts[s.Name]
			if !ok || seen[s.Name] {
				continue
			}
			seen[s.Name] = true
			if s.Size != want.size {
				tb.Fatalf("Katran's struct %s is %d bytes in its BTF, this code writes %d", s.Name, s.Size, want.size)
			}
			got := map[string]uint32{}
			for _, mem := range s.Members {
				got[mem.Name] = mem.Offset.Bytes()
			}
			for name, off := range want.offsets {
				if o, ok := got[name]; !ok || o != off {
					tb.Fatalf("Katran's struct %s: member %s at %d (present %v) in its BTF, this code writes it at %d", s.Name, name, o, ok, off)
				}
			}
		}
	}
	for name := range katranLayouts {
		if !seen[name] {
			tb.Fatalf("Katran's object has no map keyed or valued by struct %s: another version than this code knows", name)
		}
	}
}

// forget makes the next packet a new flow: the flow leaves every CPU's LRU, and the
// new-connection rate counter (over MAX_CONN_RATE per second Katran stops writing
// its LRU, a flood defence a benchmark must not trip) is cleared every 1000 flows.
func (k *katran) forget() error {
	for _, m := range k.lrus {
		if err := m.Delete(k.flow); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
	}
	k.sinceCap++
	if k.sinceCap >= 1000 {
		k.sinceCap = 0
		return k.stats.Put(k.maxVIPs+katranNewConnRateCntr, make([][16]byte, k.ncpu))
	}
	return nil
}

// lruMisses is the LRU-miss counter summed over CPUs.
func (k *katran) lruMisses() (uint64, error) {
	var per [][16]byte
	if err := k.stats.Lookup(k.maxVIPs+katranLRUCntrs, &per); err != nil {
		return 0, err
	}
	var sum uint64
	for _, v := range per {
		sum += binary.LittleEndian.Uint64(v[8:])
	}
	return sum, nil
}

// checkNew runs the SYN once as a new flow and checks Katran's output; it leaves the
// flow in the LRU of the CPU it ran on, as Katran's own insert does.
func (k *katran) checkNew(syn []byte) error {
	if err := k.forget(); err != nil {
		return err
	}
	if err := k.checkOutput(syn); err != nil {
		return err
	}
	for _, m := range k.lrus {
		var v [16]byte
		if err := m.Lookup(k.flow, &v); err == nil {
			if pos := binary.LittleEndian.Uint32(v[:]); pos != 1 {
				return fmt.Errorf("Katran's LRU holds the flow at real %d, want 1", pos)
			}
			return nil
		}
	}
	return fmt.Errorf("Katran's new flow left no LRU entry keyed % x", k.flow)
}

// checkEstablished puts the flow in every CPU's LRU (a test-run may run on any CPU;
// Katran's NIC queues keep a flow on one) and checks Katran's output on the ACK.
func (k *katran) checkEstablished(ack []byte) error {
	v := make([]byte, 16)
	binary.LittleEndian.PutUint32(v, 1)
	for _, m := range k.lrus {
		if err := m.Put(k.flow, v); err != nil {
			return err
		}
	}
	return k.checkOutput(ack)
}

// checkOutput: XDP_TX, the packet IPIP-encapsulated: next hop's MAC, from the MAC
// the packet came to, outer IPv4 protocol 4 to the real, the original IPv4 packet
// inside untouched.
func (k *katran) checkOutput(pkt []byte) error {
	res, err := testrun.Run(k.prog, pkt)
	if err != nil {
		return err
	}
	if res.Verdict != testrun.XDPTx {
		return fmt.Errorf("Katran returned %s, want XDP_TX", testrun.XDPVerdictString(res.Verdict))
	}
	out := res.Out
	r4 := k.real.As4()
	switch {
	case len(out) != len(pkt)+20:
		return fmt.Errorf("Katran's output is %d bytes, want %d (IPIP): % x", len(out), len(pkt)+20, out)
	case !bytes.Equal(out[0:6], k.nextHop) || !bytes.Equal(out[6:12], pkt[0:6]):
		return fmt.Errorf("Katran's output MACs %s > %s, want %s > %s", net.HardwareAddr(out[6:12]), net.HardwareAddr(out[0:6]), net.HardwareAddr(pkt[0:6]), k.nextHop)
	case out[14]>>4 != 4 || out[23] != 4 || !bytes.Equal(out[30:34], r4[:]):
		return fmt.Errorf("Katran's outer IPv4 header % x: want protocol 4 (IPIP) to %s", out[14:34], k.real)
	case !bytes.Equal(out[34:], pkt[14:]):
		return fmt.Errorf("Katran changed the inner packet:\nwant % x\ngot  % x", pkt[14:], out[34:])
	}
	return nil
}

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
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/flowhash"
)

// lbName is the name of a load-balancer test's namespace: pptest-lb-<pid>-<suffix>.
func lbName(suffix string) string { return fmt.Sprintf("pptest-lb-%d-%s", os.Getpid(), suffix) }

// lbOpts are the load-balancer settings of lbConfig and withLB; zero fields get
// bpfconfig.Build's values, and M = 251.
type lbOpts struct {
	Mode                     config.LBMode
	MaglevTableSize          uint32
	SNATPortMin, SNATPortMax uint16
	// Reject is service-no-backend-response=reject, SourceRangeCheck
	// enable-svc-source-range-check (both off unless set, as the older fixtures expect).
	Reject, SourceRangeCheck bool
	// FragTracking is enable-ipv4-fragment-tracking (off unless set, as the older
	// fixtures expect later fragments to pass untranslated).
	FragTracking bool
}

// lbConfig is the fixture node with the load balancer on, M = 251 unless given.
func lbConfig(tb testing.TB, lb lbOpts) bpfconfig.Config {
	tb.Helper()
	return withLB(tb, fixtureConfig(), lb)
}

// withLB is cfg with the load balancer of lb on: its fields as bpfconfig.Build
// writes them for kube-proxy-replacement, on cfg's node IP.
func withLB(tb testing.TB, cfg bpfconfig.Config, lb lbOpts) bpfconfig.Config {
	tb.Helper()
	c := fixtureSettings()
	c.KubeProxyReplacement, c.MaglevTableSize = config.KPRTrue, 251
	if lb.Mode != "" {
		c.LBMode = lb.Mode
	}
	if lb.MaglevTableSize != 0 {
		c.MaglevTableSize = int(lb.MaglevTableSize)
	}
	on, err := bpfconfig.Build(c, bpfconfig.Node{ID: cfg.NodeId, IP: netip.AddrFrom4(cfg.NodeIp)})
	if err != nil {
		tb.Fatal(err)
	}
	cfg.LbEnabled, cfg.LbMode, cfg.LbMaglevTableSize, cfg.LbMaglevSeed = on.LbEnabled, on.LbMode, on.LbMaglevTableSize, on.LbMaglevSeed
	cfg.LbSnatPortMin, cfg.LbSnatPortMax = on.LbSnatPortMin, on.LbSnatPortMax
	if lb.SNATPortMin != 0 || lb.SNATPortMax != 0 {
		cfg.LbSnatPortMin, cfg.LbSnatPortMax = lb.SNATPortMin, lb.SNATPortMax
	}
	cfg.CtTimeoutTcp, cfg.CtTimeoutTcpSyn, cfg.CtTimeoutTcpClosing, cfg.CtTimeoutAny = on.CtTimeoutTcp, on.CtTimeoutTcpSyn, on.CtTimeoutTcpClosing, on.CtTimeoutAny
	if lb.Reject {
		cfg.LbNoBackendReject = on.LbNoBackendReject
	}
	if lb.SourceRangeCheck {
		cfg.LbSourceRangeCheck = on.LbSourceRangeCheck
	}
	if lb.FragTracking {
		cfg.LbFragTracking = on.LbFragTracking
	}
	return cfg
}

// The services of the LB fixtures. Clients: pod A (10.244.1.10, a local endpoint
// behind ifindex 4141) and, from outside, 172.16.0.5 behind node 1's eth0.
var (
	vipLocal   = netip.MustParseAddrPort("10.96.0.10:80") // tcp -> backend 1 (pod B, local)
	vipUDP     = netip.MustParseAddrPort("10.96.0.10:53") // udp -> backend 3 (pod B:5353)
	vipRemote  = netip.MustParseAddrPort("10.96.0.11:80") // tcp -> backend 2 (10.244.2.30, node 2)
	vipMaglev  = netip.MustParseAddrPort("10.96.0.12:80") // tcp, Maglev over backends 1 and 2
	vipEmpty   = netip.MustParseAddrPort("10.96.0.13:80") // tcp, no backend
	vipTerm    = netip.MustParseAddrPort("10.96.0.14:80") // tcp, slots [4 terminating, 5 active]
	clientA    = netip.AddrPortFrom(podAIP, 40000)
	backendB   = netip.AddrPortFrom(podBIP, 8080)
	backendR   = netip.AddrPortFrom(remotePodIP, 8080)
	podAIfidx  = podAEndpoint.Ifindex
	testSeed   = maglev.DefaultSeed()
	testM      = uint32(251)
	lbBackends = []maps.Backend{
		{ID: 1, Addr: podBIP, Port: 8080, Proto: maps.ProtoTCP},
		{ID: 2, Addr: remotePodIP, Port: 8080, Proto: maps.ProtoTCP},
		{ID: 3, Addr: podBIP, Port: 5353, Proto: maps.ProtoUDP},
		{ID: 4, Addr: podBIP, Port: 9090, Proto: maps.ProtoTCP, State: maps.BackendTerminating},
		{ID: 5, Addr: remotePodIP, Port: 9090, Proto: maps.ProtoTCP},
	}
)

// lbEnv is node 1 (setupFibNS) with the load balancer on and its own ring buffer
// reader, which decodes the records' load-balancer part too.
type lbEnv struct {
	f   *fibNS
	d   *loader.Datapath
	rb  *ringbuf.Reader
	cfg bpfconfig.Config
}

// newLBEnv loads cfg in node 1's namespace with endpoints pod A, pod B and the host.
func newLBEnv(t testing.TB, suffix string, cfg bpfconfig.Config) *lbEnv {
	t.Helper()
	f := setupNamedFibNS(t, lbName(suffix))
	return newLBEnvIn(t, f, cfg, func(m *maps.Maps) { upsertEndpoints(t, m, podAEndpoint, podBEndpoint, hostEndpoint) })
}

// newLBEnvIn loads cfg for the node f and lets program fill its endpoint, ipcache
// and node maps.
func newLBEnvIn(t testing.TB, f *fibNS, cfg bpfconfig.Config, program func(*maps.Maps)) *lbEnv {
	t.Helper()
	d := newDatapath(t, cfg, loader.Options{})
	program(d.Maps)
	rb, err := ringbuf.NewReader(d.TraceEvents)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rb.Close() })
	return &lbEnv{f: f, d: d, rb: rb, cfg: cfg}
}

// services programs the fixture services: backends, rev NAT (id = service id),
// slots, and for the Maglev service its table.
func (e *lbEnv) services(t testing.TB) {
	t.Helper()
	l := e.d.LB
	for _, b := range lbBackends {
		if err := l.BackendUpsert(b); err != nil {
			t.Fatal(err)
		}
	}
	e.service(t, 1, vipLocal, maps.ProtoTCP, maps.ServiceClusterIP, 1)
	e.service(t, 2, vipRemote, maps.ProtoTCP, maps.ServiceClusterIP, 2)
	e.service(t, 3, vipUDP, maps.ProtoUDP, maps.ServiceClusterIP, 3)
	e.service(t, 4, vipEmpty, maps.ProtoTCP, maps.ServiceClusterIP)
	e.service(t, 5, vipTerm, maps.ProtoTCP, maps.ServiceClusterIP, 4, 5)
	e.maglevTable(t, 6, 1, 2)
	e.service(t, 6, vipMaglev, maps.ProtoTCP, maps.ServiceClusterIP|maps.ServiceMaglev, 1, 2)
}

// service programs frontend fe as service id (rev NAT id = id) with backends as slots.
func (e *lbEnv) service(t testing.TB, id uint32, fe netip.AddrPort, proto maps.Proto, flags maps.ServiceFlags, backends ...uint32) {
	t.Helper()
	if err := e.d.LB.RevNatUpsert(id, fe); err != nil {
		t.Fatal(err)
	}
	if err := e.d.LB.ServiceUpsert(maps.Service{
		ServiceKey: maps.ServiceKey{Addr: fe.Addr(), Port: fe.Port(), Proto: proto},
		ID:         id, Flags: flags, RevNatID: id, Backends: backends,
	}); err != nil {
		t.Fatal(err)
	}
}

// maglevTable gives service id the Maglev table of backends (weight 1) and returns it.
func (e *lbEnv) maglevTable(t testing.TB, id uint32, backends ...uint32) []uint32 {
	t.Helper()
	var bs []maglev.Backend
	for _, b := range backends {
		bs = append(bs, maglev.Backend{ID: b, Weight: 1})
	}
	table, err := maglev.Table(bs, int(e.d.LB.MaglevTableSize), e.cfg.LbMaglevSeed)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.d.LB.MaglevSet(id, table); err != nil {
		t.Fatal(err)
	}
	return table
}

// lbHash is bpf/lib/lb_hash.h's lb_hash() in Go (internal/flowhash).
func lbHash(seed [12]byte, src, dst netip.AddrPort, proto uint8) uint32 {
	return flowhash.LB(seed, src, dst, proto)
}

// lbRecord is a trace record with its load-balancer part named.
type lbRecord struct {
	trace.Record
	Action, CT       string
	BackendID        uint32
	OrigSrc, OrigDst netip.AddrPort
}

func decodeLB(t testing.TB, raw []byte) lbRecord {
	t.Helper()
	r, err := trace.Decode(raw)
	if err != nil {
		t.Fatal(err)
	}
	n := names(t)
	return lbRecord{Record: r, Action: n.LBAction(r.LB.Action), CT: n.CTState(r.LB.CT), BackendID: r.LB.BackendID,
		OrigSrc: r.LB.OrigSrc, OrigDst: r.LB.OrigDst}
}

func (r lbRecord) String(t testing.TB) string {
	n, err := trace.DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	s := n.Format(r.Record)
	if r.Action != "TRACE_LB_NONE" {
		s += fmt.Sprintf(" lb=%s ct=%s backend=%d orig=%s->%s", r.Action, r.CT, r.BackendID, r.OrigSrc, r.OrigDst)
	}
	return s
}

// drain returns the records in the ring buffer without waiting for more.
func (e *lbEnv) drain(t testing.TB) []lbRecord {
	t.Helper()
	var out []lbRecord
	for {
		e.rb.SetDeadline(time.Now().Add(time.Nanosecond))
		rec, err := e.rb.Read()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, decodeLB(t, rec.RawSample))
	}
}

// run runs prog on pkt as if it arrived on dev, in node 1's namespace, and returns the
// result and the one record it must have left.
func (e *lbEnv) run(t testing.TB, prog *ebpf.Program, dev int, pkt []byte) (testrun.Result, lbRecord) {
	t.Helper()
	res := runInNS(t, e.f.path, prog, pkt, e.f.ctx(dev))
	recs := e.drain(t)
	if len(recs) != 1 {
		for _, r := range recs {
			t.Log(r.String(t))
		}
		t.Fatalf("want 1 trace record, got %d", len(recs))
	}
	return res, recs[0]
}

// lbWant is what a load-balancer fixture expects of the record's LB part; the zero
// value expects none.
type lbWant struct {
	action, ct       string
	backend          uint32
	origSrc, origDst netip.AddrPort
}

// lbCase is one fixture: a packet in, a verdict, the packet out (nil: unchanged;
// ignored for drops), the record's verdict part and its LB part.
type lbCase struct {
	name    string
	dev     int
	in, out []byte
	verdict testrun.Verdict
	rec     want
	lb      lbWant
	// before runs first (map changes); after checks maps.
	before, after func(t *testing.T)
}

func (e *lbEnv) runCases(t *testing.T, prog *ebpf.Program, cases []lbCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.before != nil {
				c.before(t)
			}
			res, r := e.run(t, prog, c.dev, c.in)
			if res.Verdict != c.verdict {
				t.Errorf("verdict: want %s, got %s (%s)", c.verdict, res.Verdict, r.String(t))
			}
			if c.verdict != testrun.Shot {
				wantOut := c.out
				if wantOut == nil {
					wantOut = c.in
				}
				if !bytes.Equal(wantOut, res.Out) {
					t.Errorf("output packet differs from expected:\n%s", testrun.Diff(wantOut, res.Out))
				}
			}
			checkRecord(t, r, c.rec, uint32(c.dev))
			checkLB(t, r, c.lb)
			if c.after != nil {
				c.after(t)
			}
		})
	}
}

// checkRecord compares the record's verdict part with w (ifindex: dev unless set).
func checkRecord(t *testing.T, r lbRecord, w want, dev uint32) {
	t.Helper()
	n := names(t)
	if w.drop == "" {
		w.drop = "DROP_NONE"
	}
	if w.pass == "" {
		w.pass = "PASS_NONE"
	}
	if w.ifindex == 0 {
		w.ifindex = dev
	}
	got := want{
		obs: n.ObsPoint(r.ObsPoint), verdict: n.Verdict(r.Verdict), drop: n.DropReason(r.DropReason),
		pass: n.PassReason(r.PassReason), ifindex: r.Ifindex, target: r.TargetIfindex,
		identity: r.SrcIdentity, endpoint: r.TunnelEndpoint,
	}
	if r.Tunnel != 0 {
		got.tunnel = n.Tunnel(r.Tunnel)
	}
	if got != w {
		t.Errorf("trace record:\nwant %+v\ngot  %+v\n(%s)", w, got, r.String(t))
	}
}

func checkLB(t *testing.T, r lbRecord, w lbWant) {
	t.Helper()
	if w.action == "" {
		w.action, w.ct = "TRACE_LB_NONE", "TRACE_CT_NONE"
	}
	got := lbWant{action: r.Action, ct: r.CT, backend: r.BackendID, origSrc: r.OrigSrc, origDst: r.OrigDst}
	if got != w {
		t.Errorf("trace record lb part:\nwant %+v\ngot  %+v", w, got)
	}
}

// Packets of the LB fixtures: TCP with flags, or UDP, with lengths and checksums
// computed; TTL 64 unless given, ID 0x1234, DF.
type tcpFlags struct{ syn, ack, fin, rst bool }

var (
	synOnly = tcpFlags{syn: true}
	synAck  = tcpFlags{syn: true, ack: true}
	ackOnly = tcpFlags{ack: true}
	finAck  = tcpFlags{fin: true, ack: true}
	rstOnly = tcpFlags{rst: true}
)

type frame struct {
	srcMAC, dstMAC net.HardwareAddr
	src, dst       netip.AddrPort
	ttl            uint8
}

func (f frame) ip(proto layers.IPProtocol) *layers.IPv4 {
	ttl := f.ttl
	if ttl == 0 {
		ttl = 64
	}
	return &layers.IPv4{Version: 4, IHL: 5, TTL: ttl, Id: 0x1234, Flags: layers.IPv4DontFragment,
		Protocol: proto, SrcIP: f.src.Addr().AsSlice(), DstIP: f.dst.Addr().AsSlice()}
}

func (f frame) eth() *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: f.srcMAC, DstMAC: f.dstMAC, EthernetType: layers.EthernetTypeIPv4}
}

func (f frame) tcp(fl tcpFlags) []byte {
	return testrun.MustBuild(f.eth(), f.ip(layers.IPProtocolTCP),
		&layers.TCP{SrcPort: layers.TCPPort(f.src.Port()), DstPort: layers.TCPPort(f.dst.Port()),
			SYN: fl.syn, ACK: fl.ack, FIN: fl.fin, RST: fl.rst, Window: 64240, Seq: 1, Ack: 7},
		gopacket.Payload([]byte("podpath!")))
}

func (f frame) udp() []byte {
	return testrun.MustBuild(f.eth(), f.ip(layers.IPProtocolUDP),
		&layers.UDP{SrcPort: layers.UDPPort(f.src.Port()), DstPort: layers.UDPPort(f.dst.Port())},
		gopacket.Payload([]byte("podpath!")))
}

// udpNoCsum is f.udp() with the UDP checksum 0 (none), as IPv4 allows.
func (f frame) udpNoCsum() []byte {
	b := f.udp()
	b[14+20+6], b[14+20+7] = 0, 0
	return b
}

func (f frame) icmp() []byte {
	return testrun.MustBuild(f.eth(), f.ip(layers.IPProtocolICMPv4),
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 7, Seq: 1}, gopacket.Payload(make([]byte, 56)))
}

// to is f with another destination; from with another source; routed as a router
// forwards it (MACs, TTL - 1).
func (f frame) to(dst netip.AddrPort) frame   { f.dst = dst; return f }
func (f frame) from(src netip.AddrPort) frame { f.src = src; return f }
func (f frame) routed(src, dst net.HardwareAddr) frame {
	f.srcMAC, f.dstMAC = src, dst
	if f.ttl == 0 {
		f.ttl = 64
	}
	f.ttl--
	return f
}

// podAFrame is pod A sending to dst through its gateway MAC.
func podAFrame(src, dst netip.AddrPort) frame {
	return frame{srcMAC: podAMAC, dstMAC: lxcAMAC, src: src, dst: dst}
}

// podBFrame is pod B sending (a backend answering).
func podBFrame(src, dst netip.AddrPort) frame {
	return frame{srcMAC: podBMAC, dstMAC: lxcBMAC, src: src, dst: dst}
}

// ctEntries lists conntrack and SNAT entries, failing the test on error.
func ctEntries(t testing.TB, l *maps.LB) []maps.CTEntry {
	t.Helper()
	list, err := l.CTList()
	if err != nil {
		t.Fatal(err)
	}
	return list
}

// ctFind returns the entry of map m from src to dst in direction dir.
func ctFind(t testing.TB, l *maps.LB, m string, src, dst netip.AddrPort, dir maps.CTDir) (maps.CTEntry, bool) {
	t.Helper()
	for _, e := range ctEntries(t, l) {
		if e.Map == m && e.Src == src && e.Dst == dst && e.Dir == dir {
			return e, true
		}
	}
	return maps.CTEntry{}, false
}

// ctExpect checks the entry exists with flags and a remaining lifetime of about
// lifetime seconds.
func ctExpect(t testing.TB, l *maps.LB, m string, src, dst netip.AddrPort, dir maps.CTDir, flags maps.CTFlags, lifetime int, backend uint32) maps.CTEntry {
	t.Helper()
	e, ok := ctFind(t, l, m, src, dst, dir)
	if !ok {
		var all []string
		for _, e := range ctEntries(t, l) {
			all = append(all, e.String())
		}
		t.Fatalf("no %s entry %s -> %s %s in:\n%s", m, src, dst, dir, strings.Join(all, "\n"))
	}
	d := time.Duration(lifetime) * time.Second
	if e.Flags != flags || e.BackendID != backend || e.Remaining > d || e.Remaining < d-2*time.Second {
		t.Errorf("entry %s: want flags %s, backend %d, about %s left", e, flags, backend, d)
	}
	return e
}

// ctSetLifetime rewrites the lifetime of an entry (expiring it, say), keyed as CTList
// reports it.
func ctSetLifetime(t testing.TB, l *maps.LB, e maps.CTEntry, lifetime uint32) {
	t.Helper()
	m := map[string]*ebpf.Map{"ct_tcp": l.CTTCP, "ct_any": l.CTAny, "snat": l.SNAT}[e.Map]
	k := bpfobj.LxcCtKey{Saddr: wire4(e.Src.Addr()), Daddr: wire4(e.Dst.Addr()), Sport: wire16(e.Src.Port()),
		Dport: wire16(e.Dst.Port()), Proto: uint8(e.Proto), Dir: uint8(e.Dir)}
	var v bpfobj.LxcCtEntry
	if err := m.Lookup(k, &v); err != nil {
		t.Fatal(err)
	}
	v.Lifetime = lifetime
	if err := m.Put(k, v); err != nil {
		t.Fatal(err)
	}
}

func wire4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func wire16(p uint16) uint16 {
	return binary.NativeEndian.Uint16(binary.BigEndian.AppendUint16(nil, p))
}

// nowSeconds is CLOCK_MONOTONIC in the unit of conntrack lifetimes.
func nowSeconds(t testing.TB) uint32 {
	t.Helper()
	now, err := maps.MonotonicNow()
	if err != nil {
		t.Fatal(err)
	}
	return uint32(now / time.Second)
}

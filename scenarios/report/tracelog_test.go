// SPDX-License-Identifier: Apache-2.0

package report

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"podpath/datapath/bpfobj"
	"podpath/datapath/trace"
)

// A run's trace log holds every record read, one JSON object per line, with the
// datapath's enums by name, the node and the topology.
func TestTraceLog(t *testing.T) {
	path := filepath.Join(t.TempDir(), TraceLogFile)
	l, err := NewTraceLog(path)
	if err != nil {
		t.Fatal(err)
	}
	redirect := trace.Record{KtimeNs: 1000, NodeID: 1, Ifindex: 7, TargetIfindex: 9, PktLen: 98,
		ObsPoint: uint16(bpfobj.LxcObsPointOBS_FROM_CONTAINER), Verdict: uint16(bpfobj.LxcTraceVerdictVERDICT_REDIRECT_PEER),
		Pkt: trace.Summary{Src: netip.MustParseAddr("10.244.1.10"), Dst: netip.MustParseAddr("10.244.1.11"), IPProto: 1, TTL: 64, HasIPv4: true}}
	encap := redirect
	encap.ObsPoint, encap.Verdict, encap.TargetIfindex = uint16(bpfobj.LxcObsPointOBS_FROM_CONTAINER), uint16(bpfobj.LxcTraceVerdictVERDICT_REDIRECT), 3
	encap.Tunnel, encap.SrcIdentity, encap.TunnelEndpoint = uint16(bpfobj.LxcTraceTunnelTRACE_ENCAP_GENEVE), 24372, netip.MustParseAddr("10.0.0.2")
	dnat := redirect
	dnat.LB = trace.LBInfo{Action: uint8(bpfobj.LxcTraceLbTRACE_LB_DNAT), CT: uint8(bpfobj.LxcTraceCtTRACE_CT_NEW), BackendID: 2,
		OrigSrc: netip.MustParseAddrPort("10.0.0.9:50000"), OrigDst: netip.MustParseAddrPort("10.96.0.10:80")}
	drop := redirect
	drop.ObsPoint, drop.Verdict, drop.DropReason = uint16(bpfobj.LxcObsPointOBS_FROM_NETDEV), uint16(bpfobj.LxcTraceVerdictVERDICT_DROP), uint16(bpfobj.LxcDropReasonDROP_TRUNCATED_IPV4)
	l.Write("", "l2-agent-1a2b3c", "node1", []trace.Record{redirect, encap, dnat})
	l.Write("", "l2-agent-1a2b3c", "node2", []trace.Record{drop})
	l.Write("", "l2-agent-1a2b3c", "node2", nil)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var got []TraceLogRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r TraceLogRecord
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		got = append(got, r)
	}
	if len(got) != 4 {
		t.Fatalf("%d records, want 4: %+v", len(got), got)
	}
	r := got[0]
	if r.Topology != "l2-agent-1a2b3c" || r.Node != "node1" || r.ObsPoint != "OBS_FROM_CONTAINER" || r.Verdict != "VERDICT_REDIRECT_PEER" ||
		r.TargetIfindex != 9 || r.Src != "10.244.1.10" || r.Dst != "10.244.1.11" || r.TTL != 64 || !strings.Contains(r.Summary, "icmp") {
		t.Errorf("redirect record %+v", r)
	}
	if time.Since(r.Time) < 0 || r.KtimeNs != 1000 {
		t.Errorf("time %s, ktime %d", r.Time, r.KtimeNs)
	}
	if e := got[1]; e.Tunnel != "TRACE_ENCAP_GENEVE" || e.SrcIdentity != 24372 || e.TunnelEndpoint != "10.0.0.2" {
		t.Errorf("encap record %+v", e)
	}
	if lb := got[2]; lb.LBAction != "TRACE_LB_DNAT" || lb.CTState != "TRACE_CT_NEW" || lb.BackendID != 2 || lb.OrigSrc != "10.0.0.9:50000" || lb.OrigDst != "10.96.0.10:80" {
		t.Errorf("load-balanced record %+v", lb)
	}
	if d := got[3]; d.Node != "node2" || d.Verdict != "VERDICT_DROP" || d.DropReason != "DROP_TRUNCATED_IPV4" {
		t.Errorf("drop record %+v", d)
	}
}

// A conformance report links each scenario's trace log, in the summary table and in
// the scenario's section, with its number of records.
func TestReportLinksTraceLog(t *testing.T) {
	dir := t.TempDir()
	rep := sampleReport(t, dir)
	lines := strings.Repeat(`{"topology":"t","node":"node1","verdict":"VERDICT_PASS"}`+"\n", 3)
	if err := os.WriteFile(filepath.Join(dir, "native-routing", TraceLogFile), []byte(lines), 0o644); err != nil {
		t.Fatal(err)
	}
	rep.Scenarios[0].Traces = "native-routing/" + TraceLogFile
	if err := WriteReportHTML(dir, rep); err != nil {
		t.Fatal(err)
	}
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	page := string(html)
	for _, want := range []string{`<th>Trace records</th>`, `<a href="native-routing/traces.jsonl">3 records</a>`,
		`Trace records: <a href="native-routing/traces.jsonl">native-routing/traces.jsonl</a>`} {
		if !strings.Contains(page, want) {
			t.Errorf("report.html lacks %s", want)
		}
	}
	// The vxlan scenario read no record: no link.
	if strings.Count(page, "traces.jsonl\">") != 2 || !strings.Contains(page, `<span class="muted">none</span>`) {
		t.Errorf("report.html links a trace log that is not there")
	}
}

// podpath run --junit: one testcase per check, failures with their evidence.
func TestJUnit(t *testing.T) {
	rep := sampleReport(t, t.TempDir())
	var b bytes.Buffer
	if err := WriteJUnit(&b, rep.Scenarios...); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{`<testsuites tests="4" failures="1"`, `<testsuite name="native-routing" tests="3" failures="1" time="31.000">`,
		`<testcase name="routed: echo request crosses 11 hops`, `<failure message="packet not seen at hop 3 underlay/node1-eth1 (in, ttl 63): want ICMPv4 echo-request; seen there:">`,
		`(nothing captured)`, `<system-out>looked at: the ICMP answer from pod2 in pod1</system-out>`} {
		if !strings.Contains(out, want) {
			t.Errorf("junit lacks %s:\n%s", want, out)
		}
	}
}

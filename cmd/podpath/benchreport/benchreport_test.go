// SPDX-License-Identifier: Apache-2.0

package benchreport

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// sample is go test -bench output of make bench: test-run benchmarks (two runs of each
// with -count 2), the floor, another package's benchmark, a throughput benchmark and a
// skipped one.
const sample = `goos: linux
goarch: amd64
pkg: podpath/datapath/progtest
cpu: AMD EPYC
BenchmarkDatapath/from-container/same-node-redirect-peer-2         	   20000	      3379 ns/op	       213.7 ns/pkt	       103.4 ns/pkt-net
BenchmarkDatapath/from-container/same-node-redirect-peer-2         	   20000	      3401 ns/op	       215.7 ns/pkt	       105.4 ns/pkt-net
BenchmarkDatapath/from-container/same-node-redirect-peer-2         	   20000	      3390 ns/op	       250.1 ns/pkt	       139.8 ns/pkt-net
BenchmarkOverlay/from-container/geneve-encap-12B-option-2          	   20000	      4120 ns/op	       967.4 ns/pkt	       857.0 ns/pkt-net
BenchmarkOverlay/hash-shim-only-2                                  	   20000	      2379 ns/op	        95.84 ns/pkt	         0 ns/pkt-net
BenchmarkProbe/tcp-syn-2                                           	   20000	        60.40 ns/op	        53.00 ns/pkt	        14.00 ns/pkt-net
BenchmarkEmptyProgram/repeatN-2                                    	   20000	        41.66 ns/op	        40.00 ns/pkt	         1.000 ns/pkt-net
BenchmarkEmptyProgram/repeat1-2                                    	   20000	      2369 ns/op	        83.40 ns/pkt	         0 ns/pkt-net
PASS
ok  	podpath/datapath/progtest	2.953s
goos: linux
goarch: amd64
pkg: podpath/datapath/maglev
cpu: AMD EPYC
BenchmarkTable/M=16381/N=100-2         	     100	    627016 ns/op	         0.6270 ms/op	  134176 B/op	       5 allocs/op
PASS
ok  	podpath/datapath/maglev	1.3s
goos: linux
goarch: amd64
pkg: podpath/scenarios
cpu: AMD EPYC
BenchmarkThroughputSameNode
BenchmarkThroughputSameNode-2   	       1	         0 ns/op	        20.11 legacy-Gbit/s	        35.02 redirect_peer-Gbit/s	         1.741 redirect_peer/legacy	         0.9165 redirect_peer/veth	        38.21 veth-Gbit/s
--- BENCH: BenchmarkThroughputSameNode-2
    throughput_test.go:178: redirect_peer/veth 0.917 (target >= 0.9), redirect_peer/legacy 1.741 (target > 1)
--- SKIP: BenchmarkThroughputCrossNode
    throughput_test.go:188: iperf3 not installed
PASS
ok  	podpath/scenarios	61.2s
`

func TestParse(t *testing.T) {
	tab, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]Row{}
	var order []string
	for _, r := range tab.Rows {
		rows[r.Path] = r
		order = append(order, r.Path)
	}
	want := []string{
		"Datapath/from-container/same-node-redirect-peer", "Overlay/from-container/geneve-encap-12B-option",
		"Overlay/hash-shim-only", "Probe/tcp-syn", "EmptyProgram/repeatN", "EmptyProgram/repeat1",
		"Table/M=16381/N=100", "ThroughputSameNode/legacy", "ThroughputSameNode/veth", "ThroughputSameNode/redirect_peer",
	}
	if strings.Join(order, " ") != strings.Join(want, " ") {
		t.Fatalf("rows\n%s\nwant\n%s", strings.Join(order, "\n"), strings.Join(want, "\n"))
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-3 }
	for _, tc := range []struct {
		path, unit string
		value      float64
		kind       string
		ratios     map[string]float64
	}{
		// The median of three runs; the floor its ns/pkt − ns/pkt-net points at.
		{"Datapath/from-container/same-node-redirect-peer", UnitNsPkt, 215.7, KindTestRun, map[string]float64{"floor": 215.7 / 83.4}},
		{"Overlay/hash-shim-only", UnitNsPkt, 95.84, KindTestRun, map[string]float64{"floor": 95.84 / 83.4}},
		{"Probe/tcp-syn", UnitNsPkt, 53, KindTestRun, map[string]float64{"floor": 53.0 / 40}},
		{"EmptyProgram/repeat1", UnitNsPkt, 83.4, KindTestRun, nil},
		{"Table/M=16381/N=100", "ms/op", 0.627, KindOther, nil},
		{"ThroughputSameNode/veth", UnitGbps, 38.21, KindThroughput, nil},
		{"ThroughputSameNode/redirect_peer", UnitGbps, 35.02, KindThroughput, map[string]float64{"veth": 0.9165, "legacy": 1.741}},
	} {
		r := rows[tc.path]
		v, unit := r.Main()
		if unit != tc.unit || !near(v, tc.value) || r.Kind != tc.kind {
			t.Errorf("%s: main %v %s kind %s, want %v %s %s", tc.path, v, unit, r.Kind, tc.value, tc.unit, tc.kind)
		}
		if len(r.Ratios) != len(tc.ratios) {
			t.Errorf("%s: ratios %v, want %v", tc.path, r.Ratios, tc.ratios)
		}
		for b, want := range tc.ratios {
			if !near(r.Ratios[b], want) {
				t.Errorf("%s: ratio to %s %v, want %v", tc.path, b, r.Ratios[b], want)
			}
		}
	}
	if r := rows["Probe/tcp-syn"]; r.Floor != "EmptyProgram/repeatN" {
		t.Errorf("Probe/tcp-syn (repeat=N) measured against floor %q", r.Floor)
	}
	if r := rows["Datapath/from-container/same-node-redirect-peer"]; r.Runs != 3 || !near(r.Metrics[UnitNsPktNet], 105.4) || r.Floor != "EmptyProgram/repeat1" {
		t.Errorf("aggregated row %+v", r)
	}
	if !rows["ThroughputSameNode/veth"].IsBaseline || !rows["EmptyProgram/repeatN"].IsBaseline {
		t.Error("baselines not marked")
	}
	if len(tab.Skipped) != 1 || tab.Skipped[0] != (Note{"ThroughputCrossNode", "iperf3 not installed"}) {
		t.Errorf("skipped %+v", tab.Skipped)
	}
	if tab.Config["cpu"] != "AMD EPYC" {
		t.Errorf("config %v", tab.Config)
	}

	var out bytes.Buffer
	if err := tab.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{
		"PATH                                             VALUE  UNIT    NET ns/pkt  RATIO TO BASELINE (SAME RUN)\n",
		"Datapath/from-container/same-node-redirect-peer  215.7  ns/pkt       105.4  2.586× EmptyProgram/repeat1\n",
		"EmptyProgram/repeatN                                40  ns/pkt           1  (floor)\n",
		"ThroughputSameNode/veth                          38.21  Gbit/s              (baseline)\n",
		"ThroughputSameNode/redirect_peer                 35.02  Gbit/s              1.741× legacy, 0.916× veth\n",
		"skipped: ThroughputCrossNode: iperf3 not installed\n",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
}

func TestParseImpliedFloor(t *testing.T) {
	tab, err := Parse(strings.NewReader("pkg: x\nBenchmarkDatapath/a-8   100   3000 ns/op   200 ns/pkt   120 ns/pkt-net\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := tab.Rows[0]
	if !r.FloorImplied || math.Abs(r.Ratios["floor"]-2.5) > 1e-9 {
		t.Errorf("row %+v: want ratio 2.5 to the implied floor 80", r)
	}
}

func TestCompare(t *testing.T) {
	old, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	newer := strings.NewReplacer(
		"213.7 ns/pkt", "300.0 ns/pkt", "215.7 ns/pkt", "300.0 ns/pkt", "250.1 ns/pkt", "300.0 ns/pkt", // worse
		"967.4 ns/pkt", "700.0 ns/pkt", "857.0 ns/pkt-net", "589.6 ns/pkt-net", // better
		"53.00 ns/pkt", "54.00 ns/pkt", // noise
		"35.02 redirect_peer-Gbit/s", "30.00 redirect_peer-Gbit/s", // worse throughput
		"0.9165 redirect_peer/veth", "0.7851 redirect_peer/veth",
		"BenchmarkProbe/tcp-syn-2", "BenchmarkProbe/tcp-syn-new-2",
	).Replace(sample)
	nw, err := Parse(strings.NewReader(newer))
	if err != nil {
		t.Fatal(err)
	}
	// Through JSON, as make bench stores it.
	var buf bytes.Buffer
	if err := nw.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var back Table
	if err := json.Unmarshal(buf.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	deltas := Compare(old, &back, DefaultThreshold)
	got := map[string]Delta{}
	for _, d := range deltas {
		got[d.Path+" "+d.Metric] = d
	}
	for _, tc := range []struct{ key, verdict string }{
		{"Datapath/from-container/same-node-redirect-peer ns/pkt", Worse},
		{"Datapath/from-container/same-node-redirect-peer x floor", Worse},
		{"Overlay/from-container/geneve-encap-12B-option x floor", Better},
		{"Overlay/from-container/geneve-encap-12B-option ns/pkt", Better},
		{"Overlay/hash-shim-only ns/pkt", Same},
		{"ThroughputSameNode/redirect_peer Gbit/s", Worse},
		{"ThroughputSameNode/redirect_peer x veth", Worse},
		{"ThroughputSameNode/veth Gbit/s", Same},
		{"Probe/tcp-syn-new ns/pkt", Added},
		{"Probe/tcp-syn ns/pkt", Gone},
	} {
		if d, ok := got[tc.key]; !ok || d.Verdict != tc.verdict {
			t.Errorf("%s: %+v, want verdict %s", tc.key, d, tc.verdict)
		}
	}
	if _, ok := got["Datapath/from-container/same-node-redirect-peer ns/op"]; ok {
		t.Error("ns/op of a test-run row compared: it is harness overhead")
	}
	if d := got["Table/M=16381/N=100 ms/op"]; d.Verdict != Same || d.Percent != 0 {
		t.Errorf("unchanged row: %+v", d)
	}
	var out bytes.Buffer
	if err := WriteCompare(&out, deltas, DefaultThreshold); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"PATH                                             METRIC         OLD     NEW   DELTA\n",
		"Datapath/from-container/same-node-redirect-peer  ns/pkt       215.7     300  +39.1%  WORSE\n",
		"                                                 x floor      2.586   3.597  +39.1%  WORSE\n",
		"Overlay/hash-shim-only                           ns/pkt       95.84   95.84   +0.0%  ~\n",
		"Probe/tcp-syn-new                                ns/pkt           -      54     n/a  new\n",
		"ThroughputSameNode/redirect_peer                 Gbit/s       35.02      30  -14.3%  WORSE\n",
		"                                                 x veth      0.9165  0.7851  -14.3%  WORSE\n",
		"4 worse, 3 better beyond ±10% (~: within it)\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("compare output lacks %q:\n%s", want, out.String())
		}
	}
}

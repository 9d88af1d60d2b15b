// SPDX-License-Identifier: Apache-2.0

package benchreport

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kinds of rows.
const (
	// KindTestRun rows measure one BPF program with BPF_PROG_TEST_RUN (ns/pkt); their
	// baseline is the empty program's floor.
	KindTestRun = "testrun"
	// KindThroughput rows are one path of a throughput benchmark (Gbit/s); their
	// baselines are the other paths the benchmark reports ratios to.
	KindThroughput = "throughput"
	// KindOther rows are any other benchmark (ns/op, B/op, custom units).
	KindOther = "other"
)

// Metric units the table knows.
const (
	UnitNsPkt    = "ns/pkt"
	UnitNsPktNet = "ns/pkt-net"
	UnitGbps     = "Gbit/s"
	UnitNsOp     = "ns/op"
)

// FloorBenchmark is the benchmark whose sub-benchmarks (repeatN, repeat1) measure the
// empty program: the test-run floor that ns/pkt rows are read against.
const FloorBenchmark = "EmptyProgram"

// Table is one benchmark run as rows.
type Table struct {
	// Config holds the goos, goarch and cpu lines of the output (the last seen).
	Config map[string]string `json:"config,omitempty"`
	Rows   []Row             `json:"rows"`
	// Skipped and Failed are benchmarks that reported no result, with the reason logged.
	Skipped []Note `json:"skipped,omitempty"`
	Failed  []Note `json:"failed,omitempty"`
}

// Row is one path: a benchmark (without its -GOMAXPROCS suffix and "Benchmark" prefix),
// or for throughput benchmarks one of the paths it measures.
type Row struct {
	Path    string `json:"path"`
	Package string `json:"package,omitempty"`
	Kind    string `json:"kind"`
	// Runs is how many result lines the row aggregates (go test -count); Metrics hold
	// the median of each unit over them.
	Runs    int                `json:"runs"`
	Metrics map[string]float64 `json:"metrics"`
	// Ratios are the row's main value divided by each baseline's, measured in the same
	// run: by baseline name ("floor" for test-run rows, the other path's name for
	// throughput rows).
	Ratios map[string]float64 `json:"ratios,omitempty"`
	// Floor is the floor benchmark row a test-run row's "floor" ratio is measured
	// against (EmptyProgram/repeat1 or /repeatN).
	Floor string `json:"floor,omitempty"`
	// IsBaseline is set on rows that other rows' ratios are measured against.
	IsBaseline bool `json:"isBaseline,omitempty"`
	// FloorImplied is set when no floor benchmark ran in the same package: the ratio's
	// floor is then ns/pkt minus ns/pkt-net.
	FloorImplied bool `json:"floorImplied,omitempty"`
}

// Note is a benchmark without result and why.
type Note struct {
	Name   string `json:"name"`
	Reason string `json:"reason,omitempty"`
}

// Main returns the row's headline metric and its unit: ns/pkt, Gbit/s, else the first
// custom unit, else ns/op.
func (r Row) Main() (float64, string) {
	for _, u := range []string{UnitNsPkt, UnitGbps} {
		if v, ok := r.Metrics[u]; ok {
			return v, u
		}
	}
	units := r.units()
	for _, u := range units {
		if u != UnitNsOp && u != "B/op" && u != "allocs/op" {
			return r.Metrics[u], u
		}
	}
	if len(units) > 0 {
		if v, ok := r.Metrics[UnitNsOp]; ok {
			return v, UnitNsOp
		}
		return r.Metrics[units[0]], units[0]
	}
	return 0, ""
}

func (r Row) units() []string {
	var us []string
	for u := range r.Metrics {
		us = append(us, u)
	}
	slices.Sort(us)
	return us
}

// ReadFile parses go test -bench output from a file, or from stdin for "-" or "".
func ReadFile(name string) (*Table, error) {
	if name == "" || name == "-" {
		return Parse(os.Stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f)
}

var procsSuffix = regexp.MustCompile(`-\d+$`)

type result struct {
	pkg, name string
	metrics   map[string][]float64
	order     []string // units in the order first reported
	runs      int
}

// Parse reads the standard `go test -bench` output (`BenchmarkX/sub-N  iters  V unit
// V unit...`, plus `pkg:`, `goos:`, `cpu:` lines and `--- SKIP`/`--- FAIL` blocks) and
// builds the table: one row per benchmark, throughput benchmarks split per path, every
// test-run row with its ratio to the empty program's floor from the same run.
func Parse(r io.Reader) (*Table, error) {
	t := &Table{Config: map[string]string{}}
	var results []*result
	byKey := map[string]*result{}
	pkg := ""
	var note *Note // the --- SKIP/FAIL block being read
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		trimmed := strings.TrimSpace(line)
		if note != nil {
			if strings.HasPrefix(line, "    ") && note.Reason == "" {
				note.Reason = logMessage(trimmed)
				continue
			}
			if strings.HasPrefix(line, "    ") {
				continue
			}
			note = nil
		}
		switch {
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
			continue
		case strings.HasPrefix(line, "goos: "), strings.HasPrefix(line, "goarch: "), strings.HasPrefix(line, "cpu: "):
			k, v, _ := strings.Cut(line, ": ")
			t.Config[k] = v
			continue
		case strings.HasPrefix(trimmed, "--- SKIP: Benchmark"), strings.HasPrefix(trimmed, "--- FAIL: Benchmark"):
			name := benchName(strings.Fields(trimmed)[2])
			if strings.HasPrefix(trimmed, "--- SKIP") {
				t.Skipped = append(t.Skipped, Note{Name: name})
				note = &t.Skipped[len(t.Skipped)-1]
			} else {
				t.Failed = append(t.Failed, Note{Name: name})
				note = &t.Failed[len(t.Failed)-1]
			}
			continue
		}
		if !strings.HasPrefix(line, "Benchmark") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			continue // a name alone (chatty output) or not a result
		}
		if _, err := strconv.ParseInt(f[1], 10, 64); err != nil {
			continue
		}
		name := benchName(f[0])
		key := pkg + "\x00" + name
		res := byKey[key]
		if res == nil {
			res = &result{pkg: pkg, name: name, metrics: map[string][]float64{}}
			byKey[key] = res
			results = append(results, res)
		}
		res.runs++
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("parse benchmark line %q: value %q: %w", line, f[i], err)
			}
			unit := f[i+1]
			if _, ok := res.metrics[unit]; !ok {
				res.order = append(res.order, unit)
			}
			res.metrics[unit] = append(res.metrics[unit], v)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, res := range results {
		t.Rows = append(t.Rows, rows(res)...)
	}
	t.setFloors()
	t.setXDPRatios()
	if len(t.Config) == 0 {
		t.Config = nil
	}
	return t, nil
}

// benchName drops the "Benchmark" prefix and the -GOMAXPROCS suffix.
func benchName(s string) string {
	return procsSuffix.ReplaceAllString(strings.TrimPrefix(s, "Benchmark"), "")
}

// logMessage drops the "file_test.go:123: " prefix of a t.Log line.
func logMessage(s string) string {
	if file, msg, ok := strings.Cut(s, ": "); ok && strings.Contains(file, ".go:") {
		return msg
	}
	return s
}

// rows turns one benchmark's result into rows: a throughput benchmark (units
// "<path>-Gbit/s") gives one row per path with the ratios "<path>/<baseline>" it
// reports; anything else one row.
func rows(res *result) []Row {
	med := map[string]float64{}
	for u, vs := range res.metrics {
		med[u] = median(vs)
	}
	var paths []string
	for _, u := range res.order {
		if p, ok := strings.CutSuffix(u, "-"+UnitGbps); ok {
			paths = append(paths, p)
		}
	}
	if len(paths) == 0 {
		kind := KindOther
		if _, ok := med[UnitNsPkt]; ok {
			kind = KindTestRun
		}
		return []Row{{Path: res.name, Package: res.pkg, Kind: kind, Runs: res.runs, Metrics: med}}
	}
	// Baselines (the right side of a ratio) first: the table reads from the limit down.
	isBase := map[string]bool{}
	for _, u := range res.order {
		if _, b, ok := strings.Cut(u, "/"); ok && slices.Contains(paths, b) && !strings.HasSuffix(u, "-"+UnitGbps) {
			isBase[b] = true
		}
	}
	slices.SortStableFunc(paths, func(a, b string) int {
		switch {
		case isBase[a] && !isBase[b]:
			return -1
		case isBase[b] && !isBase[a]:
			return 1
		}
		return 0
	})
	out := make([]Row, len(paths))
	index := map[string]int{}
	for i, p := range paths {
		index[p] = i
		out[i] = Row{Path: res.name + "/" + p, Package: res.pkg, Kind: KindThroughput, Runs: res.runs,
			Metrics: map[string]float64{UnitGbps: med[p+"-"+UnitGbps]}}
	}
	for _, u := range res.order {
		a, b, ok := strings.Cut(u, "/")
		ia, okA := index[a]
		ib, okB := index[b]
		if !ok || !okA || !okB {
			continue
		}
		if out[ia].Ratios == nil {
			out[ia].Ratios = map[string]float64{}
		}
		out[ia].Ratios[b] = med[u]
		out[ib].IsBaseline = true
	}
	return out
}

// setFloors gives every test-run row its ratio to the empty program's floor: the floor
// benchmark's sub-benchmark of the same package whose ns/pkt is nearest to the floor
// the row was reported against (ns/pkt − ns/pkt-net, which tells repeat=1 from
// repeat=N); without a floor benchmark, that implied floor itself.
func (t *Table) setFloors() {
	floors := map[string][]int{} // package -> floor rows
	for i, r := range t.Rows {
		if r.Kind == KindTestRun && strings.HasPrefix(r.Path, FloorBenchmark+"/") {
			floors[r.Package] = append(floors[r.Package], i)
			t.Rows[i].IsBaseline = true
		}
	}
	for i := range t.Rows {
		r := &t.Rows[i]
		if r.Kind != KindTestRun || r.IsBaseline {
			continue
		}
		ns := r.Metrics[UnitNsPkt]
		implied := ns - r.Metrics[UnitNsPktNet]
		best, bestDist := -1, math.Inf(1)
		for _, j := range floors[r.Package] {
			if d := math.Abs(t.Rows[j].Metrics[UnitNsPkt] - implied); d < bestDist {
				best, bestDist = j, d
			}
		}
		switch {
		case best >= 0 && t.Rows[best].Metrics[UnitNsPkt] > 0:
			r.Ratios = map[string]float64{"floor": ns / t.Rows[best].Metrics[UnitNsPkt]}
			r.Floor = t.Rows[best].Path
		case implied > 0 && r.Metrics[UnitNsPktNet] > 0:
			r.Ratios = map[string]float64{"floor": ns / implied}
			r.FloorImplied = true
		}
	}
}

// setXDPRatios gives every test-run row of an XDP program (path ending in /xdp) its
// ratio to the tc row of the same path (/tc) measured in the same run, gross ("tc")
// and net of each hook's empty program ("tc net"): BenchmarkXDPNodePort's pairs.
func (t *Table) setXDPRatios() {
	byPath := map[string]int{}
	for i, r := range t.Rows {
		byPath[r.Package+" "+r.Path] = i
	}
	for i := range t.Rows {
		r := &t.Rows[i]
		base, ok := strings.CutSuffix(r.Path, "/xdp")
		if r.Kind != KindTestRun || !ok {
			continue
		}
		j, ok := byPath[r.Package+" "+base+"/tc"]
		if !ok || t.Rows[j].Metrics[UnitNsPkt] <= 0 {
			continue
		}
		if r.Ratios == nil {
			r.Ratios = map[string]float64{}
		}
		r.Ratios["tc"] = r.Metrics[UnitNsPkt] / t.Rows[j].Metrics[UnitNsPkt]
		if n := t.Rows[j].Metrics[UnitNsPktNet]; n > 0 {
			r.Ratios["tc net"] = r.Metrics[UnitNsPktNet] / n
		}
	}
}

func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// WriteText prints the table: path, headline value and unit, ns/pkt-net for test-run
// rows, and the ratios to the baselines.
func (t *Table) WriteText(w io.Writer) error {
	cells := [][]string{{"PATH", "VALUE", "UNIT", "NET ns/pkt", "RATIO TO BASELINE (SAME RUN)"}}
	for _, r := range t.Rows {
		v, unit := r.Main()
		net := ""
		if n, ok := r.Metrics[UnitNsPktNet]; ok {
			net = formatValue(n)
		}
		cells = append(cells, []string{r.Path, formatValue(v), unit, net, ratioCell(r)})
	}
	if err := writeAligned(w, cells, []bool{false, true, false, true, false}); err != nil {
		return err
	}
	for _, n := range t.Skipped {
		fmt.Fprintf(w, "skipped: %s: %s\n", n.Name, n.Reason)
	}
	for _, n := range t.Failed {
		fmt.Fprintf(w, "FAILED: %s: %s\n", n.Name, n.Reason)
	}
	return nil
}

// writeAligned prints cells as columns two spaces apart, right-aligned where right says.
func writeAligned(w io.Writer, cells [][]string, right []bool) error {
	width := make([]int, len(right))
	for _, row := range cells {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, row := range cells {
		var line strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				line.WriteString("  ")
			}
			if right[i] {
				line.WriteString(pad + c)
			} else {
				line.WriteString(c + pad)
			}
		}
		b.WriteString(strings.TrimRight(line.String(), " ") + "\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func ratioCell(r Row) string {
	if r.IsBaseline && len(r.Ratios) == 0 {
		if r.Kind == KindTestRun {
			return "(floor)"
		}
		return "(baseline)"
	}
	var names []string
	for b := range r.Ratios {
		names = append(names, b)
	}
	slices.Sort(names)
	var parts []string
	for _, b := range names {
		label := b
		switch {
		case b != "floor" || r.Kind != KindTestRun:
		case r.Floor != "":
			label = r.Floor
		case r.FloorImplied:
			label = "floor (ns/pkt − ns/pkt-net)"
		}
		parts = append(parts, formatRatio(r.Ratios[b])+"× "+label)
	}
	return strings.Join(parts, ", ")
}

// formatRatio prints 3 decimals below 10, fewer above.
func formatRatio(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}

// formatValue prints 4 significant digits (all digits from 1000 up), without trailing
// zeros: 213.7, 83.4, 40, 0.627, 134176.
func formatValue(v float64) string {
	a := math.Abs(v)
	var s string
	switch {
	case a == 0:
		return "0"
	case a >= 1000:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a < 0.001:
		return strconv.FormatFloat(v, 'g', 4, 64)
	default:
		decimals := 3 - int(math.Floor(math.Log10(a)))
		s = strconv.FormatFloat(v, 'f', decimals, 64)
	}
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// WriteJSON writes the table as indented JSON.
func (t *Table) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(t)
}

// Load reads a table: JSON as WriteJSON wrote it, or raw go test -bench output.
func Load(name string) (*Table, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	if s := strings.TrimSpace(string(data)); strings.HasPrefix(s, "{") {
		var t Table
		if err := json.Unmarshal(data, &t); err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		return &t, nil
	}
	return Parse(strings.NewReader(string(data)))
}

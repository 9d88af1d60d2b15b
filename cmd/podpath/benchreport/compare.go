// SPDX-License-Identifier: Apache-2.0

package benchreport

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
)

// DefaultThreshold is the change, in percent, beyond which a delta is not noise.
const DefaultThreshold = 10.0

// Verdicts of a Delta.
const (
	Same   = "~"      // within the noise threshold
	Better = "better" // beyond it, the good way (less ns, more Gbit/s)
	Worse  = "worse"  // beyond it, the bad way
	Added  = "new"    // only in the new run
	Gone   = "gone"   // only in the old run
)

// Delta is one metric of one path in two runs.
type Delta struct {
	Path   string  `json:"path"`
	Metric string  `json:"metric"` // a unit, or "x <baseline>" for a ratio
	Old    float64 `json:"old"`
	New    float64 `json:"new"`
	// Percent is (new − old) / old · 100; NaN when old is 0 or one side is missing.
	Percent float64 `json:"percent"`
	Verdict string  `json:"verdict"`
}

// Compare lines up every metric (and ratio) of every path of old and new, in new's row
// order (rows only in old last), and marks each change beyond threshold percent as
// better or worse: lower is better for times and for test-run ratios to the floor,
// higher for throughput and its ratios.
func Compare(old, new *Table, threshold float64) []Delta {
	oldRows := map[string]Row{}
	for _, r := range old.Rows {
		oldRows[r.Path] = r
	}
	var out []Delta
	seen := map[string]bool{}
	for _, n := range new.Rows {
		seen[n.Path] = true
		o, ok := oldRows[n.Path]
		if !ok {
			for _, m := range metrics(n) {
				out = append(out, Delta{Path: n.Path, Metric: m.name, New: m.v, Percent: math.NaN(), Verdict: Added})
			}
			continue
		}
		om := map[string]float64{}
		for _, m := range metrics(o) {
			om[m.name] = m.v
		}
		for _, m := range metrics(n) {
			ov, ok := om[m.name]
			delete(om, m.name)
			if !ok {
				out = append(out, Delta{Path: n.Path, Metric: m.name, New: m.v, Percent: math.NaN(), Verdict: Added})
				continue
			}
			out = append(out, delta(n, m.name, ov, m.v, threshold))
		}
		for _, m := range metrics(o) {
			if _, left := om[m.name]; left {
				out = append(out, Delta{Path: n.Path, Metric: m.name, Old: m.v, Percent: math.NaN(), Verdict: Gone})
			}
		}
	}
	for _, o := range old.Rows {
		if seen[o.Path] {
			continue
		}
		for _, m := range metrics(o) {
			out = append(out, Delta{Path: o.Path, Metric: m.name, Old: m.v, Percent: math.NaN(), Verdict: Gone})
		}
	}
	return out
}

// MarshalJSON writes an undefined Percent as null.
func (d Delta) MarshalJSON() ([]byte, error) {
	type plain Delta
	var pct *float64
	if !math.IsNaN(d.Percent) {
		pct = &d.Percent
	}
	return json.Marshal(struct {
		plain
		Percent *float64 `json:"percent"`
	}{plain(d), pct})
}

type metric struct {
	name string
	v    float64
}

// metrics lists what is compared of a row: its units (ns/op only when it is the
// headline: test-run and throughput rows report it as harness overhead or 0) and its
// ratios, as "x <baseline>".
func metrics(r Row) []metric {
	_, main := r.Main()
	var out []metric
	for _, u := range r.units() {
		if u == UnitNsOp && main != UnitNsOp {
			continue
		}
		out = append(out, metric{u, r.Metrics[u]})
	}
	var bs []string
	for b := range r.Ratios {
		bs = append(bs, b)
	}
	slices.Sort(bs)
	for _, b := range bs {
		out = append(out, metric{"x " + b, r.Ratios[b]})
	}
	return out
}

func delta(r Row, metric string, old, new, threshold float64) Delta {
	d := Delta{Path: r.Path, Metric: metric, Old: old, New: new, Percent: math.NaN(), Verdict: Same}
	if old == 0 {
		if new != 0 {
			d.Verdict = Worse
			if higherIsBetter(r, metric) {
				d.Verdict = Better
			}
		}
		return d
	}
	d.Percent = (new - old) / math.Abs(old) * 100
	if math.Abs(d.Percent) <= threshold {
		return d
	}
	if (d.Percent > 0) == higherIsBetter(r, metric) {
		d.Verdict = Better
	} else {
		d.Verdict = Worse
	}
	return d
}

// higherIsBetter: throughput and its ratios, and rates (".../s"); everything else is a
// cost.
func higherIsBetter(r Row, metric string) bool {
	return r.Kind == KindThroughput || strings.HasSuffix(metric, "/s")
}

// WriteCompare prints the deltas as a table: path, metric, old, new, delta and a
// verdict where the change is beyond the threshold (benchstat's "~" otherwise).
func WriteCompare(w io.Writer, deltas []Delta, threshold float64) error {
	cells := [][]string{{"PATH", "METRIC", "OLD", "NEW", "DELTA", ""}}
	prev := ""
	var worse, better int
	for _, d := range deltas {
		path := d.Path
		if path == prev {
			path = ""
		}
		prev = d.Path
		old, new, pct := formatValue(d.Old), formatValue(d.New), "n/a"
		switch d.Verdict {
		case Added:
			old = "-"
		case Gone:
			new = "-"
		}
		if !math.IsNaN(d.Percent) {
			pct = fmt.Sprintf("%+.1f%%", d.Percent)
		}
		mark := d.Verdict
		switch d.Verdict {
		case Worse:
			mark, worse = "WORSE", worse+1
		case Better:
			better++
		}
		cells = append(cells, []string{path, d.Metric, old, new, pct, mark})
	}
	if err := writeAligned(w, cells, []bool{false, false, true, true, true, false}); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d worse, %d better beyond ±%g%% (~: within it)\n", worse, better, threshold)
	return err
}

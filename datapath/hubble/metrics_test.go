// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"podpath/datapath/trace"
)

// gathered is name{first label value} -> value of every series in reg.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			if len(m.GetLabel()) > 0 {
				key += "{" + m.GetLabel()[0].GetValue() + "}"
			}
			switch {
			case m.GetCounter() != nil:
				out[key] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func TestMetrics(t *testing.T) {
	names, err := trace.DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(names)
	m.Registry.MustRegister(NewMapPressure(func() map[string][2]float64 { return map[string][2]float64{"ct_tcp": {3, 12}} }))
	drop := trace.Record{Verdict: code(t, names.Verdicts, "VERDICT_DROP"), DropReason: code(t, names.DropReasons, "DROP_SPOOFED_SOURCE")}
	fwd := trace.Record{Verdict: code(t, names.Verdicts, "VERDICT_REDIRECT_PEER"), ObsPoint: code(t, names.ObsPoints, "OBS_FROM_CONTAINER")}
	for range 3 {
		m.Observe(drop, "DROPPED")
	}
	m.Observe(fwd, "FORWARDED")
	got := gathered(t, m.Registry)
	for k, want := range map[string]float64{
		"podpath_drop_count_total{DROP_SPOOFED_SOURCE}":   3,
		"podpath_forward_count_total{OBS_FROM_CONTAINER}": 1,
		"podpath_hubble_flows_processed_total{DROPPED}":   3,
		"podpath_bpf_map_entries{ct_tcp}":                 3,
		"podpath_bpf_map_capacity{ct_tcp}":                12,
		"podpath_bpf_map_pressure{ct_tcp}":                0.25,
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v", k, got[k], want)
		}
	}
}

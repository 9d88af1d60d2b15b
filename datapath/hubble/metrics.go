// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"podpath/datapath/trace"
)

// Metrics are the agent's counters fed by trace records, in a registry of their own.
type Metrics struct {
	Registry *prometheus.Registry
	// Drops counts dropped packets by podpath's drop reason.
	Drops *prometheus.CounterVec
	// Forwarded counts forwarded packets (every pass and redirect) by observation
	// point.
	Forwarded *prometheus.CounterVec
	// PolicyVerdicts counts policy verdict records by verdict and direction; the
	// policy work's records feed it (none today).
	PolicyVerdicts *prometheus.CounterVec
	// Flows counts the flows Hubble saw, by Hubble verdict.
	Flows *prometheus.CounterVec
	names *trace.Names
}

// NewMetrics makes the counters, registered with a new registry (plus the Go and
// process collectors).
func NewMetrics(names *trace.Names) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Drops: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "podpath", Name: "drop_count_total",
			Help: "Packets the datapath dropped, by podpath drop reason (bpf/lib/drop.h)."}, []string{"reason"}),
		Forwarded: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "podpath", Name: "forward_count_total",
			Help: "Packets the datapath forwarded or passed on, by observation point."}, []string{"point"}),
		PolicyVerdicts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "podpath", Name: "policy_verdict_total",
			Help: "Policy verdicts, by verdict and observation point."}, []string{"verdict", "point"}),
		Flows: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "podpath", Name: "hubble_flows_processed_total",
			Help: "Flows turned from trace records, by Hubble verdict."}, []string{"verdict"}),
		names: names,
	}
	m.Registry.MustRegister(m.Drops, m.Forwarded, m.PolicyVerdicts, m.Flows,
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// Observe counts one record and the verdict of its flow.
func (m *Metrics) Observe(r trace.Record, verdict string) {
	v := m.names.Verdict(r.Verdict)
	point := m.names.ObsPoint(r.ObsPoint)
	switch {
	case v == "VERDICT_DROP":
		m.Drops.WithLabelValues(m.names.DropReason(r.DropReason)).Inc()
	default:
		m.Forwarded.WithLabelValues(point).Inc()
	}
	if strings.Contains(v, "POLICY") || strings.Contains(v, "AUDIT") || strings.Contains(m.names.DropReason(r.DropReason), "POLICY") {
		m.PolicyVerdicts.WithLabelValues(v, point).Inc()
	}
	m.Flows.WithLabelValues(verdict).Inc()
}

// MapPressure is a collector of BPF map fill: entries and max entries per map,
// counted at each scrape.
type MapPressure struct {
	// Maps returns the maps to report (name -> count, max entries); it may be slow.
	Maps     func() map[string][2]float64
	entries  *prometheus.Desc
	capacity *prometheus.Desc
	pressure *prometheus.Desc
}

// NewMapPressure reports what maps returns.
func NewMapPressure(maps func() map[string][2]float64) *MapPressure {
	return &MapPressure{Maps: maps,
		entries:  prometheus.NewDesc("podpath_bpf_map_entries", "Entries in a BPF map (conntrack, SNAT, ...).", []string{"map_name"}, nil),
		capacity: prometheus.NewDesc("podpath_bpf_map_capacity", "Max entries of a BPF map.", []string{"map_name"}, nil),
		pressure: prometheus.NewDesc("podpath_bpf_map_pressure", "Fill of a BPF map: entries / max entries (Cilium's cilium_bpf_map_pressure).", []string{"map_name"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (p *MapPressure) Describe(ch chan<- *prometheus.Desc) {
	ch <- p.entries
	ch <- p.capacity
	ch <- p.pressure
}

// Collect implements prometheus.Collector.
func (p *MapPressure) Collect(ch chan<- prometheus.Metric) {
	for name, v := range p.Maps() {
		ch <- prometheus.MustNewConstMetric(p.entries, prometheus.GaugeValue, v[0], name)
		ch <- prometheus.MustNewConstMetric(p.capacity, prometheus.GaugeValue, v[1], name)
		if v[1] > 0 {
			ch <- prometheus.MustNewConstMetric(p.pressure, prometheus.GaugeValue, v[0]/v[1], name)
		}
	}
}

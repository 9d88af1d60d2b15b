// SPDX-License-Identifier: Apache-2.0

package scenarios_test

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"podpath/datapath/agent"
	"podpath/datapath/maps"
	"podpath/internal/testutil"
	"podpath/topology/catalog"
	"podpath/topology/topotest"
)

// benchServices are n ClusterIP services (10.96.0.0/16) of 10 backends each, drawn
// from a pool of 5,000 pod addresses on port 8080, as pods serve several services.
func benchServices(n int) []agent.Service {
	base := netip.MustParseAddr("10.128.0.0").As4()
	pod := func(k int) netip.Addr {
		a := base
		a[2], a[3] = byte(k>>8), byte(k)
		return netip.AddrFrom4(a)
	}
	out := make([]agent.Service, n)
	for i := range out {
		out[i] = agent.Service{Name: fmt.Sprintf("bench-%05d", i), Type: "ClusterIP",
			ClusterIP: netip.AddrFrom4([4]byte{10, 96, byte(1 + i/250), byte(1 + i%250)}), Port: 80, Protocol: "TCP"}
		for j := range 10 {
			out[i].Backends = append(out[i].Backends, agent.ServiceBackend{IP: pod((i*10 + j) % 5000), Port: 8080})
		}
	}
	return out
}

// BenchmarkAgentServices measures the agent programming 10,000 services of 10 backends
// with Maglev (M = 16381, the services-snat config) in one API call, and the same
// services again (every table replaced), then checks the pinned maps hold them all.
func BenchmarkAgentServices(b *testing.B) {
	testutil.RequireRoot(b)
	topotest.UseAgent(b)
	ctx := b.Context()
	spec, err := catalog.Topology("l2-services-agent")
	if err != nil {
		b.Fatal(err)
	}
	t, err := upSameNode(ctx, b, spec, "services-snat")
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	list := benchServices(n)
	c := agent.NewClient(agent.Socket(filepath.Join(t.Dir(), "agents", "node1")))
	for i := 0; i < b.N; i++ {
		// The first call creates everything; the second replaces every table.
		for _, unit := range []string{"ms/10k-services", "ms/10k-services-again"} {
			start := time.Now()
			if err := c.ServicesUpsert(ctx, list); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(time.Since(start).Milliseconds()), unit)
		}
	}
	b.StopTimer()

	lb, err := maps.OpenPinnedLB(filepath.Join(t.Dir(), "bpffs", "node1", "maps"), 16381)
	if err != nil {
		b.Fatal(err)
	}
	defer lb.Close()
	var services, tables int
	var key [8]byte // struct lb_service_key
	for it := lb.Services.Iterate(); it.Next(&key, new([12]byte)); {
		services++
	}
	var id, innerID uint32
	for it := lb.Maglev.Iterate(); it.Next(&id, &innerID); {
		tables++
	}
	if services < n || tables < n {
		b.Fatalf("pinned maps after programming %d services: %d frontends, %d Maglev tables", n, services, tables)
	}
	if got, err := lb.MaglevLookup(id); err != nil || len(got) != 16381 {
		b.Fatalf("Maglev table of service id %d: %d entries (%v)", id, len(got), err)
	}
}

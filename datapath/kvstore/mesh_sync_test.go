// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMeshSync measures, against a real etcd, cluster mesh propagation: a pod created
// in cluster A (cluster-id 1: identity allocated by labels in A's etcd, then its
// ip/v1 key written) until cluster B's agent, watching A's etcd as a remote cluster,
// holds its address with that identity; at 10 and 1,000 pods. Then the heap of B's
// watcher holding 10,000 remote endpoints. PODPATH_KVSTORE_SYNC=1 runs it (a
// measurement: it fails only when propagation breaks).
func TestMeshSync(t *testing.T) {
	if ep := os.Getenv(raceEnv); ep != "" {
		meshSync(t, ep)
		return
	}
	if os.Getenv("PODPATH_KVSTORE_SYNC") == "" {
		t.Skip("a measurement: set PODPATH_KVSTORE_SYNC=1")
	}
	runWithEtcd(t, "TestMeshSync")
}

func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func meshSync(t *testing.T, endpoint string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cfg := &EtcdConfig{Endpoints: []string{endpoint}}
	a, err := New(cfg, Options{Node: "a1", NodeIP: "10.1.0.2", Cluster: "east", ClusterID: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for !a.probe(ctx).HasQuorum {
		if ctx.Err() != nil {
			t.Fatal("etcd not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	heap0 := heapInuse()
	// B: a remote cluster's watcher, keeping what the agent's mesh keeps per endpoint.
	b, err := New(cfg, Options{Node: "b1", NodeIP: "10.2.0.2", Cluster: "west", ClusterID: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	type seenAt struct {
		at time.Time
		id uint32
	}
	seen := map[netip.Addr]seenAt{}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go b.Watch(wctx, IPPrefix+AddressSpace+"/", func(ev Event) {
		ip, p, err := ParseIPEvent(ev)
		if err == nil && p != nil && ClusterOfIdentity(p.ID) == 1 {
			mu.Lock()
			if _, ok := seen[ip]; !ok {
				seen[ip] = seenAt{time.Now(), p.ID}
			}
			mu.Unlock()
		}
	})
	time.Sleep(500 * time.Millisecond)
	heapWatch := heapInuse()
	base := 0
	run := func(n int, report bool) {
		created := map[netip.Addr]time.Time{}
		start := time.Now()
		for i := range n {
			ip := netip.AddrFrom4([4]byte{10, 244, byte((base + i) / 250), byte((base+i)%250 + 1)})
			created[ip] = time.Now()
			// Pods of ten deployments: the first of each allocates, the others find it.
			id, err := a.AllocateIdentity(ctx, CanonicalLabels(map[string]string{"app": fmt.Sprintf("web-%d", (base+i)%10)}, ""))
			if err != nil {
				t.Fatal(err)
			}
			if err := a.EndpointUpsert(ctx, ip, id, fmt.Sprintf("pod%d", base+i)); err != nil {
				t.Fatal(err)
			}
		}
		created1 := time.Since(start)
		deadline := time.Now().Add(2 * time.Minute)
		for {
			mu.Lock()
			all := 0
			for ip := range created {
				if _, ok := seen[ip]; ok {
					all++
				}
			}
			mu.Unlock()
			if all == len(created) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d pods: %d seen in cluster B within 2m", n, all)
			}
			time.Sleep(time.Millisecond)
		}
		var lat []time.Duration
		var last time.Time
		mu.Lock()
		for ip, c := range created {
			lat = append(lat, seen[ip].at.Sub(c))
			if seen[ip].at.After(last) {
				last = seen[ip].at
			}
		}
		mu.Unlock()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		if report {
			t.Logf("MESH SYNC %d pods created in cluster east (identity allocated + ip/v1 written) in %v; all usable in cluster west %v after the first creation; per pod creation->usable median %v, p99 %v, max %v",
				n, created1.Round(time.Microsecond), last.Sub(start).Round(time.Microsecond), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
		}
		base += n
	}
	run(10, true)
	run(1000, true)
	run(10000-base, false)
	mu.Lock()
	held := len(seen)
	mu.Unlock()
	heap10k := heapInuse()
	rss := ""
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if strings.HasPrefix(l, "VmRSS") || strings.HasPrefix(l, "VmHWM") {
				rss += strings.Join(strings.Fields(l), " ") + "; "
			}
		}
	}
	t.Logf("MESH MEMORY heap in use: %.1f MiB before the watcher, %.1f MiB watching (0 endpoints), %.1f MiB holding %d remote endpoints (%.0f bytes per endpoint); process (both clusters' clients) %s",
		float64(heap0)/(1<<20), float64(heapWatch)/(1<<20), float64(heap10k)/(1<<20), held, float64(heap10k-heapWatch)/float64(held), rss)
}

// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"sort"
	"sync"
	"testing"
	"time"
)

// TestSyncTime measures, against a real etcd, the time from an endpoint's ip/v1 key
// written by one agent to the event reaching another agent's watch, for 10 and 1,000
// endpoints registered at once (the last one seen, and the median). Set
// PODPATH_KVSTORE_SYNC=1 to run it (it is a measurement, not a pass/fail test).
func TestSyncTime(t *testing.T) {
	if ep := os.Getenv(raceEnv); ep != "" {
		syncTime(t, ep)
		return
	}
	if os.Getenv("PODPATH_KVSTORE_SYNC") == "" {
		t.Skip("a measurement: set PODPATH_KVSTORE_SYNC=1")
	}
	runWithEtcd(t, "TestSyncTime")
}

func syncTime(t *testing.T, endpoint string) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := New(&EtcdConfig{Endpoints: []string{endpoint}}, Options{Node: "node1", NodeIP: "10.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := New(&EtcdConfig{Endpoints: []string{endpoint}}, Options{Node: "node2", NodeIP: "10.0.0.2"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for !a.probe(ctx).HasQuorum {
		if ctx.Err() != nil {
			t.Fatal("etcd not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	var mu sync.Mutex
	seen := map[netip.Addr]time.Time{}
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go b.Watch(wctx, IPPrefix+AddressSpace+"/", func(ev Event) {
		ip, p, err := ParseIPEvent(ev)
		if err == nil && p != nil {
			mu.Lock()
			if _, ok := seen[ip]; !ok {
				seen[ip] = time.Now()
			}
			mu.Unlock()
		}
	})
	time.Sleep(500 * time.Millisecond) // the watch is listed and running
	base := 0
	for _, n := range []int{10, 1000} {
		written := map[netip.Addr]time.Time{}
		start := time.Now()
		for i := range n {
			ip := netip.AddrFrom4([4]byte{10, 244, byte((base + i) / 250), byte((base+i)%250 + 1)})
			written[ip] = time.Now()
			if err := a.EndpointUpsert(ctx, ip, 256, fmt.Sprintf("pod%d", base+i)); err != nil {
				t.Fatal(err)
			}
		}
		writeDone := time.Since(start)
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			all := true
			for ip := range written {
				if _, ok := seen[ip]; !ok {
					all = false
					break
				}
			}
			mu.Unlock()
			if all {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d endpoints: not all seen within 30s", n)
			}
			time.Sleep(time.Millisecond)
		}
		var lat []time.Duration
		var last time.Time
		mu.Lock()
		for ip, w := range written {
			lat = append(lat, seen[ip].Sub(w))
			if seen[ip].After(last) {
				last = seen[ip]
			}
		}
		mu.Unlock()
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		t.Logf("SYNC %d endpoints: all written in %v, all seen by the other agent %v after the first write; per endpoint write->seen median %v, p99 %v, max %v",
			n, writeDone.Round(time.Microsecond), last.Sub(start).Round(time.Microsecond), lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
		base += n
	}
}

// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// raceEnv, set, makes TestAllocateRace the inner half: it runs inside the test's
// namespace (re-executed there), where etcd listens on loopback.
const raceEnv = "PODPATH_KVSTORE_RACE_ETCD"

// TestAllocateRace: 8 agents allocate two label sets at once against a real etcd (the
// etcd-server package, in a namespace of the test's own): every agent gets the same
// identity for the same labels, the two sets get different ones, and exactly two
// master keys exist.
func TestAllocateRace(t *testing.T) {
	if ep := os.Getenv(raceEnv); ep != "" {
		allocateRace(t, ep)
		return
	}
	runWithEtcd(t, "TestAllocateRace")
}

// runWithEtcd starts a one-member etcd on loopback in a namespace of the test's own
// and runs test (this binary again) inside that namespace with raceEnv set.
func runWithEtcd(t *testing.T, test string) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Skip("etcd not installed (Debian's etcd-server)")
	}
	ns := fmt.Sprintf("pptest-kvstore-%d-race", os.Getpid())
	if err := nsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(ns) })
	etcd := exec.Command("ip", "netns", "exec", ns, "etcd", "--data-dir", t.TempDir(), "--name", "race",
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "race=http://127.0.0.1:2380")
	var log strings.Builder
	etcd.Stdout, etcd.Stderr = &log, &log
	if err := etcd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = etcd.Process.Kill(); _ = etcd.Wait() })
	inner := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run", "^"+test+"$", "-test.v")
	inner.Env = append(os.Environ(), raceEnv+"=http://127.0.0.1:2379")
	out, err := inner.CombinedOutput()
	t.Logf("inner test:\n%s", out)
	if err != nil {
		t.Fatalf("inner test: %v; etcd log:\n%s", err, log.String())
	}
}

func allocateRace(t *testing.T, endpoint string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Wait for etcd.
	probe, err := New(&EtcdConfig{Endpoints: []string{endpoint}}, Options{Node: "probe", NodeIP: "10.0.0.99"})
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	for probe.probe(ctx); !probe.probe(ctx).HasQuorum; time.Sleep(100 * time.Millisecond) {
		if ctx.Err() != nil {
			t.Fatal("etcd not ready within 30s")
		}
	}
	labels := []string{CanonicalLabels(map[string]string{"app": "web"}, ""), CanonicalLabels(map[string]string{"app": "db"}, "")}
	const agents = 8
	got := make([][2]uint32, agents)
	errs := make([]error, agents)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range agents {
		s, err := New(&EtcdConfig{Endpoints: []string{endpoint}}, Options{Node: fmt.Sprintf("node%d", i), NodeIP: fmt.Sprintf("10.0.0.%d", i+1)})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for j, l := range labels {
				// Odd agents ask in the other order, so the two sets race for one id.
				if i%2 == 1 {
					j, l = 1-j, labels[1-j]
				}
				id, err := s.AllocateIdentity(ctx, l)
				if err != nil {
					errs[i] = err
					return
				}
				got[i][j] = id
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range agents {
		if errs[i] != nil {
			t.Fatalf("agent %d: %v", i, errs[i])
		}
		if got[i] != got[0] {
			t.Errorf("agent %d got %v, agent 0 %v", i, got[i], got[0])
		}
	}
	if got[0][0] == got[0][1] || got[0][0] < FirstIdentity || got[0][1] < FirstIdentity {
		t.Errorf("identities %v: want two different ones from %d", got[0], FirstIdentity)
	}
	r, err := probe.Client().Get(ctx, IdentitiesPrefix+"id/", clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 2 {
		t.Errorf("%d master keys, want 2: %v", len(r.Kvs), r.Kvs)
	}
	r, err = probe.Client().Get(ctx, IdentitiesPrefix+"value/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) != 2*agents {
		t.Errorf("%d slave keys, want %d (one per agent and label set)", len(r.Kvs), 2*agents)
	}
	t.Logf("identities %v for %q", got[0], labels)
}

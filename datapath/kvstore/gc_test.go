// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"context"
	"os"
	"slices"
	"testing"
	"time"
)

// TestIdentityGC: against a real etcd, an identity used by two nodes survives one
// node's release, is deleted by the GC after the second's, a label set in use is kept,
// and allocating the released labels again gets a fresh master key.
func TestIdentityGC(t *testing.T) {
	if ep := os.Getenv(raceEnv); ep != "" {
		identityGC(t, ep)
		return
	}
	runWithEtcd(t, "TestIdentityGC")
}

func identityGC(t *testing.T, endpoint string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := &EtcdConfig{Endpoints: []string{endpoint}}
	n1, err := New(cfg, Options{Node: "n1", NodeIP: "10.0.0.1", ClusterID: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer n1.Close()
	n2, err := New(cfg, Options{Node: "n2", NodeIP: "10.0.0.2", ClusterID: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer n2.Close()
	for !n1.probe(ctx).HasQuorum {
		if ctx.Err() != nil {
			t.Fatal("etcd not ready")
		}
		time.Sleep(100 * time.Millisecond)
	}
	web, db := "k8s:app=web;", "k8s:app=db;"
	idWeb, err := n1.AllocateIdentity(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	if id, err := n2.AllocateIdentity(ctx, web); err != nil || id != idWeb {
		t.Fatalf("n2 web: %d, %v; want %d", id, err, idWeb)
	}
	idDB, err := n1.AllocateIdentity(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if idWeb>>16 != 3 || idDB>>16 != 3 {
		t.Fatalf("identities %d, %d lack cluster-id 3 in bits 16-23", idWeb, idDB)
	}
	if err := n1.ReleaseIdentity(ctx, web); err != nil {
		t.Fatal(err)
	}
	if got, err := n1.IdentityGC(ctx, true); err != nil || len(got) != 0 {
		t.Fatalf("gc with web still on n2: deleted %v, %v; want none", got, err)
	}
	if err := n2.ReleaseIdentity(ctx, web); err != nil {
		t.Fatal(err)
	}
	// Not immediate: the first round only marks web; the second deletes it.
	if got, err := n1.IdentityGC(ctx, false); err != nil || len(got) != 0 {
		t.Fatalf("first gc round after both released web: deleted %v, %v; want none (marked only)", got, err)
	}
	got, err := n1.IdentityGC(ctx, false)
	if err != nil || !slices.Equal(got, []uint32{idWeb}) {
		t.Fatalf("second gc round after both released web: deleted %v, %v; want [%d]", got, err, idWeb)
	}
	r, err := n1.Client().Get(ctx, IdentityIDKey(idDB))
	if err != nil || len(r.Kvs) != 1 {
		t.Fatalf("db's master key %s: %v, %v; want kept", IdentityIDKey(idDB), r, err)
	}
	again, err := n2.AllocateIdentity(ctx, web)
	if err != nil {
		t.Fatal(err)
	}
	r, err = n1.Client().Get(ctx, IdentityIDKey(again))
	if err != nil || len(r.Kvs) != 1 || string(r.Kvs[0].Value) != web {
		t.Fatalf("web allocated again as %d: master %v, %v", again, r, err)
	}
}

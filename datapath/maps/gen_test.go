// SPDX-License-Identifier: Apache-2.0

package maps_test

import (
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/maps"
	"podpath/internal/testutil"
)

// dp_gen's accessors on a map of its layout: a new map starts at 1 in both slots, a
// started one is left alone, and a bump never lands on 0 (which the datapath reads
// as "nothing cached").
func TestGenerations(t *testing.T) {
	testutil.RequireRoot(t)
	m, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.Array, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := maps.StartGenerations(m); err != nil {
		t.Fatal(err)
	}
	for _, idx := range []uint32{maps.GenFIB, maps.GenBackend} {
		if g, err := maps.Generation(m, idx); err != nil || g != 1 {
			t.Fatalf("slot %d after start: %d, %v; want 1", idx, g, err)
		}
	}
	if g, err := maps.BumpGeneration(m, maps.GenBackend); err != nil || g != 2 {
		t.Fatalf("bump: %d, %v; want 2", g, err)
	}
	if err := maps.StartGenerations(m); err != nil {
		t.Fatal(err)
	}
	if g, _ := maps.Generation(m, maps.GenBackend); g != 2 {
		t.Fatalf("start reset a started slot to %d", g)
	}
	if g, _ := maps.Generation(m, maps.GenFIB); g != 1 {
		t.Fatalf("a bump of GenBackend moved GenFIB to %d", g)
	}
	if err := m.Update(maps.GenFIB, ^uint32(0), ebpf.UpdateExist); err != nil {
		t.Fatal(err)
	}
	if g, err := maps.BumpGeneration(m, maps.GenFIB); err != nil || g != 1 {
		t.Fatalf("bump past the top: %d, %v; want 1 (0 is never a generation)", g, err)
	}
}

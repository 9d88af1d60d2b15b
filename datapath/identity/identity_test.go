// SPDX-License-Identifier: Apache-2.0

package identity

import "testing"

func TestCanonical(t *testing.T) {
	tests := []struct {
		l    Labels
		want string
	}{
		{nil, ""},
		{Labels{"b": "2", "a": "1"}, "a=1;b=2"},
		{Labels{"tenant": "a", "app": "web"}, "app=web;tenant=a"},
	}
	for _, tt := range tests {
		if got := tt.l.Canonical(); got != tt.want {
			t.Errorf("%v.Canonical() = %q, want %q", tt.l, got, tt.want)
		}
	}
}

// Two allocators (two nodes) that see label sets in different orders agree.
func TestLocalDeterministic(t *testing.T) {
	sets := []string{"app=web;tenant=a", "app=db;tenant=a", "app=web;tenant=b", ""}
	a, b := NewLocal(), NewLocal()
	got := map[string]ID{}
	for _, s := range sets {
		id, err := a.Allocate(s)
		if err != nil {
			t.Fatal(err)
		}
		if id < MinAllocated || id > MaxAllocated {
			t.Errorf("%q: identity %d outside %d..%d", s, id, MinAllocated, MaxAllocated)
		}
		got[s] = id
	}
	for i := len(sets) - 1; i >= 0; i-- {
		id, _ := b.Allocate(sets[i])
		if id != got[sets[i]] {
			t.Errorf("%q: node b allocated %d, node a %d", sets[i], id, got[sets[i]])
		}
	}
	if again, _ := a.Allocate(sets[0]); again != got[sets[0]] {
		t.Errorf("second allocation of %q: %d, first %d", sets[0], again, got[sets[0]])
	}
}

// A collision probes to the next free identity and is reported.
func TestLocalCollision(t *testing.T) {
	a := NewLocal()
	first := "x"
	id1, _ := a.Allocate(first)
	// Find another string with the same hash.
	var other string
	for i := 0; i < 1<<22; i++ {
		s := "y" + string(rune('a'+i%26)) + itoa(i)
		if Hash(s) == id1 {
			other = s
			break
		}
	}
	if other == "" {
		t.Skip("no collision found in the search budget")
	}
	id2, _ := a.Allocate(other)
	if id2 == id1 || len(a.Collisions) != 1 {
		t.Errorf("collision of %q with %q: ids %d %d, collisions %v", other, first, id1, id2, a.Collisions)
	}
}

func itoa(i int) string {
	b := []byte{}
	for {
		b = append([]byte{byte('0' + i%10)}, b...)
		if i /= 10; i == 0 {
			return string(b)
		}
	}
}

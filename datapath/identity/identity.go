// SPDX-License-Identifier: Apache-2.0

// Package identity numbers security identities as Cilium does: reserved identities
// for the host, the world and the other fixed peers, and one identity per distinct
// label set of pods, allocated by an Allocator (local by default).
package identity

import (
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"
	"sync"
)

// ID is a security identity: the number the VNI carries and policy matches.
type ID uint32

// Cilium's reserved identities (pkg/identity/numericidentity.go).
const (
	Unknown       ID = 0
	Host          ID = 1
	World         ID = 2
	Unmanaged     ID = 3
	Health        ID = 4
	Init          ID = 5
	RemoteNode    ID = 6
	KubeAPIServer ID = 7
	Ingress       ID = 8
)

// Range of the identities of pods' label sets allocated in this cluster (Cilium's
// cluster-local identities: 256..65535; cluster-id 0).
const (
	MinAllocated ID = 256
	MaxAllocated ID = 65535
)

// Reserved names a reserved identity as Cilium's reserved: labels do.
var Reserved = map[ID]string{
	Host: "host", World: "world", Unmanaged: "unmanaged", Health: "health", Init: "init",
	RemoteNode: "remote-node", KubeAPIServer: "kube-apiserver", Ingress: "ingress",
}

// Labels are a pod's labels (Kubernetes key=value).
type Labels map[string]string

// Canonical is the label set as one string: sorted key=value pairs joined by ';'. Equal
// label sets give equal strings; it is what an Allocator keys on.
func (l Labels) Canonical() string {
	keys := slices.Sorted(maps.Keys(l))
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(';')
		}
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(l[k])
	}
	return b.String()
}

// Allocator gives every canonical label-set string one identity.
type Allocator interface {
	// Allocate returns the identity of the label set, allocating it on first use.
	Allocate(canonical string) (ID, error)
}

// Local is the allocator of one agent (identity-allocation-mode crd without a
// cluster store): the identity is derived from the labels alone, FNV-1a of the
// canonical string onto 256..65535, so every node computes the same number for the
// same label set without talking to the others. Two label sets whose hashes collide
// are told apart by probing to the next free number in the order the agent saw them:
// only then could nodes that saw them in different orders disagree; Allocate then
// reports the collision in Collisions.
type Local struct {
	mu         sync.Mutex
	byKey      map[string]ID
	byID       map[ID]string
	Collisions []string
}

// NewLocal returns an empty local allocator.
func NewLocal() *Local {
	return &Local{byKey: map[string]ID{}, byID: map[ID]string{}}
}

// Hash is the deterministic identity of a canonical label set before collisions.
func Hash(canonical string) ID {
	h := fnv.New32a()
	h.Write([]byte(canonical))
	return MinAllocated + ID(h.Sum32()%uint32(MaxAllocated-MinAllocated+1))
}

// Allocate returns the label set's identity.
func (a *Local) Allocate(canonical string) (ID, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if id, ok := a.byKey[canonical]; ok {
		return id, nil
	}
	id := Hash(canonical)
	for n := 0; ; n++ {
		if n > int(MaxAllocated-MinAllocated) {
			return 0, fmt.Errorf("allocate identity for %q: all %d identities are in use", canonical, MaxAllocated-MinAllocated+1)
		}
		if _, used := a.byID[id]; !used {
			break
		}
		if n == 0 {
			a.Collisions = append(a.Collisions, fmt.Sprintf("%q and %q hash to identity %d", canonical, a.byID[id], id))
		}
		if id++; id > MaxAllocated {
			id = MinAllocated
		}
	}
	a.byKey[canonical], a.byID[id] = id, canonical
	return id, nil
}

// Lookup returns the canonical label set of an allocated identity.
func (a *Local) Lookup(id ID) (string, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	s, ok := a.byID[id]
	return s, ok
}

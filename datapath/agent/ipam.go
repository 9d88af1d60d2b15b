// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// Where an attachment's address came from.
const (
	// AddressRequested: the runtime asked for it (CNI_ARGS IP=, or runtimeConfig ips).
	AddressRequested = "requested"
	// AddressAnnotation: the pod's podpath.io/address annotation, through the
	// Kubernetes watcher (Agent.SetPodAddresses).
	AddressAnnotation = "annotation"
	// AddressPool: the agent's pool, the node's PodCIDR.
	AddressPool = "pool"
)

// ipamState is what ipam.json holds: the attachments CNI ADD made, by key, and the
// pool's cursor.
type ipamState struct {
	Attachments map[string]Attachment `json:"attachments"`
	// Last is the address the pool handed out last; the next search starts after it,
	// so a released address is not handed out again at once (late packets for the old
	// pod reach no new one), as host-local IPAM does.
	Last netip.Addr `json:"last,omitzero"`
}

// ipamStore keeps ipamState in <state-dir>/ipam.json, saved on every change like the
// desired state, so a restarted agent knows which addresses are taken.
type ipamStore struct {
	mu   sync.Mutex
	path string
	s    ipamState
}

func openIPAM(dir string) (*ipamStore, error) {
	s := &ipamStore{path: filepath.Join(dir, "ipam.json"), s: ipamState{Attachments: map[string]Attachment{}}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read IPAM state: %w", err)
	}
	if err := json.Unmarshal(data, &s.s); err != nil {
		return nil, fmt.Errorf("read IPAM state %s: %w", s.path, err)
	}
	if s.s.Attachments == nil {
		s.s.Attachments = map[string]Attachment{}
	}
	return s, nil
}

// update applies fn to a copy and saves it; fn's error aborts without saving.
func (s *ipamStore) update(fn func(st *ipamState) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := ipamState{Attachments: maps.Clone(s.s.Attachments), Last: s.s.Last}
	if err := fn(&next); err != nil {
		return err
	}
	if err := saveJSON(s.path, next); err != nil {
		return fmt.Errorf("save IPAM state: %w", err)
	}
	s.s = next
	return nil
}

func (s *ipamStore) get(key string) (Attachment, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.s.Attachments[key]
	return a, ok
}

func (s *ipamStore) list() []Attachment {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.s.Attachments), func(a, b Attachment) int { return cmpString(a.key(), b.key()) })
}

// saveJSON replaces path with v as indented JSON, atomically (write, then rename).
func saveJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// poolBounds are the first and last address the pool hands out in cidr: the network
// address, the pods' gateway (the one after it) and the broadcast address are kept out.
func poolBounds(cidr netip.Prefix) (first, last netip.Addr) {
	first = cidr.Masked().Addr().Next().Next()
	last = lastAddr(cidr).Prev()
	return first, last
}

func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3]) | host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// checkPoolAddress says why ip cannot be a pod address in cidr, or nil.
func checkPoolAddress(cidr netip.Prefix, ip netip.Addr) error {
	first, last := poolBounds(cidr)
	switch {
	case !ip.Is4():
		return fmt.Errorf("%v is not an IPv4 address", ip)
	case !cidr.Contains(ip):
		return fmt.Errorf("%s is outside this node's PodCIDR %s", ip, cidr)
	case ip == cidr.Masked().Addr().Next():
		return fmt.Errorf("%s is the pods' gateway of PodCIDR %s", ip, cidr)
	case ip.Less(first) || last.Less(ip):
		return fmt.Errorf("%s is the network or broadcast address of PodCIDR %s", ip, cidr)
	}
	return nil
}

// ErrPoolExhausted says the PodCIDR has no free address left.
var ErrPoolExhausted = errors.New("no free address")

// pickAddress returns the first address of cidr's pool after last (wrapping around)
// that taken does not claim.
func pickAddress(cidr netip.Prefix, last netip.Addr, taken func(netip.Addr) bool) (netip.Addr, error) {
	first, end := poolBounds(cidr)
	if end.Less(first) {
		return netip.Addr{}, fmt.Errorf("PodCIDR %s: %w (it is too small for a pool)", cidr, ErrPoolExhausted)
	}
	start := first
	if last.IsValid() && !last.Less(first) && last.Less(end) {
		start = last.Next()
	}
	ip := start
	for {
		if !taken(ip) {
			return ip, nil
		}
		if ip = ip.Next(); end.Less(ip) {
			ip = first
		}
		if ip == start {
			return netip.Addr{}, fmt.Errorf("PodCIDR %s: %w", cidr, ErrPoolExhausted)
		}
	}
}

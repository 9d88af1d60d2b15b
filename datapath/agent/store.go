// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
)

// desired is the state the agent reconciles towards. It is saved on every change, so a
// restarted agent (or one killed with -9) picks up where it was.
type desired struct {
	Endpoints map[string]Endpoint `json:"endpoints"`
	Nodes     map[string]Node     `json:"nodes"`
	Services  map[string]Service  `json:"services,omitempty"`
	Policies  map[string]Policy   `json:"policies,omitempty"`
	// EgressGW are the CiliumEgressGatewayPolicy objects.
	EgressGW map[string]Policy `json:"egressGatewayPolicies,omitempty"`
}

type store struct {
	mu   sync.Mutex
	path string
	d    desired
}

func openStore(dir string) (*store, error) {
	s := &store{path: filepath.Join(dir, "desired.json"), d: desired{Endpoints: map[string]Endpoint{}, Nodes: map[string]Node{}, Services: map[string]Service{}, Policies: map[string]Policy{}, EgressGW: map[string]Policy{}}}
	data, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read desired state: %w", err)
	}
	if err := json.Unmarshal(data, &s.d); err != nil {
		return nil, fmt.Errorf("read desired state %s: %w", s.path, err)
	}
	if s.d.Endpoints == nil {
		s.d.Endpoints = map[string]Endpoint{}
	}
	if s.d.Nodes == nil {
		s.d.Nodes = map[string]Node{}
	}
	if s.d.Services == nil {
		s.d.Services = map[string]Service{}
	}
	if s.d.Policies == nil {
		s.d.Policies = map[string]Policy{}
	}
	if s.d.EgressGW == nil {
		s.d.EgressGW = map[string]Policy{}
	}
	return s, nil
}

// update applies fn and saves the result atomically; fn's error aborts without saving.
func (s *store) update(fn func(d *desired) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := desired{Endpoints: maps.Clone(s.d.Endpoints), Nodes: maps.Clone(s.d.Nodes), Services: maps.Clone(s.d.Services), Policies: maps.Clone(s.d.Policies), EgressGW: maps.Clone(s.d.EgressGW)}
	if err := fn(&next); err != nil {
		return err
	}
	if err := saveJSON(s.path, next); err != nil {
		return fmt.Errorf("save desired state: %w", err)
	}
	s.d = next
	return nil
}

func (s *store) endpoints() []Endpoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.d.Endpoints), func(a, b Endpoint) int { return cmpString(a.Name, b.Name) })
}

func (s *store) nodes() []Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.d.Nodes), func(a, b Node) int { return cmpString(a.Name, b.Name) })
}

func (s *store) services() []Service {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.d.Services), func(a, b Service) int { return cmpString(a.Name, b.Name) })
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *store) policies() []Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.d.Policies), func(a, b Policy) int { return cmpString(a.Name, b.Name) })
}

func (s *store) egressGWPolicies() []Policy {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.SortedFunc(maps.Values(s.d.EgressGW), func(a, b Policy) int { return cmpString(a.Name, b.Name) })
}

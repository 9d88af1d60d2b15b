// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"podpath/datapath/config"
	"podpath/datapath/kvstore"
)

func TestParseGlobalService(t *testing.T) {
	tests := []struct {
		annot   map[string]string
		want    GlobalService
		wantErr string
	}{
		{nil, GlobalService{Shared: true, Affinity: "none"}, ""},
		{map[string]string{"service.cilium.io/global": "true"}, GlobalService{Global: true, Shared: true, Affinity: "none"}, ""},
		{map[string]string{"io.cilium/global-service": "true", "io.cilium/shared-service": "false", "io.cilium/service-affinity": "remote"},
			GlobalService{Global: true, Shared: false, Affinity: "remote"}, ""},
		{map[string]string{"service.cilium.io/global": "true", "service.cilium.io/affinity": "Local"}, GlobalService{Global: true, Shared: true, Affinity: "local"}, ""},
		{map[string]string{"service.cilium.io/global": "yes please"}, GlobalService{}, `service.cilium.io/global: "yes please" is not true or false`},
		{map[string]string{"service.cilium.io/affinity": "nearest"}, GlobalService{}, `service.cilium.io/affinity: "nearest" is not one of local, remote, none`},
	}
	for _, tt := range tests {
		g, err := ParseGlobalService(tt.annot)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: want error %q, got %v", tt.annot, tt.wantErr, err)
			}
			continue
		}
		if err != nil || g != tt.want {
			t.Errorf("%v: got %+v, %v; want %+v", tt.annot, g, err, tt.want)
		}
	}
}

// TestGlobalBackends: remote shared backends are merged; affinity keeps the preferred
// side while it has an active backend and fails over when it has none; unshared or
// non-global remote services add nothing.
func TestGlobalBackends(t *testing.T) {
	ip := netip.MustParseAddr
	local := []ServiceBackend{{IP: ip("10.244.1.10"), Port: 80}}
	remoteSvc := func(shared, global bool) *kvstore.ClusterService {
		return &kvstore.ClusterService{Shared: shared, IncludeExternal: global, Backends: map[string]map[string]kvstore.PortConfig{
			"10.245.1.10": {"tcp-80": {Protocol: "TCP", Port: 80}}, "10.245.1.11": {"tcp-80": {Protocol: "TCP", Port: 80}}}}
	}
	tests := []struct {
		name     string
		affinity string
		local    []ServiceBackend
		remote   *kvstore.ClusterService
		want     []string
	}{
		{"none merges", "none", local, remoteSvc(true, true), []string{"10.244.1.10", "10.245.1.10", "10.245.1.11"}},
		{"local prefers local", "local", local, remoteSvc(true, true), []string{"10.244.1.10"}},
		{"local fails over", "local", nil, remoteSvc(true, true), []string{"10.245.1.10", "10.245.1.11"}},
		{"local fails over from terminating", "local", []ServiceBackend{{IP: ip("10.244.1.10"), Port: 80, State: "terminating"}}, remoteSvc(true, true),
			[]string{"10.244.1.10", "10.245.1.10", "10.245.1.11"}},
		{"remote prefers remote", "remote", local, remoteSvc(true, true), []string{"10.245.1.10", "10.245.1.11"}},
		{"remote fails over", "remote", local, nil, []string{"10.244.1.10"}},
		{"unshared hidden", "none", local, remoteSvc(false, true), []string{"10.244.1.10"}},
		{"remote not global", "none", local, remoteSvc(true, false), []string{"10.244.1.10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := &Agent{mesh: newMesh()}
			if tt.remote != nil {
				a.mesh.services["default/web"] = map[string]*kvstore.ClusterService{"west": tt.remote}
			}
			s := Service{Name: "web", Protocol: "TCP", Port: 80, Backends: tt.local,
				Annotations: map[string]string{"service.cilium.io/global": "true", "service.cilium.io/affinity": tt.affinity}}
			var got []string
			for _, b := range a.withGlobalBackends(s).Backends {
				got = append(got, b.IP.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("backends %v, want %v", got, tt.want)
			}
		})
	}
}

// TestClusterNameAndID: cluster-name and cluster-id come from the config unless the
// agent's flags (--cluster-name, --cluster-id) give them; the name keys the node in
// etcd and the ID is bits 16-23 of every identity the cluster allocates.
func TestClusterNameAndID(t *testing.T) {
	cfg, _, err := config.FromMap(map[string]string{"cluster-name": "east", "cluster-id": "7", "kvstore": "etcd"})
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{cfg: cfg}
	if a.clusterName() != "east" || a.clusterID() != 7 {
		t.Fatalf("config: name %q id %d, want east 7", a.clusterName(), a.clusterID())
	}
	a.opts.ClusterName, a.opts.ClusterID = "west", 2
	if a.clusterName() != "west" || a.clusterID() != 2 {
		t.Fatalf("flags: name %q id %d, want west 2", a.clusterName(), a.clusterID())
	}
	if first, last := kvstore.IdentityRange(2); first != 2<<16+256 || last != 2<<16+65535 {
		t.Fatalf("cluster 2's identities %d..%d", first, last)
	}
	d, _, _ := config.FromMap(map[string]string{})
	if (&Agent{cfg: d}).clusterName() != "default" {
		t.Fatal("default cluster-name")
	}
}

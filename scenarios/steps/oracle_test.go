// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"podpath/topology"
)

func TestParseRefusal(t *testing.T) {
	tests := []struct {
		name string
		out  string
		want refusal
		ok   bool
	}{
		{"router's frag-needed", "PING 10.244.2.10 (10.244.2.10) 1373(1401) bytes of data.\nFrom 10.0.1.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)\n",
			refusal{"icmp", netip.MustParseAddr("10.0.1.1"), 1400}, true},
		{"local refusal", "PING 10.244.2.10 (10.244.2.10) 1373(1401) bytes of data.\nping: local error: message too long, mtu=1400\n",
			refusal{Witness: "local", MTU: 1400}, true},
		{"local refusal, other spelling", "ping: local error: Message too long, mtu = 8950", refusal{Witness: "local", MTU: 8950}, true},
		{"no answer", "1 packets transmitted, 0 received, 100% packet loss", refusal{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := parseRefusal([]byte(tt.out))
			if ok != tt.ok || got != tt.want {
				t.Fatalf("parseRefusal = %+v, %v; want %+v, %v", got, ok, tt.want, tt.ok)
			}
		})
	}
}

// fakeCluster answers the address questions of memberOfAddr from a resolved spec.
type fakeCluster struct {
	topology.Cluster
	spec *topology.Spec
}

func (f fakeCluster) Nodes() []topology.Node { return nil }
func (f fakeCluster) Members() []topology.Member {
	var out []topology.Member
	f.spec.EachInterface(func(_, member string, _ *topology.InterfaceSpec) {
		out = append(out, topology.Member{Name: member})
	})
	return out
}
func (f fakeCluster) Interfaces(member string) ([]topology.Interface, error) {
	var out []topology.Interface
	f.spec.EachInterface(func(_, m string, i *topology.InterfaceSpec) {
		if m == member {
			out = append(out, topology.Interface{Name: i.Name, Address: netip.PrefixFrom(netip.MustParseAddr(i.Address), 24)})
		}
	})
	return out, nil
}

// TestNodePairMTUExpectation: the sweep's verdicts on the three-leg topology, native
// routing, for the answers ping can give.
func TestNodePairMTUExpectation(t *testing.T) {
	spec, err := topology.Load("../../topology/catalog/routed-three-leg-agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := spec.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	o, err := topology.NewOracle(r, topology.OracleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c := fakeCluster{spec: r}
	failed := errors.New("exit status 1")
	tests := []struct {
		name, from, to string
		cfgMTU, given  int
		mtu, over      int
		out            string
		pingErr        error
		wantErr        string // "" for a pass
	}{
		{"frag-needed 1400 from the router is a pass", "pod1", "pod2", 0, 0, 1400, 1401,
			"From 10.0.1.1 icmp_seq=1 Frag needed and DF set (mtu = 1400)", failed, ""},
		{"the sender's kernel naming 1400 is a pass", "pod2", "pod1", 0, 0, 1400, 1401,
			"ping: local error: message too long, mtu=1400", failed, ""},
		{"the wrong MTU fails", "pod1", "pod2", 0, 0, 1400, 1401,
			"From 10.0.1.1 icmp_seq=1 Frag needed and DF set (mtu = 1500)", failed, "naming MTU 1500, want [1400]"},
		{"frag-needed from a host off the path's narrowing fails", "pod1", "pod2", 0, 0, 1400, 1401,
			"From 10.0.1.2 icmp_seq=1 Frag needed and DF set (mtu = 1400)", failed, "came from 10.0.1.2 (node1), want it from [r1]"},
		{"crossing fails", "pod1", "pod3", 0, 0, 1500, 1501, "1 received", nil, "crossed a path of MTU 1500"},
		{"a black hole fails", "pod1", "pod3", 0, 0, 1500, 1501, "100% packet loss", failed, "a black hole"},
		{"the config's mtu key caps it: the sender refuses", "pod1", "pod3", 1450, 0, 1450, 1451,
			"ping: local error: message too long, mtu=1450", failed, ""},
		{"a scenario's mtu replaces the topology's", "pod1", "pod3", 0, 1300, 1300, 1301,
			"ping: local error: message too long, mtu=1300", failed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps, err := o.PodToPod(tt.from, tt.to)
			if err != nil {
				t.Fatal(err)
			}
			x := expectedPathMTU(ps, tt.from, tt.cfgMTU, tt.given)
			if x.mtu != tt.mtu || x.over != tt.over {
				t.Fatalf("expect %d/%d, want %d/%d (%s)", x.mtu, x.over, tt.mtu, tt.over, x.source)
			}
			_, err = x.refused(c, []byte(tt.out), tt.pingErr)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("want a pass, got %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("want an error with %q, got %v", tt.wantErr, err)
			}
		})
	}
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

var (
	mustAddr   = netip.MustParseAddr
	mustPrefix = netip.MustParsePrefix
)

func TestPickAddress(t *testing.T) {
	cidr := mustPrefix("10.244.1.0/24")
	takenSet := func(list ...string) func(netip.Addr) bool {
		m := map[netip.Addr]bool{}
		for _, s := range list {
			m[mustAddr(s)] = true
		}
		return func(a netip.Addr) bool { return m[a] }
	}
	tests := []struct {
		name  string
		cidr  netip.Prefix
		last  string
		taken func(netip.Addr) bool
		want  string // "" : ErrPoolExhausted
	}{
		{"first is after the gateway", cidr, "", takenSet(), "10.244.1.2"},
		{"skips taken", cidr, "", takenSet("10.244.1.2", "10.244.1.3"), "10.244.1.4"},
		{"after the last handed out", cidr, "10.244.1.7", takenSet(), "10.244.1.8"},
		{"wraps before broadcast", cidr, "10.244.1.254", takenSet(), "10.244.1.2"},
		{"last outside the pool", cidr, "10.244.9.9", takenSet(), "10.244.1.2"},
		{"wraps to a free one", cidr, "10.244.1.253", takenSet("10.244.1.254", "10.244.1.2"), "10.244.1.3"},
		{"/30 has one", mustPrefix("10.0.0.4/30"), "", takenSet(), "10.0.0.6"},
		{"/30 full", mustPrefix("10.0.0.4/30"), "10.0.0.6", takenSet("10.0.0.6"), ""},
		{"/31 has none", mustPrefix("10.0.0.4/31"), "", takenSet(), ""},
		{"full", mustPrefix("10.0.0.0/29"), "10.0.0.3", func(netip.Addr) bool { return true }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last netip.Addr
			if tt.last != "" {
				last = mustAddr(tt.last)
			}
			got, err := pickAddress(tt.cidr, last, tt.taken)
			if tt.want == "" {
				if !errors.Is(err, ErrPoolExhausted) {
					t.Fatalf("pickAddress = %v, %v; want ErrPoolExhausted", got, err)
				}
				return
			}
			if err != nil || got != mustAddr(tt.want) {
				t.Fatalf("pickAddress = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestCheckPoolAddress(t *testing.T) {
	cidr := mustPrefix("10.244.1.0/24")
	for ip, want := range map[string]string{
		"10.244.1.2":   "",
		"10.244.1.254": "",
		"10.244.1.0":   "network or broadcast",
		"10.244.1.255": "network or broadcast",
		"10.244.1.1":   "gateway",
		"10.244.2.5":   "outside this node's PodCIDR 10.244.1.0/24",
		"fd00::1":      "not an IPv4 address",
	} {
		err := checkPoolAddress(cidr, mustAddr(ip))
		if (want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("checkPoolAddress(%s) = %v, want %q", ip, err, want)
		}
	}
}

func TestAttachmentEndpointName(t *testing.T) {
	long := strings.Repeat("a", 80)
	tests := []struct{ pod, want string }{
		{"pod1a", "pod1a-"},
		{"coredns-5d78c9869d-x2x7k", "coredns-5d78c9869d-x2x7k-"},
		{long, strings.Repeat("a", 54) + "-"},
		{"", "cni-"},
		{"Not_A_DNS_Name", "cni-"},
		{strings.Repeat("a", 53) + ".b", strings.Repeat("a", 53) + "-"}, // cut at a '.'
	}
	for _, tt := range tests {
		got := attachmentEndpointName(tt.pod, "c0ffee")
		if !strings.HasPrefix(got, tt.want) || !nameRE.MatchString(got) || len(got) > 63 {
			t.Errorf("attachmentEndpointName(%q) = %q, want prefix %q, a valid endpoint name", tt.pod, got, tt.want)
		}
	}
	if a, b := attachmentEndpointName("web", "sandbox-1"), attachmentEndpointName("web", "sandbox-2"); a == b {
		t.Errorf("two sandboxes of pod web share endpoint name %s", a)
	}
}

func TestIgnoreMissing(t *testing.T) {
	other := errors.New("unplumb: netlink busy")
	missing := fmt.Errorf("endpoint delete 10.0.0.1: %w", ebpf.ErrKeyNotExist)
	if err := ignoreMissing(errors.Join(missing, nil, missing)); err != nil {
		t.Errorf("only missing entries: %v", err)
	}
	if err := ignoreMissing(errors.Join(missing, other)); !errors.Is(err, other) || errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Errorf("missing + other = %v, want only the other", err)
	}
	if ignoreMissing(nil) != nil {
		t.Error("nil")
	}
}

// fakePods answers PodAddress from a map of "namespace/name" and reserves its values.
type fakePods map[string]netip.Addr

func (f fakePods) PodAddress(_ context.Context, ns, name, _ string) (netip.Addr, bool, error) {
	if name == "broken" {
		return netip.Addr{}, false, fmt.Errorf("apiserver: %w", ErrUnavailable)
	}
	a, ok := f[ns+"/"+name]
	return a, ok, nil
}

func (f fakePods) Reserved() []netip.Addr {
	var out []netip.Addr
	for _, a := range f {
		out = append(out, a)
	}
	return out
}

// TestAllocate runs the address choice of CNI ADD against a harness endpoint, earlier
// attachments and annotated pods, and checks ipam.json survives a reopen.
func TestAllocate(t *testing.T) {
	dir := t.TempDir()
	st, err := openStore(dir)
	if err != nil {
		t.Fatal(err)
	}
	ipam, err := openIPAM(dir)
	if err != nil {
		t.Fatal(err)
	}
	a := &Agent{opts: Options{PodCIDR: mustPrefix("10.244.1.0/24")}, store: st, ipam: ipam, problems: map[string]string{},
		pods: fakePods{"default/annotated": mustAddr("10.244.1.3"), "default/clash": mustAddr("10.244.1.2"), "default/outside": mustAddr("10.9.9.9")}}
	// A harness endpoint holds .2.
	if err := st.update(func(d *desired) error {
		d.Endpoints["harness"] = Endpoint{Name: "harness", IP: mustAddr("10.244.1.2")}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	add := func(id, pod string, requested string) (Attachment, error) {
		req := AttachmentRequest{PodSandbox: PodSandbox{ContainerID: id, IfName: PodIfName, Netns: "/var/run/netns/" + id, Namespace: "default", Pod: pod}}
		if requested != "" {
			req.RequestedIP = mustAddr(requested)
		}
		return a.newAttachment(context.Background(), req)
	}
	tests := []struct {
		id, pod, requested string
		wantIP, wantSource string
		wantErr            string
	}{
		// .2 is the harness endpoint's, .3 the annotated pod's: the pool starts at .4.
		{"c1", "plain", "", "10.244.1.4", AddressPool, ""},
		{"c2", "annotated", "", "10.244.1.3", AddressAnnotation, ""},
		{"c3", "plain2", "10.244.1.50", "10.244.1.50", AddressRequested, ""},
		{"c4", "annotated", "10.244.1.60", "10.244.1.60", AddressRequested, ""}, // the request wins
		{"c5", "plain3", "", "10.244.1.5", AddressPool, ""},
		{"c6", "x", "10.244.1.50", "", "", "requested address 10.244.1.50 is in use by attachment c3/eth0"},
		{"c7", "clash", "", "", "", "annotation address 10.244.1.2 is in use by endpoint harness"},
		{"c8", "outside", "", "", "", "annotation address: 10.9.9.9 is outside this node's PodCIDR"},
		{"c9", "x", "10.244.1.1", "", "", "is the pods' gateway"},
		{"c10", "broken", "", "", "", "unavailable"},
	}
	for _, tt := range tests {
		att, err := add(tt.id, tt.pod, tt.requested)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: err = %v, want %q", tt.id, err, tt.wantErr)
			}
			continue
		}
		if err != nil || att.IP != mustAddr(tt.wantIP) || att.AddressSource != tt.wantSource {
			t.Errorf("%s: %s (%s), %v; want %s (%s)", tt.id, att.IP, att.AddressSource, err, tt.wantIP, tt.wantSource)
		}
	}
	var in *InputError
	if _, err := add("c11", "x", "10.244.1.50"); !errors.As(err, &in) {
		t.Errorf("address in use: %T %v, want an *InputError (HTTP 400)", err, err)
	}
	if _, err := add("c12", "broken", ""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("lookup failure: %v, want ErrUnavailable (HTTP 503)", err)
	}

	again, err := openIPAM(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := again.list(); len(got) != 5 || got[0].ContainerID != "c1" || again.s.Last != mustAddr("10.244.1.5") {
		t.Errorf("reopened ipam.json: %+v, last %s", got, again.s.Last)
	}
}

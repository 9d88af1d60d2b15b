// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"podpath/datapath/config"
	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

// TestIPMasqAgentCIDRs: the ip-masq-agent file as Cilium reads it.
func TestIPMasqAgentCIDRs(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	prefixes := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	defaults := append(prefixes(defaultNonMasqCIDRs...), linkLocal)
	for _, tc := range []struct {
		name, path string
		want       []netip.Prefix
		err        string
	}{
		{"yaml, link-local kept out", write("a", "nonMasqueradeCIDRs:\n  - 172.31.0.0/24\n  - 10.1.2.3/16\nmasqLinkLocal: false\n"),
			prefixes("172.31.0.0/24", "10.1.0.0/16", "169.254.0.0/16"), ""},
		{"json, link-local masqueraded", write("b", `{"nonMasqueradeCIDRs": ["192.0.2.0/24"], "masqLinkLocal": true}`),
			prefixes("192.0.2.0/24"), ""},
		{"empty list: the defaults", write("c", "masqLinkLocal: false\n"), defaults, ""},
		{"no file: the defaults", filepath.Join(dir, "none"), defaults, ""},
		{"bad CIDR", write("d", "nonMasqueradeCIDRs: [10.0.0.0/33]\n"), nil, `nonMasqueradeCIDRs: "10.0.0.0/33"`},
		{"unknown field", write("e", "nonMasqCIDRs: [10.0.0.0/8]\n"), nil, "unknown field"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := IPMasqAgentCIDRs(tc.path)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}

// TestMasqueradeLegacyRules: with enable-bpf-masquerade false the agent writes its
// nftables table in its namespace (native: the native-routing CIDR is the cluster;
// tunnel: the PodCIDRs and node IPs), and removes it in another mode.
func TestMasqueradeLegacyRules(t *testing.T) {
	testutil.RequireRoot(t)
	if _, err := exec.LookPath("nft"); err != nil {
		t.Skip("nft not installed")
	}
	ns := "pptest-masq-" + strings.ReplaceAll(t.Name(), "/", "-")
	if err := nsutil.Create(ns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(ns) })
	for _, tc := range []struct {
		name string
		data map[string]string
		want []string // in `nft list table`
	}{
		{"native", map[string]string{"routing-mode": "native", "ipv4-native-routing-cidr": "10.244.0.0/16", "enable-ipv4-masquerade": "true"},
			[]string{"10.244.0.0/16", "ip saddr 10.244.1.0/24 ip daddr != @cluster", "counter packets 0 bytes 0 masquerade"}},
		{"tunnel", map[string]string{"enable-ipv4-masquerade": "true"},
			[]string{"10.244.1.0-10.244.2.255", "192.168.77.2", "masquerade"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _, err := config.FromMap(tc.data)
			if err != nil {
				t.Fatal(err)
			}
			a := &Agent{opts: Options{Node: "node1", PodCIDR: netip.MustParsePrefix("10.244.1.0/24")}, cfg: c}
			if a.store, err = openStore(t.TempDir()); err != nil {
				t.Fatal(err)
			}
			_ = a.store.update(func(d *desired) error {
				d.Nodes["node2"] = Node{Name: "node2", IP: netip.MustParseAddr("192.168.77.2"), PodCIDR: netip.MustParsePrefix("10.244.2.0/24")}
				return nil
			})
			var out []byte
			err = nsutil.Do(nsutil.Path(ns), func() error {
				if e := a.masqLegacyRules(context.Background()); e != nil {
					return e
				}
				o, e := exec.Command("nft", "list", "table", "ip", MasqTable).CombinedOutput()
				out = o
				return e
			})
			if err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("table has no %q:\n%s", w, out)
				}
			}
		})
	}
	// Another mode removes the table.
	err := nsutil.Do(nsutil.Path(ns), func() error {
		if e := removeMasqTable(context.Background()); e != nil {
			return e
		}
		if o, e := exec.Command("nft", "list", "table", "ip", MasqTable).CombinedOutput(); e == nil {
			t.Errorf("table still there after removeMasqTable:\n%s", o)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"

	"podpath/datapath/config"
)

// The agent's part of masquerading (config.Masquerading()):
//   - BPF: the address of every device the programs are attached to goes into
//     masq_addrs (bpf/lib/masq.h), and with enable-ip-masq-agent the config file's
//     non-masquerade CIDRs into masq_nonmasq;
//   - Legacy ("IPTables" in cilium status): an nftables table in the node's namespace,
//     table ip podpath_masq, whose postrouting rule masquerades packets from this
//     node's PodCIDR to anything outside the cluster, with a counter (the harness
//     reads it to tell which mode ran).

// MasqTable is the nftables table of the legacy masquerading path.
const MasqTable = "podpath_masq"

// ipMasqAgentConfig is ip-masq-agent's config file as Cilium reads it (YAML or JSON).
type ipMasqAgentConfig struct {
	NonMasqueradeCIDRs []string `json:"nonMasqueradeCIDRs"`
	MasqLinkLocal      bool     `json:"masqLinkLocal"`
	MasqLinkLocalIPv6  bool     `json:"masqLinkLocalIPv6"`
	ResyncInterval     string   `json:"resyncInterval"`
}

// defaultNonMasqCIDRs are the ip-masq-agent's defaults when the file gives none
// (Cilium adds them, as the original ip-masq-agent does): the private and reserved
// IPv4 ranges.
var defaultNonMasqCIDRs = []string{"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
	"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4"}

// linkLocal is never masqueraded unless masqLinkLocal says so.
var linkLocal = netip.MustParsePrefix("169.254.0.0/16")

// ipMasqAgentPath resolves ip-masq-agent-config-path: an absolute path as given
// (Cilium's are always absolute: the ip-masq-agent ConfigMap mounted at /etc/config);
// a relative one, podpath's addition, relative to the directory of the cilium-config
// file, as if both ConfigMaps were mounted side by side.
func ipMasqAgentPath(path, configFile string) string {
	if filepath.IsAbs(path) || configFile == "" {
		return path
	}
	return filepath.Join(filepath.Dir(configFile), path)
}

// IPMasqAgentCIDRs reads the ip-masq-agent config at path and returns the CIDRs
// never masqueraded: nonMasqueradeCIDRs (the defaults when the file lists none, or
// does not exist), plus 169.254.0.0/16 unless masqLinkLocal is true.
func IPMasqAgentCIDRs(path string) ([]netip.Prefix, error) {
	var cfg ipMasqAgentConfig
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("ip-masq-agent config: %w", err)
	default:
		if err := yaml.UnmarshalStrict(b, &cfg); err != nil {
			return nil, fmt.Errorf("ip-masq-agent config %s: %w", path, err)
		}
	}
	list := cfg.NonMasqueradeCIDRs
	if len(list) == 0 {
		list = defaultNonMasqCIDRs
	}
	var out []netip.Prefix
	for _, s := range list {
		p, err := netip.ParsePrefix(strings.TrimSpace(s))
		if err != nil {
			return nil, fmt.Errorf("ip-masq-agent config %s: nonMasqueradeCIDRs: %q: %w", path, s, err)
		}
		if p.Addr().Is4() {
			out = append(out, p.Masked())
		}
	}
	if !cfg.MasqLinkLocal && !slices.Contains(out, linkLocal) {
		out = append(out, linkLocal)
	}
	return out, nil
}

// masqSetup programs what the agent owns of the masquerading mode in effect: called
// once the programs are attached to the devices.
func (a *Agent) masqSetup(ctx context.Context) error {
	switch a.cfg.Masquerading() {
	case config.MasqueradeBPF:
		for _, name := range a.opts.Devices {
			if err := a.dp.masqDevice(name); err != nil {
				return err
			}
		}
		cidrs := []netip.Prefix{}
		if a.cfg.EnableIPMasqAgent {
			var err error
			if cidrs, err = IPMasqAgentCIDRs(a.cfg.IPMasqAgentConfigPath); err != nil {
				return err
			}
		}
		if err := a.dp.dp.Masq.NonMasqReplace(cidrs); err != nil {
			return err
		}
		return removeMasqTable(ctx)
	case config.MasqueradeLegacy:
		return a.masqLegacyRules(ctx)
	}
	return removeMasqTable(ctx)
}

// masqNodesChanged rewrites the legacy rules' cluster set after a node came or went
// (the BPF path reads the nodes and ipcache maps itself).
func (a *Agent) masqNodesChanged(ctx context.Context) error {
	if a.dp == nil || a.cfg.Masquerading() != config.MasqueradeLegacy {
		return nil
	}
	return a.masqLegacyRules(ctx)
}

// masqDevice records the primary IPv4 of device name as its masquerade address.
func (d *datapath) masqDevice(name string) error {
	dev, err := d.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("masquerade device %s: %w", name, err)
	}
	addrs, err := d.nl.AddrList(dev, unix.AF_INET)
	if err != nil {
		return fmt.Errorf("masquerade device %s: %w", name, err)
	}
	for _, a := range addrs {
		if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && a.Scope == int(netlink.SCOPE_UNIVERSE) {
			return d.dp.Masq.AddrSet(dev.Attrs().Index, ip)
		}
	}
	return nil // the node IP then (masq_addr())
}

// masqLegacyRules (re)writes table ip podpath_masq: packets from this node's
// PodCIDR leaving through a device other than a pod's veth or the tunnel device,
// to a destination outside the cluster (native routing: outside
// ipv4-native-routing-cidr; tunnel mode: no PodCIDR and no node IP of the cluster),
// are masqueraded, and counted.
func (a *Agent) masqLegacyRules(ctx context.Context) error {
	var cluster []string
	if a.cfg.RoutingMode == config.RoutingNative && a.cfg.NativeRoutingCIDR.IsValid() {
		cluster = append(cluster, a.cfg.NativeRoutingCIDR.String())
	}
	cluster = append(cluster, a.opts.PodCIDR.String())
	for _, n := range a.store.nodes() {
		cluster = append(cluster, n.PodCIDR.String(), n.IP.String()+"/32")
	}
	slices.Sort(cluster)
	cluster = slices.Compact(cluster)
	rules := fmt.Sprintf(`table ip %[1]s {
	set cluster {
		type ipv4_addr
		flags interval
		auto-merge
		elements = { %[2]s }
	}
	chain postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		ip saddr %[3]s ip daddr != @cluster oifname != "lxc*" oifname != "cilium_*" counter masquerade
	}
}
`, MasqTable, strings.Join(cluster, ", "), a.opts.PodCIDR)
	// Delete and create in one transaction: a restart never leaves the node without
	// the rule.
	script := fmt.Sprintf("table ip %[1]s\ndelete table ip %[1]s\n%[2]s", MasqTable, rules)
	return runNft(ctx, script)
}

// removeMasqTable deletes table ip podpath_masq if it exists (another mode ran before).
func removeMasqTable(ctx context.Context) error {
	return runNft(ctx, fmt.Sprintf("table ip %[1]s\ndelete table ip %[1]s\n", MasqTable))
}

// runNft runs `nft -f -` with script in the agent's namespace.
func runNft(ctx context.Context, script string) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("nft -f (masquerade table %s): %w: %s", MasqTable, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"time"

	"podpath/topology"
)

// nftTable is the harness's own table in a node: counters only, never a verdict.
const nftTable = "podpath_probe"

// nftWait is what an nft command waits for: the kernel's netlink answer.
const nftWait = 2 * time.Second

// HostStackCounters installs, in every node, nftables counter rules on the forward and
// input hooks for traffic between pod addresses: a packet the host stack routes or
// receives raises them; a packet forwarded in BPF never does.
func HostStackCounters(ctx context.Context, t topology.Cluster, pods netip.Prefix) error {
	p := pods.String()
	cmds := [][]string{
		{"nft", "add", "table", "inet", nftTable},
		{"nft", "add", "chain", "inet", nftTable, "forward", "{ type filter hook forward priority -300; policy accept; }"},
		{"nft", "add", "chain", "inet", nftTable, "input", "{ type filter hook input priority -300; policy accept; }"},
		{"nft", "add", "rule", "inet", nftTable, "forward", "ip", "saddr", p, "ip", "daddr", p, "counter"},
		{"nft", "add", "rule", "inet", nftTable, "input", "ip", "saddr", p, "ip", "daddr", p, "counter"},
	}
	for _, n := range t.Nodes() {
		for _, c := range cmds {
			if out, err := Exec(ctx, t, nftWait, n.Name, c...); err != nil {
				return fmt.Errorf("nft in %s: %w: %s", n.Name, err, out)
			}
		}
	}
	return nil
}

// StackPackets is what the counters of one node saw.
type StackPackets struct{ Forward, Input uint64 }

// ReadHostStackCounters reads a node's counters (`nft -j list table inet podpath_probe`).
func ReadHostStackCounters(ctx context.Context, t topology.Cluster, node string) (StackPackets, error) {
	out, err := Exec(ctx, t, nftWait, node, "nft", "-j", "list", "table", "inet", nftTable)
	if err != nil {
		return StackPackets{}, err
	}
	var doc struct {
		Nftables []struct {
			Rule *struct {
				Chain string `json:"chain"`
				Expr  []struct {
					Counter *struct {
						Packets uint64 `json:"packets"`
					} `json:"counter"`
				} `json:"expr"`
			} `json:"rule"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal(out, &doc); err != nil {
		return StackPackets{}, fmt.Errorf("parse nft -j output of %s: %w", node, err)
	}
	var s StackPackets
	for _, item := range doc.Nftables {
		if item.Rule == nil {
			continue
		}
		for _, e := range item.Rule.Expr {
			if e.Counter == nil {
				continue
			}
			switch item.Rule.Chain {
			case "forward":
				s.Forward += e.Counter.Packets
			case "input":
				s.Input += e.Counter.Packets
			}
		}
	}
	return s, nil
}

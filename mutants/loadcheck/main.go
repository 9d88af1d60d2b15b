// SPDX-License-Identifier: Apache-2.0

// Command loadcheck loads the datapath objects once per catalog cilium-config (the
// verifier sees each config's constants), so scripts/mutants.sh can tell a mutant the
// verifier refuses (not a mutant: it must be fixed) from one the scenarios catch. It
// needs root; it attaches nothing and pins nothing.
package main

import (
	"fmt"
	"net/netip"
	"os"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/config/configs"
	"podpath/datapath/loader"
)

func main() {
	failed := 0
	for _, name := range configs.Names() {
		if err := load(name); err != nil {
			fmt.Fprintf(os.Stderr, "loadcheck: config %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("loadcheck: config %s: loaded\n", name)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

// load builds config name's BPF config with stand-in node facts and loads the objects.
func load(name string) error {
	b, err := configs.Read(name)
	if err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	c, _, err := config.Parse(b)
	if err != nil {
		return fmt.Errorf("parse config: %w", err)
	}
	// Stand-ins for every node fact a config may need (cross-subnet needs the node
	// IP's subnet length, bpf-lb-sock-hostns-only a netns cookie): only the
	// verifier's view of the constants matters here.
	node := bpfconfig.Node{ID: 1, IP: netip.MustParseAddr("192.0.2.1"), TunnelMTU: 1450, VXLANIfindex: 1,
		SubnetBits: 24, NetnsCookie: 1}
	cfg, err := bpfconfig.Build(c, node)
	if err != nil {
		return fmt.Errorf("build: %w", err)
	}
	d, err := loader.LoadDatapath(cfg, nil)
	if err != nil {
		return fmt.Errorf("load: %w", err)
	}
	return d.Close()
}

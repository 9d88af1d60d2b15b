// SPDX-License-Identifier: Apache-2.0

package cli

import (
	"errors"
	"flag"
	"fmt"
	"strings"

	"podpath/topology"
	"podpath/topology/kind"
	"podpath/topology/netns"
)

// backendOptions is what `podpath up` and `podpath down` hand to a backend.
type backendOptions struct {
	progress func(string)
	// ciliumConfig is the --config file: the agents' cilium-config (kind only).
	ciliumConfig string
}

// backends are the topology backends --backend chooses from; the first is the default.
// This table is the one place the CLI knows them by name.
var backends = []struct {
	name, help string
	new        func(o backendOptions) (topology.Backend, error)
}{
	{netns.BackendName, "network namespaces on this machine", func(o backendOptions) (topology.Backend, error) {
		if o.ciliumConfig != "" {
			return nil, errors.New("--config: the netns backend starts no agents on up (run the generic checks with agents: podpath run --topology FILE --config FILE)")
		}
		// Detached: the run outlives this process until `podpath down` (or clean --all).
		return &netns.Backend{Detached: true, Progress: o.progress}, nil
	}},
	{kind.BackendName, "a kind cluster; needs Docker", func(o backendOptions) (topology.Backend, error) {
		b := &kind.Backend{Progress: o.progress}
		if o.ciliumConfig != "" {
			data, err := kind.ReadCiliumConfig(o.ciliumConfig)
			if err != nil {
				return nil, err
			}
			b.Options.CiliumConfig = data
		}
		return b, nil
	}},
}

// backendFlag adds --backend to fs.
func backendFlag(fs *flag.FlagSet) *string {
	var help []string
	for _, b := range backends {
		help = append(help, fmt.Sprintf("%s (%s)", b.name, b.help))
	}
	return fs.String("backend", backends[0].name, strings.Join(help, " or "))
}

// newBackend returns the backend called name, set up with o.
func newBackend(name string, o backendOptions) (topology.Backend, error) {
	var names []string
	for _, b := range backends {
		if b.name == name {
			return b.new(o)
		}
		names = append(names, b.name)
	}
	return nil, fmt.Errorf("--backend: %q is not one of %s", name, strings.Join(names, ", "))
}

// SPDX-License-Identifier: Apache-2.0

package topotest

import (
	"context"
	"os"
	"testing"

	"podpath/internal/testutil"
	"podpath/topology"
	"podpath/topology/catalog"
	"podpath/topology/netns"
)

// Build builds the main package pkg of this module (podpath/cmd/...) into the test's
// temporary folder and returns the binary's path (testutil.Build).
func Build(tb testing.TB, pkg string) string {
	tb.Helper()
	return testutil.Build(tb, pkg)
}

// UseAgent points PODPATH_AGENT (what agentrun.Start runs) at a podpath-agent
// built from this tree for the rest of the test, unless it is set, and returns it.
func UseAgent(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("PODPATH_AGENT"); p != "" {
		return p
	}
	bin := Build(tb, "podpath/cmd/podpath-agent")
	tb.Setenv("PODPATH_AGENT", bin)
	return bin
}

// Up brings catalog topology topo up under name with the netns backend (withPods false:
// without its pods, which the test makes itself) and takes it down when the test ends.
func Up(tb testing.TB, topo, name string, withPods bool) topology.Cluster {
	tb.Helper()
	spec, err := catalog.Topology(topo)
	if err != nil {
		tb.Fatal(err)
	}
	spec.Name = name
	if !withPods {
		for i := range spec.Nodes {
			spec.Nodes[i].Pods = nil
		}
	}
	t, err := netns.Up(context.Background(), spec)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := t.Down(context.Background()); err != nil {
			tb.Errorf("down %s: %v", t.Name(), err)
		}
	})
	return t
}

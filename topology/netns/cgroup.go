// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"fmt"
	"os"
	"path/filepath"

	"podpath/internal/cgroup2"
	"podpath/topology"
)

// cgroupRel is the run's folder in the cgroup v2 hierarchy: podpath-<runid>, with
// one child per node (socket-LB attaches there).
func cgroupRel(runID string) string { return "podpath-" + runID }

// NodeCgroup is node's cgroup v2 directory, <cgroup2 root>/podpath-<runid>/<node>,
// created on first use. Every process the topology starts in the node's namespace or
// in one of its pods' is born in it (clone3 CLONE_INTO_CGROUP), so the node's agent
// attaches socket-LB (cgroup/connect4 and friends) to it, never to a hierarchy's
// root. Down removes the run's folder. It fails where no cgroup2 file system is
// mounted (cgroup2.ErrNoHierarchy).
func (t *Topology) NodeCgroup(node string) (string, error) {
	if _, err := t.Node(node); err != nil {
		return "", err
	}
	p, err := cgroup2.Create(filepath.Join(cgroupRel(t.runID), node))
	if err != nil {
		return "", fmt.Errorf("cgroup of node %s: %w", node, err)
	}
	return p, nil
}

// cgroupOf is the node cgroup a process started in member is born in: the member's
// own for a node, its node's for a pod; "" for other members or without cgroup2.
func (t *Topology) cgroupOf(member string) string {
	m, err := t.Member(member)
	if err != nil {
		return ""
	}
	node := ""
	switch m.Kind {
	case topology.KindNode:
		node = member
	case topology.KindPod:
		if p, err := t.Pod(member); err == nil {
			node = p.Node
		}
	}
	if node == "" {
		return ""
	}
	p, err := t.NodeCgroup(node)
	if err != nil {
		return ""
	}
	return p
}

// removeRunCgroups removes the run's cgroup folder, if any (teardown, after its
// processes are gone).
func removeRunCgroups(runID string) error {
	root, err := cgroup2.Root()
	if err != nil {
		return nil
	}
	dir := filepath.Join(root, cgroupRel(runID))
	if _, err := os.Stat(dir); err != nil {
		return nil
	}
	return cgroup2.Remove(dir)
}

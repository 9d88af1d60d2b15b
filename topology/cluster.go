// SPDX-License-Identifier: Apache-2.0

package topology

import (
	"context"
	"os/exec"
)

// Backend brings a spec up as a running Cluster: topology/netns (network namespaces on
// this machine) and topology/kind (a kind cluster) implement it, the way kind keeps its
// docker and podman providers behind one interface.
type Backend interface {
	// Name is the backend's name as `podpath up --backend NAME` takes it.
	Name() string
	// Up resolves, validates and brings spec up.
	Up(ctx context.Context, spec *Spec) (Cluster, error)
	// Down tears down a running topology of this backend by name, also one brought up
	// by another process (`podpath down NAME`).
	Down(ctx context.Context, name string) error
}

// Cluster is a running topology, whatever brought it up. Members are named as in the
// spec (segments, routers, nodes, clients, pods). An operation a backend cannot do
// returns an error wrapping ErrNotSupported that says why.
type Cluster interface {
	// Name is the running topology's name: <spec.name>-<runid> (netns), the cluster
	// name (kind). `podpath down NAME` takes it.
	Name() string
	// RunID is the run's ID (pp-<runid>-* namespaces, /run/podpath/<runid>); empty for
	// a backend without runs on this machine.
	RunID() string
	// Backend is the name of the backend that brought the topology up.
	Backend() string
	// Spec is the resolved spec: every default and address filled in.
	Spec() *Spec
	// Prefix is the name prefix of the run's network namespaces (pp-<runid>-); empty
	// where the backend makes none.
	Prefix() string

	// Member returns the member (segment, node, router, client or pod) called name.
	Member(name string) (Member, error)
	// Members returns every member: segments, routers, nodes, clients, then pods.
	Members() []Member
	// Nodes returns the resolved nodes in spec order.
	Nodes() []Node
	// Node returns the node called name.
	Node(name string) (Node, error)
	// Pods returns every pod, node by node, in spec order.
	Pods() []Pod
	// Pod returns the pod called name.
	Pod(name string) (Pod, error)
	// Interfaces returns the interfaces of a member.
	Interfaces(member string) ([]Interface, error)

	// Do runs fn on a locked OS thread inside member's network namespace.
	Do(member string, fn func() error) error
	// Exec runs argv in member and returns its combined output (`ip netns exec NS
	// argv...`, `docker exec NODE argv...`).
	Exec(ctx context.Context, member string, argv ...string) ([]byte, error)
	// Start starts a long-running argv in member; Down kills it.
	Start(ctx context.Context, member string, argv ...string) (*exec.Cmd, error)
	// StartCmd starts a prepared cmd in member; Down kills it. The caller Waits.
	StartCmd(member string, cmd *exec.Cmd) error
	// Dir is the run's own folder: agents keep state, logs and bpffs there.
	Dir() string
	// MountBPFFS mounts a bpf filesystem private to the run (`mount -t bpf bpffs DIR`)
	// and returns its path.
	MountBPFFS() (string, error)
	// Down tears the topology down; calling it again is a no-op.
	Down(ctx context.Context) error
}

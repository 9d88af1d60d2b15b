// SPDX-License-Identifier: Apache-2.0

package netns

import (
	"podpath/topology"

	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	vnetns "github.com/vishvananda/netns"

	"podpath/internal/nsutil"
)

const (
	// bridgeName is the bridge inside every segment namespace.
	bridgeName = "br0"
	// carrierTimeout bounds the wait for the veths to come up at the end of Up.
	carrierTimeout = 5 * time.Second
)

// Backend is the default backend: every member is a network namespace named
// pp-<runid>-<member>, every segment a Linux bridge in a namespace of its own, every
// attachment a veth pair whose ends are created directly in the two namespaces. Nothing
// is ever created in the root namespace.
type Backend struct {
	// Progress, when set, receives one line per step ("creating namespace ..."), never
	// concurrently.
	Progress func(string)
	// Detached hands the run over to nobody once Up succeeds: Clean then leaves it alone
	// after this process exits (only Down, DownByName or Clean(all) remove it). Without
	// it, the run counts as crashed once the process that brought it up is gone.
	Detached bool

	// failHook, when set, runs after every step of Up; an error aborts Up (tests).
	failHook func(runID, step string) error
}

// BackendName is the netns backend's name: `podpath up --backend netns`.
const BackendName = "netns"

var (
	_ topology.Backend = (*Backend)(nil)
	_ topology.Cluster = (*Topology)(nil)
)

// Name returns "netns".
func (b *Backend) Name() string { return BackendName }

// Up brings spec up with the default netns backend and returns the running *Topology.
func Up(ctx context.Context, spec *topology.Spec) (*Topology, error) {
	return (&Backend{}).up(ctx, spec)
}

// Up resolves spec, then creates its namespaces, bridges, veths, addresses, routes and
// pods. The state file is written before the first namespace exists and kept current,
// so a crash leaves something Clean can find; an Up that fails tears down what it made.
func (b *Backend) Up(ctx context.Context, spec *topology.Spec) (topology.Cluster, error) {
	t, err := b.up(ctx, spec)
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return t, nil
}

// Down tears down a running topology by run ID, full name or spec name (see
// DownByName), with a progress line per step when Progress is set.
func (b *Backend) Down(ctx context.Context, name string) error {
	var progress func(string, ...any)
	if b.Progress != nil {
		progress = func(format string, args ...any) { b.Progress(fmt.Sprintf(format, args...)) }
	}
	return downByName(ctx, name, progress)
}

// up is Up returning the concrete *Topology.
func (b *Backend) up(ctx context.Context, spec *topology.Spec) (_ *Topology, err error) {
	if spec == nil {
		return nil, errors.New("topology up: nil spec")
	}
	r, err := spec.Resolve()
	if err != nil {
		return nil, fmt.Errorf("topology up: %w", err)
	}
	plan, err := topology.PlanRoutes(r)
	if err != nil {
		return nil, fmt.Errorf("topology up: %w", err)
	}
	if err := checkBGPDaemons(r); err != nil {
		return nil, fmt.Errorf("topology up %s: %w", r.Name, err)
	}
	runID, err := newRunID()
	if err != nil {
		return nil, fmt.Errorf("topology up %s: %w", r.Name, err)
	}
	t := newTopology(runID, r)
	t.Progress = b.Progress
	st := &state{
		Format: stateFormat, Name: t.name, RunID: runID, Backend: b.Name(), Spec: r,
		Owner: self(), Created: time.Now().UTC(),
	}
	for _, m := range t.Members() {
		st.Namespaces = append(st.Namespaces, m.Netns)
	}
	if err := writeState(st); err != nil {
		os.RemoveAll(runDir(runID))
		return nil, fmt.Errorf("topology up %s: %w", t.name, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("topology up %s: %w", t.name, err)
			if derr := t.Down(context.WithoutCancel(ctx)); derr != nil {
				err = errors.Join(err, fmt.Errorf("clean up after failed up: %w", derr))
			}
		}
	}()

	u := &upper{t: t, plan: plan, handles: map[string]*netlink.Handle{}, fds: map[string]vnetns.NsHandle{}}
	u.nextIndex = firstIfindex(r)
	defer u.close()
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"namespaces", u.namespaces},
		{"sysctls", u.sysctls},
		{"segments", u.segments},
		{"interfaces", u.interfaces},
		{"routes", u.routes},
		{"bgp", u.bgp},
		{"pods", u.pods},
		{"carrier", u.waitCarrier},
		{"etcd", u.etcd},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := s.fn(ctx); err != nil {
			return nil, err
		}
		if err := updateState(runID, func(st *state) { st.Step = s.name }); err != nil {
			return nil, err
		}
		if b.failHook != nil {
			if err := b.failHook(runID, s.name); err != nil {
				return nil, fmt.Errorf("after %s: %w", s.name, err)
			}
		}
	}
	if err := updateState(runID, func(st *state) {
		st.Complete = true
		if b.Detached {
			st.Owner = procRef{}
		}
	}); err != nil {
		return nil, err
	}
	t.progress("topology %s is up (%d namespaces)", t.name, len(t.order))
	return t, nil
}

// upper carries the netlink handles of one Up.
type upper struct {
	t       *Topology
	plan    topology.Plan
	mu      sync.Mutex
	handles map[string]*netlink.Handle // by member
	fds     map[string]vnetns.NsHandle
	// nextIndex is the next explicit ifindex for the veth ends Up creates.
	nextIndex int
}

// close releases the handles (the namespaces stay).
func (u *upper) close() {
	for _, h := range u.handles {
		h.Close()
	}
	for _, fd := range u.fds {
		fd.Close()
	}
}

// handle returns the netlink handle inside member's namespace.
func (u *upper) handle(member string) (*netlink.Handle, vnetns.NsHandle, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if h, ok := u.handles[member]; ok {
		return h, u.fds[member], nil
	}
	m := u.t.members[member]
	fd, err := vnetns.GetFromPath(m.NsPath)
	if err != nil {
		return nil, 0, fmt.Errorf("open netns %s: %w", m.Netns, err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		fd.Close()
		return nil, 0, fmt.Errorf("netlink handle in %s: %w", m.Netns, err)
	}
	u.handles[member], u.fds[member] = h, fd
	return h, fd, nil
}

// namespaces creates every namespace, a few at a time.
func (u *upper) namespaces(ctx context.Context) error {
	members := u.t.Members()
	return parallel(ctx, len(members), func(i int) error {
		m := members[i]
		u.t.progress("creating namespace %s (%s %s)", m.Netns, m.Kind, m.Name)
		if err := nsutil.Create(m.Netns); err != nil {
			return err
		}
		_, _, err := u.handle(m.Name)
		return err
	})
}

// sysctls turns on forwarding on nodes and routers and loosens rp_filter on every host,
// before any interface exists so that conf/default applies to all of them.
func (u *upper) sysctls(ctx context.Context) error {
	for _, m := range u.t.Members() {
		var forward string
		switch m.Kind {
		case topology.KindNode, topology.KindRouter:
			forward = "1"
		case topology.KindClient:
			forward = "0"
		default:
			continue
		}
		// A BGP router spreads the flows of an ECMP route (a service address several
		// nodes announce) by their L4 tuple, as an L4 load balancer's upstream router
		// does: the default policy (0) hashes addresses only, which puts every flow of
		// one client on one path.
		hashPolicy, note := "", ""
		if m.Kind == topology.KindRouter && u.t.spec.RouterBGP(m.Name) != nil {
			hashPolicy, note = "1", ", fib_multipath_hash_policy=1 (L4)"
		}
		u.t.progress("setting sysctls in %s %s (ip_forward=%s, rp_filter=0%s)", m.Kind, m.Name, forward, note)
		if err := nsutil.Do(m.NsPath, func() error {
			err := errors.Join(
				writeSysctl("net/ipv4/conf/all/rp_filter", "0"),
				writeSysctl("net/ipv4/conf/default/rp_filter", "0"),
				writeSysctl("net/ipv4/ip_forward", forward),
			)
			if hashPolicy != "" {
				err = errors.Join(err, writeSysctl("net/ipv4/fib_multipath_hash_policy", hashPolicy))
			}
			return err
		}); err != nil {
			return fmt.Errorf("sysctls in %s: %w", m.Netns, err)
		}
	}
	return nil
}

func writeSysctl(key, value string) error {
	p := filepath.Join("/proc/sys", key)
	if err := os.WriteFile(p, []byte(value), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", key, value, err)
	}
	return nil
}

// parallel runs fn(0..n-1) on a few goroutines and joins the errors.
func parallel(ctx context.Context, n int, fn func(int) error) error {
	const workers = 4
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		next = make(chan int)
	)
	for range min(workers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < n && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

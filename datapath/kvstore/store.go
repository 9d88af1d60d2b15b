// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"
)

// Options configure a Store.
type Options struct {
	// Node is this agent's node name; NodeIP its address (slave keys carry it).
	Node   string
	NodeIP string
	// Cluster is cluster-name (default "default"); ClusterID is cluster-id (0: no
	// mesh), bits 16-23 of every identity allocated.
	Cluster   string
	ClusterID uint32
	// LeaseTTL of the agent's lease (every key it owns); default 15s.
	LeaseTTL time.Duration
	Log      *slog.Logger
}

// Store is one agent's connection to etcd. Keys the agent owns are remembered and put
// again, under a live lease, whenever etcd comes back (resync).
type Store struct {
	cfg  *EtcdConfig
	opts Options
	cli  *clientv3.Client

	mu      sync.Mutex
	owned   map[string]string // key -> value, kept under the lease
	dirty   bool              // owned keys not known to be in etcd
	lease   clientv3.LeaseID
	session *concurrency.Session
	status  Status
	hooks   []func()
	resyncs int
	// gcMarked are master keys the last identity GC round found unused (id -> mod
	// revision): deleted by the next round if still so.
	gcMarked map[uint32]int64
}

// Status is what `podpath-agent status` prints on its KVStore line.
type Status struct {
	Endpoints []EndpointStatus `json:"endpoints"`
	Connected int              `json:"connected"`
	HasQuorum bool             `json:"hasQuorum"`
	LeaseID   string           `json:"leaseID,omitempty"`
	LockLease string           `json:"lockLeaseID,omitempty"`
	// Since is when the quorum was last lost or gained.
	Since   time.Time `json:"since"`
	Resyncs int       `json:"resyncs"`
	Error   string    `json:"error,omitempty"`
}

// EndpointStatus is one etcd member as the agent sees it.
type EndpointStatus struct {
	URL     string `json:"url"`
	Version string `json:"version,omitempty"`
	Leader  bool   `json:"leader,omitempty"`
	Error   string `json:"error,omitempty"`
}

// String is Cilium's KVStore line: "Ok etcd: 3/3 connected, lease-ID=..., has-quorum=true: URL - 3.4.23 (Leader); ...".
func (s Status) String() string {
	state := "Ok"
	if !s.HasQuorum {
		state = "Failure"
	}
	var eps []string
	for _, e := range s.Endpoints {
		switch {
		case e.Error != "":
			eps = append(eps, fmt.Sprintf("%s - %s", e.URL, e.Error))
		case e.Leader:
			eps = append(eps, fmt.Sprintf("%s - %s (Leader)", e.URL, e.Version))
		default:
			eps = append(eps, fmt.Sprintf("%s - %s", e.URL, e.Version))
		}
	}
	lease := ""
	if s.LeaseID != "" {
		lease = ", lease-ID=" + s.LeaseID
	}
	if s.LockLease != "" {
		lease += ", lock lease-ID=" + s.LockLease
	}
	return fmt.Sprintf("%s etcd: %d/%d connected%s, has-quorum=%t: %s", state, s.Connected, len(s.Endpoints), lease, s.HasQuorum, strings.Join(eps, "; "))
}

// New builds the client (it connects lazily: an etcd that is down is no error here).
func New(cfg *EtcdConfig, opts Options) (*Store, error) {
	if opts.Cluster == "" {
		opts.Cluster = "default"
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = 15 * time.Second
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	cc := clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: 2 * time.Second, Logger: zap.NewNop(),
		DialKeepAliveTime: 2 * time.Second, DialKeepAliveTimeout: 2 * time.Second}
	if cfg.CAFile != "" || cfg.CertFile != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if cfg.CAFile != "" {
			pem, err := os.ReadFile(cfg.CAFile)
			if err != nil {
				return nil, fmt.Errorf("etcd trusted-ca-file: %w", err)
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("etcd trusted-ca-file %s: no certificate", cfg.CAFile)
			}
		}
		if cfg.CertFile != "" {
			c, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("etcd cert-file/key-file: %w", err)
			}
			t.Certificates = []tls.Certificate{c}
		}
		cc.TLS = t
	}
	cli, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("etcd client: %w", err)
	}
	s := &Store{cfg: cfg, opts: opts, cli: cli, owned: map[string]string{}}
	s.status = s.probe(context.Background())
	return s, nil
}

// Client is the underlying etcd client.
func (s *Store) Client() *clientv3.Client { return s.cli }

// Close closes the client; the lease expires by itself (a restarted agent re-registers).
func (s *Store) Close() error { return s.cli.Close() }

// OnResync registers fn, called after every resync (etcd reachable again).
func (s *Store) OnResync(fn func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hooks = append(s.hooks, fn)
}

// Status returns the last probe.
func (s *Store) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.status
	st.Resyncs = s.resyncs
	return st
}

// Connected says whether the last probe had a quorum.
func (s *Store) Connected() bool { return s.Status().HasQuorum }

// Run probes etcd every interval, keeps the lease and resyncs owned keys when etcd
// is back, until ctx ends.
func (s *Store) Run(ctx context.Context) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st := s.probe(ctx)
		s.mu.Lock()
		prev := s.status
		if prev.HasQuorum != st.HasQuorum {
			st.Since = time.Now()
			s.opts.Log.Info("kvstore "+st.String(), "quorum", st.HasQuorum)
			if !st.HasQuorum {
				s.dirty = true
			}
		} else {
			st.Since = prev.Since
		}
		st.LeaseID, st.LockLease = prev.LeaseID, prev.LockLease
		s.status = st
		dirty := s.dirty
		s.mu.Unlock()
		if st.HasQuorum && dirty {
			if err := s.resync(ctx); err != nil {
				s.opts.Log.Warn("kvstore resync", "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe asks every endpoint for its status and does a quorum read.
func (s *Store) probe(ctx context.Context) Status {
	var st Status
	var wg sync.WaitGroup
	st.Endpoints = make([]EndpointStatus, len(s.cfg.Endpoints))
	for i, ep := range s.cfg.Endpoints {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, time.Second)
			defer cancel()
			e := EndpointStatus{URL: ep}
			r, err := s.cli.Status(c, ep)
			if err != nil {
				e.Error = shortErr(err)
			} else {
				e.Version, e.Leader = r.Version, r.Leader == r.Header.MemberId
			}
			st.Endpoints[i] = e
		}()
	}
	wg.Wait()
	for _, e := range st.Endpoints {
		if e.Error == "" {
			st.Connected++
		}
	}
	c, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := s.cli.Get(c, "cilium/.heartbeat"); err != nil {
		st.Error = shortErr(err)
	} else {
		st.HasQuorum = true
	}
	return st
}

func shortErr(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "unreachable (no answer within 1s)"
	}
	msg := err.Error()
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

// leaseID returns the agent's lease, granting one when there is none or it expired.
func (s *Store) leaseID(ctx context.Context) (clientv3.LeaseID, error) {
	s.mu.Lock()
	id := s.lease
	s.mu.Unlock()
	if id != 0 {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := s.cli.TimeToLive(c, id)
		cancel()
		if err == nil && r.TTL > 0 {
			return id, nil
		}
		if err != nil {
			return 0, fmt.Errorf("etcd lease: %w", err)
		}
	}
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	g, err := s.cli.Grant(c, int64(s.opts.LeaseTTL/time.Second))
	if err != nil {
		return 0, fmt.Errorf("etcd lease: %w", err)
	}
	ka, err := s.cli.KeepAlive(context.WithoutCancel(ctx), g.ID)
	if err != nil {
		return 0, fmt.Errorf("etcd lease keepalive: %w", err)
	}
	go func() {
		for range ka {
		}
		// The keepalive ended (the lease expired, e.g. while etcd was away): the next
		// resync grants a new lease and puts every owned key under it.
		s.mu.Lock()
		if s.lease == g.ID {
			s.lease, s.dirty = 0, true
		}
		s.mu.Unlock()
		s.opts.Log.Info("kvstore lease keepalive ended", "lease", fmt.Sprintf("%x", int64(g.ID)))
	}()
	s.mu.Lock()
	s.lease = g.ID
	s.status.LeaseID = fmt.Sprintf("%x", int64(g.ID))
	s.dirty = true // keys under an old lease are gone
	s.mu.Unlock()
	return g.ID, nil
}

// resync puts every owned key again under a live lease, then runs the hooks.
func (s *Store) resync(ctx context.Context) error {
	id, err := s.leaseID(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	keys := make([]string, 0, len(s.owned))
	for k := range s.owned {
		keys = append(keys, k)
	}
	vals := make(map[string]string, len(keys))
	for _, k := range keys {
		vals[k] = s.owned[k]
	}
	hooks := append([]func(){}, s.hooks...)
	s.mu.Unlock()
	sort.Strings(keys)
	for _, k := range keys {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := s.cli.Put(c, k, vals[k], clientv3.WithLease(id))
		cancel()
		if err != nil {
			return fmt.Errorf("etcd put %s: %w", k, err)
		}
	}
	s.mu.Lock()
	s.dirty = false
	s.resyncs++
	s.mu.Unlock()
	s.opts.Log.Info("kvstore resynced", "keys", len(keys))
	for _, h := range hooks {
		h()
	}
	return nil
}

// Put writes key under the agent's lease and remembers it; when etcd is not reachable
// it is written at the next resync (the error says so).
func (s *Store) Put(ctx context.Context, key, value string) error {
	s.mu.Lock()
	s.owned[key] = value
	s.mu.Unlock()
	id, err := s.leaseID(ctx)
	if err == nil {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = s.cli.Put(c, key, value, clientv3.WithLease(id))
		cancel()
	}
	if err != nil {
		s.mu.Lock()
		s.dirty = true
		s.mu.Unlock()
		return fmt.Errorf("etcd put %s (retried at resync): %w", key, err)
	}
	return nil
}

// Delete removes an owned key.
func (s *Store) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	delete(s.owned, key)
	s.mu.Unlock()
	c, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.cli.Delete(c, key); err != nil {
		return fmt.Errorf("etcd delete %s: %w", key, err)
	}
	return nil
}

// Event is a change under a watched prefix; Value is nil for a deletion.
type Event struct {
	Key   string
	Value []byte
}

// Watch lists prefix, calls fn for every key, then for every change, until ctx ends.
// After an outage it lists again and reports the keys that vanished meanwhile as
// deletions, so fn always converges on etcd's content.
func (s *Store) Watch(ctx context.Context, prefix string, fn func(Event)) {
	known := map[string]bool{}
	for ctx.Err() == nil {
		c, cancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := s.cli.Get(c, prefix, clientv3.WithPrefix())
		cancel()
		if err != nil {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		seen := map[string]bool{}
		for _, kv := range r.Kvs {
			seen[string(kv.Key)] = true
			fn(Event{Key: string(kv.Key), Value: kv.Value})
		}
		for k := range known {
			if !seen[k] {
				fn(Event{Key: k})
			}
		}
		known = seen
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := s.cli.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(r.Header.Revision+1))
		for resp := range wch {
			if resp.Err() != nil {
				break
			}
			for _, ev := range resp.Events {
				k := string(ev.Kv.Key)
				if ev.Type == clientv3.EventTypeDelete {
					delete(known, k)
					fn(Event{Key: k})
				} else {
					known[k] = true
					fn(Event{Key: k, Value: ev.Kv.Value})
				}
			}
		}
		wcancel()
		time.Sleep(200 * time.Millisecond)
	}
}

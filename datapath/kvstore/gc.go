// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// ReleaseIdentity removes this node's slave key of labels: the node no longer runs an
// endpoint with them. The master key stays until IdentityGC finds no node using it.
func (s *Store) ReleaseIdentity(ctx context.Context, labels string) error {
	return s.Delete(ctx, IdentityValueKey(labels, s.opts.NodeIP))
}

// IdentityGC deletes the master keys (id/<id>) of this cluster's range that no node
// uses any more (no value/<labels>/ key: slave keys live under the nodes' leases, so a
// dead node's go with its lease). Each deletion holds the label set's allocation lock
// and compares the master's revision, so it never races an allocation of the same
// labels (which claims the master, then writes its slave key, under that lock).
// Unless immediate, a master is deleted only when the previous round found it unused
// too, unchanged: slave keys missing for a moment (a lease expired during an etcd
// outage, the owner's resync not yet done) do not cost an identity in use. It
// returns the identities deleted.
func (s *Store) IdentityGC(ctx context.Context, immediate bool) ([]uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := s.cli.Get(ctx, IdentitiesPrefix+"id/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("identity gc: list: %w", err)
	}
	first, last := IdentityRange(s.opts.ClusterID)
	var deleted []uint32
	s.mu.Lock()
	prev := s.gcMarked
	s.mu.Unlock()
	marked := map[uint32]int64{}
	defer func() {
		s.mu.Lock()
		s.gcMarked = marked
		s.mu.Unlock()
	}()
	for _, kv := range r.Kvs {
		n, err := strconv.ParseUint(string(kv.Key)[len(IdentitiesPrefix+"id/"):], 10, 32)
		if err != nil || uint32(n) < first || uint32(n) > last {
			continue
		}
		labels := string(kv.Value)
		del := immediate || prev[uint32(n)] == kv.ModRevision
		used, err := s.identityInUse(ctx, labels, uint32(n), kv.ModRevision, del)
		if err != nil {
			return deleted, err
		}
		switch {
		case !used && del:
			deleted = append(deleted, uint32(n))
		case !used:
			marked[uint32(n)] = kv.ModRevision
		}
	}
	return deleted, nil
}

// identityInUse checks, under labels' lock, whether a node still holds a slave key
// of labels; if none does and del is set, it deletes master id (unless it changed
// since modRev).
func (s *Store) identityInUse(ctx context.Context, labels string, id uint32, modRev int64, del bool) (bool, error) {
	sess, err := s.lockSession(ctx)
	if err != nil {
		return true, err
	}
	mu := concurrency.NewMutex(sess, IdentitiesPrefix+"locks/"+labels)
	if err := mu.Lock(ctx); err != nil {
		return true, fmt.Errorf("identity gc: lock %s: %w", labels, err)
	}
	defer mu.Unlock(context.WithoutCancel(ctx))
	r, err := s.cli.Get(ctx, IdentitiesPrefix+"value/"+labels+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return true, fmt.Errorf("identity gc: slaves of %s: %w", labels, err)
	}
	if r.Count > 0 {
		return true, nil
	}
	if !del {
		return false, nil
	}
	k := IdentityIDKey(id)
	t, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(k), "=", modRev)).Then(clientv3.OpDelete(k)).Commit()
	if err != nil {
		return true, fmt.Errorf("identity gc: delete %s: %w", k, err)
	}
	if t.Succeeded {
		s.opts.Log.Info("kvstore identity gc: deleted unused identity", "id", id, "labels", labels)
	}
	return !t.Succeeded, nil
}

// RunIdentityGC runs IdentityGC every interval until ctx ends (errors are logged: etcd
// may be away; the next round retries).
func (s *Store) RunIdentityGC(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !s.Connected() {
			continue
		}
		if _, err := s.IdentityGC(ctx, false); err != nil {
			s.opts.Log.Warn("kvstore identity gc", "err", err)
		}
	}
}

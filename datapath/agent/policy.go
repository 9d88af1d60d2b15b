// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"time"

	"podpath/datapath/identity"
	dpmaps "podpath/datapath/maps"
	"podpath/datapath/policy"
)

// podLabels are a pod's labels as identities and selectors see them: with the
// namespace label (default "default"), as Cilium adds k8s:io.kubernetes.pod.namespace.
func podLabels(l map[string]string) map[string]string {
	out := maps.Clone(l)
	if out == nil {
		out = map[string]string{}
	}
	if out[policy.NamespaceLabel] == "" {
		out[policy.NamespaceLabel] = "default"
	}
	return out
}

// podIdentity is the identity of a pod's label set.
func (a *Agent) podIdentity(l map[string]string) (uint32, error) {
	id, err := a.ids.Allocate(identity.Labels(podLabels(l)).Canonical())
	return uint32(id), err
}

// PolicyUpsert records a network policy (YAML of a CiliumNetworkPolicy,
// CiliumClusterwideNetworkPolicy or NetworkPolicy) and programs every endpoint's
// policy (`kubectl apply -f policy.yaml`).
func (a *Agent) PolicyUpsert(ctx context.Context, p Policy) error {
	if !nameRE.MatchString(p.Name) {
		return badInput("policy name %q: want lowercase letters, digits, '-' or '.', at most 63", p.Name)
	}
	if _, err := policy.ParseOne([]byte(p.YAML)); err != nil {
		return &InputError{Err: fmt.Errorf("policy %s: %w", p.Name, err)}
	}
	if err := a.store.update(func(d *desired) error { d.Policies[p.Name] = p; return nil }); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.programPolicies()
}

// PolicyDelete removes a policy.
func (a *Agent) PolicyDelete(ctx context.Context, name string) error {
	err := a.store.update(func(d *desired) error {
		if _, ok := d.Policies[name]; !ok {
			return badInput("policy %s: not found", name)
		}
		delete(d.Policies, name)
		return nil
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.programPolicies()
}

// programPolicies computes every local endpoint's policy map entries from the stored
// policies and the known pods (this node's endpoints, the other nodes' pods), puts
// the policies' CIDR prefixes into the ipcache, and raises the policy revision.
// Called with a.mu held.
func (a *Agent) programPolicies() error {
	if a.dp == nil {
		return nil
	}
	start := time.Now()
	var pols []policy.Policy
	var errs []error
	for _, sp := range a.store.policies() {
		p, err := policy.ParseOne([]byte(sp.YAML))
		if err != nil {
			errs = append(errs, fmt.Errorf("policy %s: %w", sp.Name, err))
			continue
		}
		pols = append(pols, p)
	}
	var peers []policy.Peer
	eps := a.store.endpoints()
	for _, ep := range eps {
		peers = append(peers, policy.Peer{ID: identity.ID(ep.Identity), Labels: podLabels(ep.Labels)})
	}
	for _, n := range a.store.nodes() {
		if n.Name == a.opts.Node {
			continue
		}
		for _, p := range n.Pods {
			id, err := a.podIdentity(p.Labels)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			peers = append(peers, policy.Peer{ID: identity.ID(id), Labels: podLabels(p.Labels)})
		}
	}
	cidrs := policy.CIDRIdentities(pols)
	for p, id := range cidrs {
		errs = append(errs, a.dp.dp.Maps.IPCacheUpsert(dpmaps.IPCacheEntry{Prefix: p, Identity: uint32(id)}))
	}
	for p := range a.cidrs {
		if _, ok := cidrs[p]; !ok && !a.ownedPrefix(p) {
			errs = append(errs, a.dp.dp.Maps.IPCacheDelete(p))
		}
	}
	a.cidrs = cidrs
	pm := &policy.Maps{Policy: a.dp.dp.Lxc.Policy, Revision: a.dp.dp.Lxc.PolicyRev}
	mode := policy.Mode(a.cfg.PolicyEnforcement)
	total := 0
	for _, ep := range eps {
		host, err := a.nl.LinkByName(ep.HostVeth)
		if err != nil {
			continue // not plumbed yet: reconcileEndpoint reports it
		}
		entries := policy.Compute(mode, pols, policy.Endpoint{Name: ep.Name, Labels: podLabels(ep.Labels)}, peers, cidrs)
		total += len(entries)
		errs = append(errs, pm.Sync(uint32(host.Attrs().Index), entries))
	}
	errs = append(errs, pm.Bump())
	errs = append(errs, a.programEgressGW())
	err := errors.Join(errs...)
	a.opts.Log.Debug("policies programmed", "policies", len(pols), "endpoints", len(eps), "entries", total, "took", time.Since(start), "err", err)
	return err
}

// ownedPrefix says whether an ipcache prefix belongs to an endpoint or node (a CIDR
// rule naming it must not remove it when it goes).
func (a *Agent) ownedPrefix(p netip.Prefix) bool {
	for _, n := range a.store.nodes() {
		if p == n.PodCIDR || p == netip.PrefixFrom(n.IP, 32) {
			return true
		}
		for _, pod := range n.Pods {
			if p == netip.PrefixFrom(pod.IP, 32) {
				return true
			}
		}
	}
	for _, ep := range a.store.endpoints() {
		if p == netip.PrefixFrom(ep.IP, 32) {
			return true
		}
	}
	return false
}

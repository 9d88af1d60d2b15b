// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"fmt"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/egressgw"
	dpmaps "podpath/datapath/maps"
)

// EgressGatewayPolicyUpsert records a CiliumEgressGatewayPolicy (YAML in p.YAML) and
// reprograms the egress gateway map (`kubectl apply -f egress-gw-policy.yaml`).
// Refused without enable-ipv4-egress-gateway.
func (a *Agent) EgressGatewayPolicyUpsert(ctx context.Context, p Policy) error {
	if !nameRE.MatchString(p.Name) {
		return badInput("egress gateway policy name %q: want lowercase letters, digits, '-' or '.', at most 63", p.Name)
	}
	if a.cfg != nil && !a.cfg.EnableIPv4EgressGateway {
		return badInput("egress gateway policy %s: enable-ipv4-egress-gateway is not true in this agent's cilium-config", p.Name)
	}
	if _, err := egressgw.Parse([]byte(p.YAML)); err != nil {
		return &InputError{Err: fmt.Errorf("egress gateway policy %s: %w", p.Name, err)}
	}
	if err := a.store.update(func(d *desired) error { d.EgressGW[p.Name] = p; return nil }); err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.programEgressGW()
}

// EgressGatewayPolicyDelete removes one.
func (a *Agent) EgressGatewayPolicyDelete(ctx context.Context, name string) error {
	err := a.store.update(func(d *desired) error {
		if _, ok := d.EgressGW[name]; !ok {
			return badInput("egress gateway policy %s: not found", name)
		}
		delete(d.EgressGW, name)
		return nil
	})
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.programEgressGW()
}

// EgressGatewayEntries lists the egress gateway map as the datapath holds it.
func (a *Agent) EgressGatewayEntries() ([]dpmaps.EgressGWEntry, error) {
	if a.dp == nil {
		return nil, ErrUnavailable
	}
	return a.dp.dp.EgressGW.List()
}

// programEgressGW computes the egress gateway map from the stored policies, every
// pod of the cluster (this node's endpoints, the other nodes' pods) and the nodes
// with their labels, and writes it; policies without a gateway node are a problem in
// the status. Called with a.mu held (also from programPolicies(): whenever pods or
// nodes change).
func (a *Agent) programEgressGW() error {
	if a.dp == nil || a.cfg == nil || !a.cfg.EnableIPv4EgressGateway {
		return nil
	}
	var pols []egressgw.Policy
	var warns []string
	for _, sp := range a.store.egressGWPolicies() {
		p, err := egressgw.Parse([]byte(sp.YAML))
		if err != nil {
			warns = append(warns, fmt.Sprintf("egress gateway policy %s: %v", sp.Name, err))
			continue
		}
		pols = append(pols, p)
	}
	var pods []egressgw.Pod
	for _, ep := range a.store.endpoints() {
		pods = append(pods, egressgw.Pod{IP: ep.IP, Labels: podLabels(ep.Labels)})
	}
	var nodes []egressgw.Node
	for _, n := range a.store.nodes() {
		nodes = append(nodes, egressgw.Node{Name: n.Name, IP: n.IP, Labels: n.Labels})
		if n.Name == a.opts.Node {
			continue
		}
		for _, p := range n.Pods {
			pods = append(pods, egressgw.Pod{IP: p.IP, Labels: podLabels(p.Labels)})
		}
	}
	entries, w := egressgw.Compute(pols, pods, nodes, a.egressIP)
	warns = append(warns, w...)
	if len(warns) > 0 {
		a.problems["egress-gateway"] = strings.Join(warns, "; ")
	} else {
		delete(a.problems, "egress-gateway")
	}
	out := make([]dpmaps.EgressGWEntry, 0, len(entries))
	for _, e := range entries {
		out = append(out, dpmaps.EgressGWEntry{Pod: e.Pod, Dest: e.Dest, Gateway: e.Gateway, EgressIP: e.EgressIP})
	}
	a.opts.Log.Debug("egress gateway programmed", "policies", len(pols), "entries", len(out))
	return a.dp.dp.EgressGW.Replace(out)
}

// egressIP is the address policy p SNATs to on gateway gw: its egressIP, or on the
// gateway itself the first IPv4 of its interface, or the gateway's node IP. Only the
// gateway reads it.
func (a *Agent) egressIP(p *egressgw.Policy, gw egressgw.Node) netip.Addr {
	if p.EgressIP.IsValid() {
		return p.EgressIP
	}
	if p.Interface != "" && gw.Name == a.opts.Node {
		if dev, err := a.nl.LinkByName(p.Interface); err == nil {
			if addrs, err := a.nl.AddrList(dev, unix.AF_INET); err == nil {
				for _, ad := range addrs {
					if ip, ok := netip.AddrFromSlice(ad.IP.To4()); ok && ad.Scope == int(netlink.SCOPE_UNIVERSE) {
						return ip
					}
				}
			}
		}
		a.problems["egress-gateway-interface"] = fmt.Sprintf("egress gateway policy %s: interface %s has no IPv4 address here: SNAT to the node IP", p.Name, p.Interface)
	}
	return gw.IP
}

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"log/slog"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/maps"
)

// fibResubscribe is how long the watcher waits before subscribing again after a
// netlink socket failed (e.g. ENOBUFS after a burst): events may have been lost, so
// it bumps at once and again once subscribed.
const fibResubscribe = 100 * time.Millisecond

// watchFIB bumps the FIB generation (bump) after every route, neighbour or link
// change of the namespace ns (nil: the caller's), so that forwarding results the BPF
// programs remembered for established flows are looked up again. Bursts coalesce
// without delay: the watcher drains what is queued, then bumps once; an event that
// arrives during a bump causes one more. It bumps once when subscribed (a change
// between the programs' load and the subscription would otherwise go unseen) and
// whenever a subscription ends early. ready (optional) is closed once the first
// subscription is in place. It returns when ctx ends.
func watchFIB(ctx context.Context, ns *netns.NsHandle, bump func(why string), log *slog.Logger, ready chan<- struct{}) {
	for first := true; ctx.Err() == nil; first = false {
		done := make(chan struct{})
		routes := make(chan netlink.RouteUpdate, 256)
		neighs := make(chan netlink.NeighUpdate, 256)
		links := make(chan netlink.LinkUpdate, 64)
		failed := make(chan error, 3)
		onErr := func(err error) {
			select {
			case failed <- err:
			default:
			}
		}
		err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: ns, ErrorCallback: onErr})
		if err == nil {
			err = netlink.NeighSubscribeWithOptions(neighs, done, netlink.NeighSubscribeOptions{Namespace: ns, ErrorCallback: onErr})
		}
		if err == nil {
			err = netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: ns, ErrorCallback: onErr})
		}
		if err != nil {
			close(done)
			log.Warn("fib generation: netlink subscription failed, retrying", "err", err)
			bump("subscription failed")
			if !sleepCtx(ctx, fibResubscribe) {
				return
			}
			continue
		}
		bump("subscribed")
		if first && ready != nil {
			close(ready)
		}
		why := watchEvents(ctx, routes, neighs, links, failed, bump)
		close(done)
		if ctx.Err() != nil {
			return
		}
		log.Warn("fib generation: netlink subscription ended, subscribing again", "why", why)
		bump("subscription ended")
		if !sleepCtx(ctx, fibResubscribe) {
			return
		}
	}
}

// watchEvents bumps after each batch of events until ctx ends or a subscription
// reports an error or closes its channel; it says which.
func watchEvents(ctx context.Context, routes <-chan netlink.RouteUpdate, neighs <-chan netlink.NeighUpdate,
	links <-chan netlink.LinkUpdate, failed <-chan error, bump func(string)) string {
	for {
		var why string
		select {
		case <-ctx.Done():
			return "shutdown"
		case err := <-failed:
			return err.Error()
		case _, ok := <-routes:
			if !ok {
				return "route channel closed"
			}
			why = "route"
		case _, ok := <-neighs:
			if !ok {
				return "neighbour channel closed"
			}
			why = "neighbour"
		case _, ok := <-links:
			if !ok {
				return "link channel closed"
			}
			why = "link"
		}
		// Coalesce what is already queued (one bump covers it), never waiting for more.
	drain:
		for {
			select {
			case _, ok := <-routes:
				if !ok {
					break drain
				}
			case _, ok := <-neighs:
				if !ok {
					break drain
				}
			case _, ok := <-links:
				if !ok {
					break drain
				}
			default:
				break drain
			}
		}
		bump(why)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// bumpGen bumps one slot of dp_gen. A failed bump is logged and retried by the next
// change; it cannot be undone by anything else, so it is at least loud.
func (d *datapath) bumpGen(slot uint32, why string) {
	if d == nil || d.gen == nil {
		return
	}
	if _, err := maps.BumpGeneration(d.gen, slot); err != nil {
		d.log.Error("dp_gen bump failed: remembered forwarding results may be stale", "slot", slot, "why", why, "err", err)
	}
}

// generations reads dp_gen for the status (evidence only: a check must not trust it).
func (d *datapath) generations() *Generations {
	if d == nil || d.gen == nil {
		return nil
	}
	fib, err1 := maps.Generation(d.gen, maps.GenFIB)
	be, err2 := maps.Generation(d.gen, maps.GenBackend)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &Generations{FIB: fib, Backends: be}
}

// SPDX-License-Identifier: Apache-2.0

package hops

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"

	"podpath/internal/capture"
	"podpath/topology"
)

// PathResult is one pod-to-pod packet followed across every hop.
type PathResult struct {
	Src, Dst string
	Hops     []Hop
	Seen     []capture.Packet
	PcapDir  string
}

// PingPath captures on every interface between pods src and dst, sends one ICMP echo
// request from src, and verifies the request crossed every hop in order with the
// expected direction and TTL. Pcaps land in artifacts/<src>-<dst>/.
func PingPath(ctx context.Context, t topology.Cluster, src, dst, artifacts string) (PathResult, error) {
	res := PathResult{Src: src, Dst: dst, PcapDir: filepath.Join(artifacts, src+"-"+dst)}
	hops, err := PodPath(t, src, dst)
	if err != nil {
		return res, err
	}
	res.Hops = hops
	from, _ := t.Pod(src)
	to, _ := t.Pod(dst)
	points, err := PathPoints(t, hops)
	if err != nil {
		return res, err
	}
	session, err := capture.Start(res.PcapDir, points...)
	if err != nil {
		return res, err
	}
	out, pingErr := t.Exec(ctx, src, "ping", "-c", "1", "-W", "2", to.IP.String())
	last := hops[len(hops)-1]
	_, _ = session.WaitFor(ctx, last.Member, last.Interface, capture.ICMPEcho(net.IP(from.IP.AsSlice()), net.IP(to.IP.AsSlice())), 1)
	if err := session.Stop(); err != nil {
		return res, err
	}
	res.Seen, err = VerifyPath(session, hops, capture.ICMPEcho(net.IP(from.IP.AsSlice()), net.IP(to.IP.AsSlice())))
	if pingErr != nil {
		err = errors.Join(fmt.Errorf("ping %s -> %s: %w", src, dst, pingErr), err)
	}
	_ = out
	return res, err
}

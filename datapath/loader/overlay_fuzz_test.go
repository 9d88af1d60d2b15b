// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
)

// overlayFuzz is fuzzProgram for the tunnel paths: node 1 of the overlay fixtures,
// its namespace unnamed once built (a killed worker leaves nothing behind). Every run
// must: be refused by test-run only when the frame is too short for it, return one of
// valid, leave exactly one trace record that agrees with the verdict and names its
// reasons, keep the frame's length unless the record says it was encapsulated
// (+50 + options) or decapsulated (-50 - options), and change no map.
type overlayFuzz struct {
	suffix string
	opts   overlayOpts
	prog   func(*loader.Datapath) *ebpf.Program
	dev    func(*overlayEnv) int
	obs    string
	valid  []testrun.Verdict
	// frame turns the fuzzer's bytes into the frame to run (nil: as they are).
	frame func([]byte) []byte
	seeds [][]byte
}

func (o overlayFuzz) run(f *testing.F) {
	e := newOverlayEnv(f, o.suffix, o.opts)
	fd, err := netns.GetFromPath(e.f.path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fd.Close() })
	if err := nsutil.Delete(e.f.name); err != nil {
		f.Fatal(err)
	}
	nsPath := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(fd))
	n, err := trace.DefaultNames()
	if err != nil {
		f.Fatal(err)
	}
	fe := &fuzzEnv{maps: []*ebpf.Map{e.d.Maps.Endpoints, e.d.Maps.IPCache, e.d.Maps.Nodes}}
	for _, s := range o.seeds {
		f.Add(s)
	}
	prog := o.prog(e.d)
	ctx := e.f.ctx(o.dev(e))
	f.Fuzz(func(t *testing.T, data []byte) {
		if o.frame != nil {
			data = o.frame(data)
		}
		if len(data) > maxFuzzFrame {
			t.Skip("beyond test-run's frame limit")
		}
		before := fe.dump(t)
		var res testrun.Result
		err := nsutil.Do(nsPath, func() (err error) {
			res, err = testrun.RunContext(prog, data, ctx)
			return err
		})
		if err != nil {
			if errors.Is(err, unix.EINVAL) && kernelRejects(data) {
				return
			}
			t.Fatalf("test-run of a %d-byte frame failed: %v", len(data), err)
		}
		if kernelRejects(data) {
			t.Fatalf("the kernel ran a %d-byte frame it used to refuse: update kernelRejects", len(data))
		}
		if !slices.Contains(o.valid, res.Verdict) {
			t.Fatalf("verdict %s, want one of %v", res.Verdict, o.valid)
		}
		recs, err := e.rd.Drain()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Fatalf("want 1 trace record, got %d", len(recs))
		}
		r := recs[0]
		verdict := n.Verdict(r.Verdict)
		_, dropNamed := n.DropReasons[uint64(r.DropReason)]
		_, passNamed := n.PassReasons[uint64(r.PassReason)]
		_, tunnelNamed := n.Tunnels[uint64(r.Tunnel)]
		var consistent bool
		switch res.Verdict {
		case testrun.Shot:
			consistent = verdict == "VERDICT_DROP" && r.DropReason != 0 && r.PassReason == 0
		case testrun.Redirect:
			consistent = (verdict == "VERDICT_REDIRECT" || verdict == "VERDICT_REDIRECT_PEER" || verdict == "VERDICT_REDIRECT_NEIGH") &&
				r.TargetIfindex != 0 && r.DropReason == 0 && r.PassReason == 0
		default:
			consistent = verdict == "VERDICT_PASS" && r.DropReason == 0 && r.TargetIfindex == 0
		}
		if !consistent || n.ObsPoint(r.ObsPoint) != o.obs || r.PktLen != uint32(len(data)) || !dropNamed || !passNamed || !tunnelNamed {
			t.Fatalf("verdict %s but record %s", res.Verdict, n.Format(r))
		}
		switch kind := n.Tunnel(r.Tunnel); {
		case res.Verdict == testrun.Shot:
			// A drop's output is moot.
		case kind == "TRACE_ENCAP_GENEVE" && res.Verdict == testrun.Redirect:
			if len(res.Out) < len(data)+50 || len(res.Out) > len(data)+50+32 {
				t.Fatalf("encapsulated %d bytes into %d", len(data), len(res.Out))
			}
		case kind == "TRACE_DECAP_GENEVE":
			if len(res.Out) > len(data)-50 {
				t.Fatalf("decapsulated %d bytes into %d", len(data), len(res.Out))
			}
		default:
			if len(res.Out) != len(data) {
				t.Fatalf("packet length changed from %d to %d (%s)", len(data), len(res.Out), n.Format(r))
			}
		}
		after := fe.dump(t)
		for i := range before {
			if !maps.Equal(before[i], after[i]) {
				t.Fatalf("map %s changed", fe.maps[i])
			}
		}
	})
}

// geneveSeeds are the decap fixtures' Geneve frames.
func geneveSeeds() [][]byte {
	inner := remotePodToB()
	var seeds [][]byte
	for _, o := range []outer{
		fromNode2(),
		func() outer {
			o := fromNode2()
			o.opts = geneveOpt(0x014B, 0x01, []byte{10, 96, 0, 10, 0, 80, 0, 0})
			return o
		}(),
		func() outer { o := fromNode2(); o.opts = geneveOpt(0x0104, 0x81, []byte{1, 2, 3, 4}); return o }(),
		func() outer { o := fromNode2(); o.gflags = 0x40; return o }(),
		func() outer { o := fromNode2(); o.vni = 0; return o }(),
		func() outer { o := fromNode2(); o.tos = 3; return o }(),
	} {
		seeds = append(seeds, o.wrap(inner.icmpEcho()), o.wrap(inner.tcpSYN()), o.wrap(setTTL(inner.udp(), 1)),
			o.wrap(pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: hostIP}.icmpEcho()),
			o.wrap(pktSpec{srcMAC: remotePodMAC, dstMAC: remoteGwMAC, src: remotePodIP, dst: localNoEPIP}.icmpEcho()),
			o.wrap(arpRequest()))
	}
	return seeds
}

// genevePrefix is a valid outer Ethernet + IPv4 + UDP header from node 2 to node 1's
// Geneve port; withGenevePrefix puts it in front of the fuzzer's bytes with the IPv4
// and UDP lengths (and the IPv4 checksum) matching the frame, so the bytes reach the
// Geneve parser.
func withGenevePrefix(tail []byte) []byte {
	b := fromNode2().wrap(nil)[:42]
	b = append(b, tail...)
	binary.BigEndian.PutUint16(b[16:], uint16(len(b)-14))
	binary.BigEndian.PutUint16(b[38:], uint16(len(b)-34))
	binary.BigEndian.PutUint16(b[24:], ipChecksum(b[14:34]))
	return b
}

func netdevFuzz(suffix string) overlayFuzz {
	return overlayFuzz{
		suffix: suffix, opts: overlayOpts{proto: config.TunnelGeneve},
		prog: func(d *loader.Datapath) *ebpf.Program { return d.FromNetdev },
		dev:  func(e *overlayEnv) int { return e.f.eth0 },
		obs:  "OBS_FROM_NETDEV", valid: []testrun.Verdict{testrun.Next, testrun.Shot, testrun.Redirect},
	}
}

// FuzzGeneveDecap feeds from_netdev (Geneve mode) random bytes behind a valid outer
// Ethernet/IPv4/UDP-6081 header: everything from the Geneve header on is the fuzzer's.
func FuzzGeneveDecap(f *testing.F) {
	fz := netdevFuzz("fuzz-gnv")
	fz.frame = withGenevePrefix
	for _, s := range geneveSeeds() {
		fz.seeds = append(fz.seeds, s[42:])
	}
	fz.run(f)
}

// FuzzFromNetdevGeneve feeds from_netdev (Geneve mode) entirely random frames.
func FuzzFromNetdevGeneve(f *testing.F) {
	fz := netdevFuzz("fuzz-fn-gnv")
	fz.seeds = append(geneveSeeds(), fuzzSeeds()...)
	fz.run(f)
}

// FuzzFromContainerGeneve feeds from_container (Geneve mode, with the test option)
// random frames: encapsulation, passes and drops.
func FuzzFromContainerGeneve(f *testing.F) {
	overlayFuzz{
		suffix: "fuzz-fc-gnv", opts: overlayOpts{proto: config.TunnelGeneve, testOpt: true},
		prog: func(d *loader.Datapath) *ebpf.Program { return d.FromContainer },
		dev:  func(e *overlayEnv) int { return e.f.lxc0 },
		obs:  "OBS_FROM_CONTAINER", valid: []testrun.Verdict{testrun.Pass, testrun.Shot, testrun.Redirect},
		seeds: append(fuzzSeeds(), fromPodA(strangerPodIP).icmpEcho(), fromPodA(farPodIP).tcpSYN()),
	}.run(f)
}

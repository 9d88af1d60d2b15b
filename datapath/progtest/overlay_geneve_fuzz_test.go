// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
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
	// check, when set, adds the path's own rules about a run (IPIP: who may be
	// decapsulated).
	check func(t *testing.T, data []byte, res testrun.Result, r trace.Record)
}

func (o overlayFuzz) run(f *testing.F) {
	e := newOverlayEnv(f, o.suffix, o.opts)
	fe := &fuzzEnv{nsPath: testrun.UnnameNetns(f, e.f.name), rd: e.rd, n: names(f),
		maps: []*ebpf.Map{e.d.Maps.Endpoints, e.d.Maps.IPCache, e.d.Maps.Nodes}}
	for _, s := range o.seeds {
		f.Add(s)
	}
	prog := o.prog(e.d)
	ctx := e.f.ctx(o.dev(e))
	f.Fuzz(func(t *testing.T, data []byte) {
		if o.frame != nil {
			data = o.frame(data)
		}
		before := fe.dump(t)
		res, ok := testrun.RunFuzz(t, fe.nsPath, prog, data, ctx)
		if !ok {
			return
		}
		if !slices.Contains(o.valid, res.Verdict) {
			t.Fatalf("verdict %s, want one of %v", res.Verdict, o.valid)
		}
		r := oneRecord(t, fe.rd)
		if err := testrun.CheckRecord(fe.n, res.Verdict, r, o.obs, len(data)); err != nil {
			t.Fatal(err)
		}
		switch kind := fe.n.Tunnel(r.Tunnel); {
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
		case kind == "TRACE_ENCAP_IPIP" && res.Verdict == testrun.Redirect:
			if len(res.Out) != len(data)-14+20+14 {
				t.Fatalf("ipip-encapsulated %d bytes into %d, want +20", len(data), len(res.Out))
			}
		case kind == "TRACE_DECAP_IPIP":
			if len(res.Out) > len(data)-20 {
				t.Fatalf("ipip-decapsulated %d bytes into %d, want at least 20 fewer", len(data), len(res.Out))
			}
		default:
			if len(res.Out) != len(data) {
				t.Fatalf("packet length changed from %d to %d (%s)", len(data), len(res.Out), fe.n.Format(r))
			}
		}
		if o.check != nil {
			o.check(t, data, res, r)
		}
		fe.unchanged(t, before)
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

// SPDX-License-Identifier: Apache-2.0

package progtest

import (
	"maps"
	"slices"
	"testing"

	"github.com/cilium/ebpf"

	"podpath/datapath/loader"
	pmaps "podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
)

// fuzzEnv is node 1 for a fuzzer: its namespace is unnamed as soon as it is built
// and reached through a file descriptor, so a fuzz worker that is killed leaves
// nothing behind.
type fuzzEnv struct {
	nsPath string
	f      *fibNS
	d      *loader.Datapath
	rd     *trace.Reader
	n      *trace.Names
	maps   []*ebpf.Map
}

func newFuzzEnv(f *testing.F, suffix string) *fuzzEnv {
	f.Helper()
	fib := setupFibNS(f, suffix)
	nsPath := testrun.UnnameNetns(f, fib.name)
	d, rd := loadDatapath(f, fixtureConfig())
	m := d.Maps
	for _, e := range []pmaps.IPCacheEntry{
		{Prefix: netipPrefix("10.244.1.0/24"), Identity: 5},
		{Prefix: netipPrefix("10.244.2.0/24"), Identity: 6, TunnelEndpoint: remotePodIP},
	} {
		if err := m.IPCacheUpsert(e); err != nil {
			f.Fatal(err)
		}
	}
	if err := m.NodeUpsert(pmaps.Node{IP: hostIP, ID: 1}); err != nil {
		f.Fatal(err)
	}
	return &fuzzEnv{nsPath: nsPath, f: fib, d: d, rd: rd, n: names(f), maps: []*ebpf.Map{m.Endpoints, m.IPCache, m.Nodes}}
}

// dump is every map's contents as raw bytes.
func (e *fuzzEnv) dump(t *testing.T) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, m := range e.maps {
		out = append(out, testrun.MapContents(t, m))
	}
	return out
}

// unchanged fails the test when a map differs from its dump before.
func (e *fuzzEnv) unchanged(t *testing.T, before []map[string]string) {
	t.Helper()
	after := e.dump(t)
	for i := range before {
		if !maps.Equal(before[i], after[i]) {
			t.Fatalf("map %s changed", e.maps[i])
		}
	}
}

// fuzzProgram feeds random frames to prog arriving on dev: the kernel either refuses
// a frame it must refuse or runs the program; the verdict is one of valid; exactly
// one trace record says the same as the verdict; the packet keeps its length; and no
// map changes.
func fuzzProgram(f *testing.F, suffix string, prog func(*loader.Datapath) *ebpf.Program, dev func(*fibNS) int,
	obs string, valid ...testrun.Verdict) {
	e := newFuzzEnv(f, suffix)
	for _, seed := range fuzzSeeds() {
		f.Add(seed)
	}
	ctx := e.f.ctx(dev(e.f))
	p := prog(e.d)
	f.Fuzz(func(t *testing.T, data []byte) {
		before := e.dump(t)
		res, ok := testrun.RunFuzz(t, e.nsPath, p, data, ctx)
		if !ok {
			return
		}
		if !slices.Contains(valid, res.Verdict) {
			t.Fatalf("verdict %s, want one of %v", res.Verdict, valid)
		}
		if len(res.Out) != len(data) {
			t.Fatalf("packet length changed from %d to %d", len(data), len(res.Out))
		}
		if err := testrun.CheckRecord(e.n, res.Verdict, oneRecord(t, e.rd), obs, len(data)); err != nil {
			t.Fatal(err)
		}
		e.unchanged(t, before)
	})
}

// fuzzSeeds are the fixtures' frames.
func fuzzSeeds() [][]byte {
	seeds := [][]byte{arpRequest(), ipv6Packet()}
	for _, s := range []pktSpec{
		fromPodA(podBIP), fromPodA(remotePodIP), fromPodA(noNeighPodIP), fromPodA(unreachableIP),
		fromPodA(gatewayIP), fromPodA(hostIP), fromPodA(worldIP), fromUnderlay(podBIP), fromUnderlay(remotePodIP),
	} {
		seeds = append(seeds, s.icmpEcho(), s.tcpSYN(), s.udp(), setTTL(s.icmpEcho(), 1), laterFragment(s.udp()))
	}
	big := fromPodA(remotePodIP)
	big.payload = 1600
	seeds = append(seeds, big.icmpEcho())
	for _, m := range malformed(fromPodA(podBIP).tcpSYN()) {
		seeds = append(seeds, m.pkt)
	}
	return seeds
}

func lxc0(f *fibNS) int { return f.lxc0 }
func eth0(f *fibNS) int { return f.eth0 }

func FuzzFromContainer(f *testing.F) {
	fuzzProgram(f, "fuzz-fc", func(d *loader.Datapath) *ebpf.Program { return d.FromContainer }, lxc0,
		"OBS_FROM_CONTAINER", testrun.Pass, testrun.Shot, testrun.Redirect)
}

func FuzzToContainer(f *testing.F) {
	fuzzProgram(f, "fuzz-tc", func(d *loader.Datapath) *ebpf.Program { return d.ToContainer }, lxc0,
		"OBS_TO_CONTAINER", testrun.Next)
}

func FuzzFromNetdev(f *testing.F) {
	fuzzProgram(f, "fuzz-fn", func(d *loader.Datapath) *ebpf.Program { return d.FromNetdev }, eth0,
		"OBS_FROM_NETDEV", testrun.Next, testrun.Shot, testrun.Redirect)
}

func FuzzToNetdev(f *testing.F) {
	fuzzProgram(f, "fuzz-tn", func(d *loader.Datapath) *ebpf.Program { return d.ToNetdev }, eth0,
		"OBS_TO_NETDEV", testrun.Next)
}

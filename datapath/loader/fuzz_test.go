// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"podpath/datapath/loader"
	pmaps "podpath/datapath/maps"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
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
	fd, err := netns.GetFromPath(fib.path)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { fd.Close() })
	if err := nsutil.Delete(fib.name); err != nil {
		f.Fatal(err)
	}
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
	n, err := trace.DefaultNames()
	if err != nil {
		f.Fatal(err)
	}
	return &fuzzEnv{
		nsPath: fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(fd)), f: fib, d: d, rd: rd, n: n,
		maps: []*ebpf.Map{m.Endpoints, m.IPCache, m.Nodes},
	}
}

// dump is every map's contents as raw bytes.
func (e *fuzzEnv) dump(t *testing.T) []map[string]string {
	t.Helper()
	var out []map[string]string
	for _, m := range e.maps {
		var k, v []byte
		c := map[string]string{}
		it := m.Iterate()
		for it.Next(&k, &v) {
			c[string(k)] = string(v)
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		out = append(out, c)
	}
	return out
}

// kernelRejects says whether BPF_PROG_TEST_RUN refuses the frame before the program
// runs (measured on this kernel: under 14 bytes, IPv4 under 34, IPv6 under 54).
func kernelRejects(b []byte) bool {
	if len(b) < 14 {
		return true
	}
	switch uint16(b[12])<<8 | uint16(b[13]) {
	case 0x0800:
		return len(b) < 34
	case 0x86dd:
		return len(b) < 54
	}
	return false
}

// maxFuzzFrame stays clear of test-run's limit (a page minus head- and tailroom).
const maxFuzzFrame = 3000

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
		if len(data) > maxFuzzFrame {
			t.Skip("beyond test-run's frame limit")
		}
		before := e.dump(t)
		var res testrun.Result
		err := nsutil.Do(e.nsPath, func() (err error) {
			res, err = testrun.RunContext(p, data, ctx)
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
		if !slices.Contains(valid, res.Verdict) {
			t.Fatalf("verdict %s, want one of %v", res.Verdict, valid)
		}
		if len(res.Out) != len(data) {
			t.Fatalf("packet length changed from %d to %d", len(data), len(res.Out))
		}
		recs, err := e.rd.Drain()
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 1 {
			t.Fatalf("want 1 trace record, got %d", len(recs))
		}
		r := recs[0]
		verdict := e.n.Verdict(r.Verdict)
		_, dropNamed := e.n.DropReasons[uint64(r.DropReason)]
		_, passNamed := e.n.PassReasons[uint64(r.PassReason)]
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
		if !consistent || e.n.ObsPoint(r.ObsPoint) != obs || r.PktLen != uint32(len(data)) || !dropNamed || !passNamed {
			t.Fatalf("verdict %s but record %s", res.Verdict, e.n.Format(r))
		}
		after := e.dump(t)
		for i := range before {
			if !maps.Equal(before[i], after[i]) {
				t.Fatalf("map %s changed", e.maps[i])
			}
		}
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

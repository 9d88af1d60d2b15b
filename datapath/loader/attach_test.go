// SPDX-License-Identifier: Apache-2.0

package loader_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/loader/loadertest"
	"podpath/datapath/testrun"
	"podpath/datapath/trace"
	"podpath/internal/nsutil"
)

// vethPair creates namespaces a and b joined by a veth pair (a: 10.250.7.1, b: 10.250.7.2)
// and returns the ifindex of b's end, as seen inside b.
func vethPair(t *testing.T) (nsA, nsB string, ifindexB int) {
	t.Helper()
	nsA, nsB = nsName("probe-a"), nsName("probe-b")
	for _, n := range []string{nsA, nsB} {
		testrun.NewNetns(t, n)
	}
	ha, hb := testrun.NetlinkAt(t, nsA), testrun.NetlinkAt(t, nsB)
	fdB, err := netns.GetFromPath(nsutil.Path(nsB))
	if err != nil {
		t.Fatal(err)
	}
	defer fdB.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "eth0"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(fdB)}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatalf("add veth: %v", err)
	}
	for i, h := range []*netlink.Handle{ha, hb} {
		l, err := h.LinkByName("eth0")
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(fmt.Sprintf("10.250.7.%d/24", i+1))
		if err := h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
		ifindexB = l.Attrs().Index
	}
	return nsA, nsB, ifindexB
}

// The whole chain: load with a constant, attach with tcx inside a namespace, real ping
// traffic, records read from the ring buffer in Go, and a clean detach.
func TestProbeAttachedWithTCXTracesRealTraffic(t *testing.T) {
	objs, rd := loadertest.LoadProbe(t, bpfconfig.Config{NodeId: 42, MonitorAggregation: uint32(bpfobj.LxcMonitorAggregationAGGREGATION_NONE)})
	nsA, nsB, ifindexB := vethPair(t)

	var lnk interface{ Close() error }
	if err := nsutil.Do(nsutil.Path(nsB), func() error {
		l, err := loader.AttachTCX(objs.Probe, ifindexB, loader.Ingress)
		lnk = l
		return err
	}); err != nil {
		t.Fatal(err)
	}
	testrun.Ping(t, nsA, "10.250.7.2", 3)

	src, dst := netip.MustParseAddr("10.250.7.1"), netip.MustParseAddr("10.250.7.2")
	echoes := 0
	deadline := time.Now().Add(2 * time.Second)
	for echoes < 3 && time.Now().Before(deadline) {
		r, err := rd.ReadTimeout(time.Until(deadline))
		if err != nil {
			break
		}
		if r.Pkt.Src == src && r.Pkt.Dst == dst && r.Pkt.ICMPType == 8 {
			if r.NodeID != 42 || r.Ifindex != uint32(ifindexB) {
				t.Errorf("echo record: want node 42 on ifindex %d, got %+v", ifindexB, r)
			}
			echoes++
		}
	}
	if echoes != 3 {
		t.Fatalf("want 3 ICMP echo requests traced at tcx ingress of %s/eth0, got %d", nsB, echoes)
	}

	if err := lnk.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := rd.Drain(); err != nil {
		t.Fatal(err)
	}
	testrun.Ping(t, nsA, "10.250.7.2", 1)
	if r, err := rd.ReadTimeout(300 * time.Millisecond); err != trace.ErrTimeout {
		t.Fatalf("after detach no record should arrive, got %+v (err %v)", r, err)
	}
}

func TestAttachTCXErrorNamesTheHook(t *testing.T) {
	objs, _ := loadertest.LoadProbe(t, bpfconfig.Config{})
	_, err := loader.AttachTCX(objs.Probe, 1<<30, loader.Egress)
	if err == nil {
		t.Fatal("attaching to a missing ifindex should fail")
	}
	if want := "attach tcx egress on ifindex 1073741824"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q should say %q", err, want)
	}
}

// SPDX-License-Identifier: Apache-2.0

package endpoint

import (
	"fmt"
	"net/netip"
	"os"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/internal/nsutil"
	"podpath/internal/testutil"
)

func newNS(t *testing.T, suffix string) (netns.NsHandle, *netlink.Handle) {
	t.Helper()
	name := fmt.Sprintf("pptest-ep-%d-%s", os.Getpid(), suffix)
	if err := nsutil.Create(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nsutil.Delete(name) })
	fd, err := netns.GetFromPath(nsutil.Path(name))
	if err != nil {
		t.Fatal(err)
	}
	h, err := netlink.NewHandleAt(fd)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close(); fd.Close() })
	return fd, h
}

func TestPlumbAndUnplumb(t *testing.T) {
	testutil.RequireRoot(t)
	_, node := newNS(t, "node")
	podFd, pod := newNS(t, "pod")
	v := Veth{HostName: "lxc-test", PodIP: netip.MustParseAddr("10.244.9.10"), MTU: 1450, RouteMTU: 1400, Gateway: netip.MustParseAddr("10.244.9.1")}
	if err := EnsureGateway(node, v.Gateway); err != nil {
		t.Fatal(err)
	}
	if err := EnsureGateway(node, v.Gateway); err != nil {
		t.Fatalf("EnsureGateway must be idempotent: %v", err)
	}
	if err := Plumb(node, podFd, v); err != nil {
		t.Fatal(err)
	}
	eth0, err := pod.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if eth0.Attrs().MTU != 1450 {
		t.Errorf("pod eth0 MTU: want 1450, got %d", eth0.Attrs().MTU)
	}
	routes, _ := pod.RouteList(eth0, netlink.FAMILY_V4)
	var def bool
	for _, r := range routes {
		def = def || (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") && r.Gw.String() == "10.244.9.1" && r.MTU == 1400
	}
	if !def {
		t.Errorf("pod has no default route via 10.244.9.1 with mtu 1400: %v", routes)
	}
	if err := Plumb(node, podFd, v); err == nil {
		t.Error("plumbing the same host veth twice must fail")
	}
	if err := Unplumb(node, v.HostName); err != nil {
		t.Fatal(err)
	}
	if _, err := pod.LinkByName("eth0"); err == nil {
		t.Error("pod eth0 survives Unplumb")
	}
	if err := Unplumb(node, v.HostName); err != nil {
		t.Errorf("Unplumb of a missing link must be a no-op: %v", err)
	}
	if err := Plumb(node, podFd, Veth{HostName: "lxc-x", PodIP: netip.MustParseAddr("::1"), Gateway: v.Gateway}); err == nil {
		t.Error("an IPv6 pod address must be refused")
	}
}

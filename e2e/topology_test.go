// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"podpath/internal/capture"
	"podpath/internal/nsutil"
	"podpath/scenarios/hops"
	"podpath/topology"
	"podpath/topology/catalog"
	"podpath/topology/netns"
)

// upCatalog brings up a catalog topology and registers a Down that also proves no
// namespace with the run's prefix survives it.
func upCatalog(ctx context.Context, name string) topology.Cluster {
	spec, err := catalog.Topology(name)
	Expect(err).NotTo(HaveOccurred())
	t, err := netns.Up(ctx, spec)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func(ctx context.Context) {
		Expect(t.Down(ctx)).To(Succeed())
		Expect(namespacesWithPrefix(t.Prefix())).To(BeEmpty(), "namespaces left after Down")
	})
	return t
}

func namespacesWithPrefix(prefix string) []string {
	names, err := nsutil.List()
	Expect(err).NotTo(HaveOccurred())
	var left []string
	for _, n := range names {
		if strings.HasPrefix(n, prefix) {
			left = append(left, n)
		}
	}
	return left
}

func expectPingPath(ctx context.Context, t topology.Cluster, src, dst string, n int) {
	res, err := hops.PingPath(ctx, t, src, dst, filepath.Join(artifacts, t.Name()))
	Expect(err).NotTo(HaveOccurred(), "ping %s -> %s hop by hop", src, dst)
	Expect(res.Seen).To(HaveLen(n))
	GinkgoWriter.Printf("%s -> %s:\n%s", src, dst, hops.FormatPath(res.Hops, res.Seen))
}

func ip(a interface{ AsSlice() []byte }) net.IP { return net.IP(a.AsSlice()) }

var _ = Describe("L2 two-node topology", Label("topology", "l2"), func() {
	It("carries every pod-to-pod ping over the expected hops and leaves nothing after Down", func(ctx SpecContext) {
		t := upCatalog(ctx, "l2-two-node")
		// Same node: pod eth0 -> host veth -> host veth -> pod eth0.
		expectPingPath(ctx, t, "pod1a", "pod1b", 4)
		// Across the segment: plus node NICs and the two bridge ports.
		expectPingPath(ctx, t, "pod1a", "pod2a", 8)
		expectPingPath(ctx, t, "pod2b", "pod1b", 8)
	})
})

var _ = Describe("routed two-node topology", Label("topology", "routed", "mtu"), func() {
	It("routes pods through r1 and gets frag-needed with the smaller link's MTU", func(ctx SpecContext) {
		t := upCatalog(ctx, "routed-two-node")
		expectPingPath(ctx, t, "pod1", "pod2", 12)
		expectPingPath(ctx, t, "pod2", "pod1", 12)

		pod1, _ := t.Pod("pod1")
		pod2, _ := t.Pod("pod2")
		By("a DF packet that fits segment a's 1500 bytes crosses both ways")
		for _, p := range [][2]string{{"pod1", pod2.IP.String()}, {"pod2", pod1.IP.String()}} {
			out, err := t.Exec(ctx, p[0], "ping", "-c1", "-W2", "-M", "do", "-s", "1472", p[1])
			Expect(err).NotTo(HaveOccurred(), string(out))
		}

		By("a 2028-byte DF packet from the 9000 side is answered by r1 with ICMP frag-needed, MTU 1500")
		r1, _ := t.Interfaces("r1")
		m, _ := t.Member("pod2")
		session, err := capture.Start(filepath.Join(artifacts, t.Name(), "pmtu"), capture.Point{Member: "pod2", Interface: "eth0", NsPath: m.NsPath})
		Expect(err).NotTo(HaveOccurred())
		out, err := t.Exec(ctx, "pod2", "ping", "-c1", "-W2", "-M", "do", "-s", "2000", pod1.IP.String())
		Expect(err).To(HaveOccurred(), "the oversized DF ping must fail, got:\n%s", out)
		Expect(string(out)).To(ContainSubstring("mtu = 1500"))
		fragNeeded := func(p gopacket.Packet) bool {
			icmp, _ := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
			return icmp != nil && icmp.TypeCode == layers.CreateICMPv4TypeCode(3, 4)
		}
		pkts, err := session.WaitFor(ctx, "pod2", "eth0", fragNeeded, 1)
		Expect(session.Stop()).To(Succeed())
		Expect(err).NotTo(HaveOccurred(), "no ICMP frag-needed reached pod2/eth0; pcap %s", session.PcapPath("pod2", "eth0"))
		outer := pkts[0].Decode().Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		icmp := pkts[0].Decode().Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
		Expect(outer.SrcIP.String()).To(BeElementOf(addrs(r1)), "frag-needed must come from r1")
		// RFC 1191: the next-hop MTU is the low 16 bits of the ICMP "rest of header".
		Expect(icmp.Seq).To(BeEquivalentTo(1500), "next-hop MTU in %s", pkts[0].Summary())
		Expect(ip(pod2.IP).Equal(outer.DstIP)).To(BeTrue(), "frag-needed must be addressed to pod2")
	})
})

func addrs(ifs []topology.Interface) []string {
	var out []string
	for _, i := range ifs {
		out = append(out, i.Address.Addr().String())
	}
	return out
}

var _ = Describe("topology lifecycle", Label("topology"), func() {
	It("runs two copies of one spec side by side without collisions", func(ctx SpecContext) {
		a := upCatalog(ctx, "l2-two-node")
		b := upCatalog(ctx, "l2-two-node")
		Expect(a.Prefix()).NotTo(Equal(b.Prefix()))
		expectPingPath(ctx, a, "pod1a", "pod2a", 8)
		expectPingPath(ctx, b, "pod1a", "pod2a", 8)
		Expect(fmt.Sprint(namespacesWithPrefix(a.Prefix()))).NotTo(ContainSubstring(b.Prefix()))
	})
})

// SPDX-License-Identifier: Apache-2.0

package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"image"
	"image/png"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"podpath/scenarios/capture"
	"podpath/scenarios/hops"
	"podpath/topology"
)

// frame describes one fabricated Ethernet/IPv4/ICMP echo frame, optionally inside an
// outer Ethernet/IPv4/UDP/VXLAN envelope.
type frame struct {
	src, dst     string // MACs
	ipSrc, ipDst string
	ttl          uint8
	outer        *frame // non-nil: encapsulate in VXLAN with this outer header
	vni          uint32
}

func (f frame) layers(t *testing.T) []gopacket.SerializableLayer {
	t.Helper()
	mac := func(s string) net.HardwareAddr {
		m, err := net.ParseMAC(s)
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	inner := []gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: mac(f.src), DstMAC: mac(f.dst), EthernetType: layers.EthernetTypeIPv4},
		&layers.IPv4{Version: 4, IHL: 5, TTL: f.ttl, Id: 4242, Protocol: layers.IPProtocolICMPv4,
			SrcIP: net.ParseIP(f.ipSrc).To4(), DstIP: net.ParseIP(f.ipDst).To4()},
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 7, Seq: 1},
		gopacket.Payload(bytes.Repeat([]byte{0xab}, 56)),
	}
	if f.outer == nil {
		return inner
	}
	o := f.outer
	udp := &layers.UDP{SrcPort: 51234, DstPort: capture.VXLANPortLinux}
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: o.ttl, Id: 1, Protocol: layers.IPProtocolUDP,
		SrcIP: net.ParseIP(o.ipSrc).To4(), DstIP: net.ParseIP(o.ipDst).To4()}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	return append([]gopacket.SerializableLayer{
		&layers.Ethernet{SrcMAC: mac(o.src), DstMAC: mac(o.dst), EthernetType: layers.EthernetTypeIPv4},
		ip, udp, &layers.VXLAN{ValidIDFlag: true, VNI: f.vni},
	}, inner...)
}

func (f frame) packet(t *testing.T, member, iface string, outgoing bool, at time.Time) capture.Packet {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, f.layers(t)...); err != nil {
		t.Fatal(err)
	}
	return capture.Packet{Member: member, Interface: iface, Outgoing: outgoing, Timestamp: at,
		Data: buf.Bytes(), Length: len(buf.Bytes())}
}

const (
	macPod1a = "02:00:0a:f4:01:0a"
	macLxc1a = "02:00:0a:f4:01:fe"
	macN1    = "02:00:c0:a8:00:01"
	macN2    = "02:00:c0:a8:00:02"
	macLxc2a = "02:00:0a:f4:02:fe"
	macPod2a = "02:00:0a:f4:02:0a"
)

var testKinds = map[string]topology.Kind{"pod1a": topology.KindPod, "pod2a": topology.KindPod,
	"node1": topology.KindNode, "node2": topology.KindNode, "underlay": topology.KindSegment}

func testKind(m string) topology.Kind { return testKinds[m] }

// nativeFlow fabricates pod1a -> pod2a over native routing with redirect_peer: 6 hops.
// hop is a hop without a MAC check, as the fabricated frames carry made-up ones.
func hop(member, iface string, out bool, ttl uint8) hops.Hop {
	return hops.Hop{Member: member, Interface: iface, Outgoing: out, TTL: ttl}
}

func nativeFlow(t *testing.T, name string, err error, upto int) hops.FlowRecord {
	t0 := time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC)
	plan := []hops.Hop{
		hop("pod1a", "eth0", true, 64), hop("node1", "lxc-pod1a", false, 64),
		hop("node1", "eth1", true, 63), hop("underlay", "node1-eth1", false, 63),
		hop("underlay", "node2-eth1", true, 63), hop("node2", "eth1", false, 63),
		hop("pod2a", "eth0", false, 62),
	}
	const a, b = "10.244.1.10", "10.244.2.10"
	frames := []frame{
		{src: macPod1a, dst: macLxc1a, ipSrc: a, ipDst: b, ttl: 64},
		{src: macPod1a, dst: macLxc1a, ipSrc: a, ipDst: b, ttl: 64},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macN1, dst: macN2, ipSrc: a, ipDst: b, ttl: 63},
		{src: macLxc2a, dst: macPod2a, ipSrc: a, ipDst: b, ttl: 62},
	}
	var seen []capture.Packet
	for i, h := range plan[:upto] {
		seen = append(seen, frames[i].packet(t, h.Member, h.Interface, h.Outgoing, t0.Add(time.Duration(i)*7300*time.Nanosecond)))
	}
	return hops.NewFlowRecord(name, plan, seen, err, hops.FlowOptions{Kind: testKind,
		Pcap: func(h hops.Hop) string {
			return "native-routing/cross-node-L2/" + h.Member + "_" + h.Interface + ".pcap"
		}})
}

// vxlanFlow fabricates pod1a -> node1 underlay -> node2 -> pod2a over VXLAN.
func vxlanFlow(t *testing.T) hops.FlowRecord {
	t0 := time.Date(2025, 1, 1, 12, 0, 1, 0, time.UTC)
	const a, b = "10.244.1.10", "10.244.2.10"
	plan := []hops.Hop{hop("pod1a", "eth0", true, 64), hop("node1", "eth1", true, 63),
		hop("node2", "cilium_vxlan", false, 63), hop("pod2a", "eth0", false, 62)}
	outer := &frame{src: macN1, dst: macN2, ipSrc: "192.168.0.1", ipDst: "192.168.0.2", ttl: 64}
	frames := []frame{
		{src: macPod1a, dst: macLxc1a, ipSrc: a, ipDst: b, ttl: 64},
		{src: macLxc1a, dst: macLxc2a, ipSrc: a, ipDst: b, ttl: 63, outer: outer, vni: 12345},
		{src: macLxc1a, dst: macLxc2a, ipSrc: a, ipDst: b, ttl: 63},
		{src: macLxc2a, dst: macPod2a, ipSrc: a, ipDst: b, ttl: 62},
	}
	var seen []capture.Packet
	for i, h := range plan {
		seen = append(seen, frames[i].packet(t, h.Member, h.Interface, h.Outgoing, t0.Add(time.Duration(i)*11*time.Microsecond)))
	}
	return hops.NewFlowRecord("vxlan: ICMP echo request pod1a -> pod2a", plan, seen, nil, hops.FlowOptions{Kind: testKind})
}

func TestFlowRecordChanges(t *testing.T) {
	f := nativeFlow(t, "L2: ICMP echo request pod1a -> pod2a", nil, 7)
	if !f.Passed() || len(f.Hops) != 7 {
		t.Fatalf("flow %+v", f)
	}
	for _, tc := range []struct {
		hop     int
		program string
		changed []string
		change  string
	}{
		{0, "pod (sends)", nil, ""},
		{1, "from-container (tcx ingress)", nil, ""},
		{2, "to-netdev (tcx egress)", []string{"outer.eth.src", "outer.eth.dst", "outer.ttl"}, "TTL 64 → 63"},
		{3, "bridge", nil, ""},
		{5, "from-netdev (tcx ingress)", nil, ""},
		{6, "pod (receives)", []string{"outer.eth.src", "outer.eth.dst", "outer.ttl"}, "MACs rewritten"},
	} {
		h := f.Hops[tc.hop]
		if h.Program != tc.program {
			t.Errorf("hop %d program %q, want %q", tc.hop, h.Program, tc.program)
		}
		if len(h.Changed) != len(tc.changed) {
			t.Errorf("hop %d changed %v, want %v", tc.hop, h.Changed, tc.changed)
		}
		for _, k := range tc.changed {
			if !h.Changed[k] {
				t.Errorf("hop %d: %s not marked changed: %v", tc.hop, k, h.Changed)
			}
		}
		if tc.change != "" && !strings.Contains(strings.Join(h.Changes, "\n"), tc.change) {
			t.Errorf("hop %d changes %q, want one with %q", tc.hop, h.Changes, tc.change)
		}
	}
	if got := f.Hops[2].Offset; got != 14600*time.Nanosecond {
		t.Errorf("hop 2 offset %s", got)
	}

	v := vxlanFlow(t)
	enc := v.Hops[1]
	if enc.Tunnel != "VXLAN vni=12345" || enc.Inner == nil || enc.Outer.IPSrc != "192.168.0.1" || enc.Inner.TTL != 63 {
		t.Fatalf("encapsulated hop %+v", enc)
	}
	if !strings.HasPrefix(enc.Changes[0], "encapsulated: outer IPv4 192.168.0.1 > 192.168.0.2, UDP 51234 > 8472, VXLAN vni=12345") ||
		!enc.Changed["tunnel"] || !enc.Changed["inner.ttl"] || enc.Changed["inner.ip.src"] {
		t.Errorf("encapsulation changes %q %v", enc.Changes, enc.Changed)
	}
	dec := v.Hops[2]
	if dec.Program != "from-overlay (tcx ingress)" || !strings.HasPrefix(dec.Changes[0], "decapsulated: VXLAN vni=12345") || dec.Changed["outer.ttl"] {
		t.Errorf("decapsulated hop %+v", dec)
	}

	failed := nativeFlow(t, "routed: ICMP echo request pod1a -> pod2a", errors.New("packet not seen at hop 3"), 3)
	states := []string{}
	for _, h := range failed.Hops {
		states = append(states, h.State)
	}
	if got := strings.Join(states, " "); got != "seen seen seen failed unchecked unchecked unchecked" {
		t.Errorf("states of a path failing at hop 3: %s", got)
	}
}

// sampleReport is a conformance report with a passing and a failing scenario, a failed
// check with evidence, and three packet paths (native, VXLAN, failing), with pcaps on disk.
func sampleReport(t *testing.T, dir string) *Report {
	for _, p := range []string{"native-routing/cross-node-L2/pod1a_eth0.pcap", "native-routing/cross-node-L2/node1_eth1.pcap", "vxlan/pod1a_eth0.pcap"} {
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, p), []byte("pcap"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	missing := errors.New("packet not seen at hop 3 underlay/node1-eth1 (in, ttl 63): want ICMPv4 echo-request; seen there:\n  (nothing captured)\npcap: native-routing/cross-node-routed/underlay_node1-eth1.pcap")
	return &Report{
		Dir: dir, Started: time.Date(2025, 1, 1, 12, 0, 0, 0, time.UTC), Duration: 47 * time.Second,
		Scenarios: []ScenarioResult{
			{Name: "native-routing", Labels: []string{"native-routing", "host-routing"}, Passed: 2, Failed: 1, Duration: 31 * time.Second,
				Checks: []CheckResult{
					{Name: "L2: ICMP pod1 -> pod2 (node1 -> node2) delivered", LookedAt: "the ICMP answer from pod2 in pod1", Passed: true, Duration: 812 * time.Millisecond},
					{Name: "L2: echo request crosses 7 hops with the interfaces' MACs and TTL one less per routing hop",
						LookedAt: "captures on every hop: direction, source/destination MAC, IPv4 TTL", Passed: true, Duration: 3 * time.Millisecond},
					{Name: "routed: echo request crosses 11 hops with the interfaces' MACs and TTL one less per routing hop",
						LookedAt: "captures on every hop: direction, source/destination MAC, IPv4 TTL", Passed: false, Evidence: missing.Error(), Duration: 4 * time.Millisecond},
				},
				Flows: []hops.FlowRecord{nativeFlow(t, "L2: ICMP echo request pod1a -> pod2a", nil, 7), nativeFlow(t, "routed: ICMP echo request pod1a -> pod2a", missing, 3)},
			},
			{Name: "vxlan", Labels: []string{"overlay", "vxlan"}, Passed: 5, Duration: 16 * time.Second,
				Checks: []CheckResult{{Name: "vxlan: outer Ethernet/IPv4/UDP 8472, VNI = pod1a's identity", LookedAt: "node1/eth1", Passed: true, Duration: time.Millisecond}},
				Flows:  []hops.FlowRecord{vxlanFlow(t)},
			},
		},
	}
}

func TestReportHTMLRendersInChromium(t *testing.T) {
	dir := t.TempDir()
	rep := sampleReport(t, dir)
	data, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "report.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	// Rendered from report.json, as `podpath report DIR` does.
	back, err := ReadReport(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteReportHTML(dir, back); err != nil {
		t.Fatal(err)
	}
	page := filepath.Join(dir, "report.html")
	html, err := os.ReadFile(page)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<table class="summary"`, `class="path"`, `href="native-routing/cross-node-L2/pod1a_eth0.pcap"`,
		"to-netdev (tcx egress)", "TTL 64 → 63", "encapsulated: outer IPv4", "✗ not seen here", "(nothing captured)"} {
		if !strings.Contains(string(html), want) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	for _, bad := range []string{"<script", "http://", "https://", "<link"} {
		if strings.Contains(string(html), bad) {
			t.Errorf("report.html is not self-contained: has %q", bad)
		}
	}

	chromium := ""
	for _, c := range []string{"/usr/bin/chromium", "chromium", "chromium-browser"} {
		if p, err := exec.LookPath(c); err == nil {
			chromium = p
			break
		}
	}
	if chromium == "" {
		t.Skip("chromium not installed (apt-get install chromium): the page is rendered but not checked in a browser")
	}
	run := func(args ...string) []byte {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, chromium, append([]string{"--headless", "--no-sandbox", "--disable-gpu",
			"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--user-data-dir=" + t.TempDir(), "--window-size=1400,1800"}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v\n%s", cmd, err, stderr.String())
		}
		return out
	}
	url := "file://" + page

	dom := string(run("--dump-dom", url))
	for _, want := range []string{`<table class="summary"`, `<a href="#s0-native-routing">native-routing</a>`, `class="path"`, `class="hop seen"`, `class="hop failed"`} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %s", want)
		}
	}

	shot := filepath.Join(dir, "report.png")
	run("--screenshot="+shot, url)
	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	checkScreenshot(t, img)
	if keep := os.Getenv("PODPATH_REPORT_SCREENSHOT"); keep != "" {
		page2 := strings.TrimSuffix(keep, ".png") + ".html"
		if err := errors.Join(copyFile(shot, keep), copyFile(page, page2)); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (page: %s)", keep, page2)
	}
}

// checkScreenshot wants a full-size picture with real content: many colours, and the
// highlight colour of changed fields and the red of failures somewhere on it.
func checkScreenshot(t *testing.T, img image.Image) {
	t.Helper()
	b := img.Bounds()
	if b.Dx() < 1000 || b.Dy() < 1000 {
		t.Fatalf("screenshot %dx%d, want the 1400x1800 window", b.Dx(), b.Dy())
	}
	colours := map[[3]uint32]int{}
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 8, g >> 8, bl >> 8}]++
		}
	}
	if len(colours) < 50 {
		t.Errorf("screenshot has %d colours: a blank or broken page", len(colours))
	}
	near := func(c [3]uint32, r, g, bl uint32) bool {
		d := func(a, b uint32) uint32 { return max(a, b) - min(a, b) }
		return d(c[0], r) < 8 && d(c[1], g) < 8 && d(c[2], bl) < 8
	}
	var highlight, pass int
	for c, n := range colours {
		if near(c, 0xff, 0xf1, 0xb8) {
			highlight += n
		}
		if near(c, 0xda, 0xfb, 0xe1) {
			pass += n
		}
	}
	if highlight == 0 {
		t.Error("screenshot shows no changed-field highlight: no path diagram on screen")
	}
	if pass == 0 {
		t.Error("screenshot shows no PASS pill: no summary on screen")
	}
}

func copyFile(from, to string) error {
	src, err := os.Open(from)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

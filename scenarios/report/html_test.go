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
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"podpath/scenarios/hops"
	"podpath/scenarios/hops/hopstest"
)

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
				Flows: []hops.FlowRecord{hopstest.NativeFlow(t, "L2: ICMP echo request pod1a -> pod2a", nil, 7), hopstest.NativeFlow(t, "routed: ICMP echo request pod1a -> pod2a", missing, 3)},
			},
			{Name: "vxlan", Labels: []string{"overlay", "vxlan"}, Passed: 5, Duration: 16 * time.Second,
				Checks: []CheckResult{{Name: "vxlan: outer Ethernet/IPv4/UDP 8472, VNI = pod1a's identity", LookedAt: "node1/eth1", Passed: true, Duration: time.Millisecond}},
				Flows:  []hops.FlowRecord{hopstest.VXLANFlow(t)},
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

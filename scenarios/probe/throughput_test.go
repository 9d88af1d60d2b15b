// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"podpath/internal/nsutil"
	"podpath/internal/testutil"
	"podpath/topology"
	"podpath/topology/netns"
)

// A trimmed `iperf3 -c -J` report (iperf 3.12) with the fields ThroughputResult reads.
const iperf3Sample = `{
  "start": {"connecting_to": {"host": "10.250.7.2", "port": 5201}, "tcp_mss_default": 1448,
            "test_start": {"protocol": "TCP", "num_streams": 1, "duration": 5}},
  "intervals": [],
  "end": {
    "sum_sent": {"start": 0, "end": 5.000039, "seconds": 5.000039, "bytes": 17179869184,
                 "bits_per_second": 27487578960.4, "retransmits": 3, "sender": true},
    "sum_received": {"start": 0, "end": 5.000112, "seconds": 5.000112, "bytes": 17170000000,
                     "bits_per_second": 27471690000.1, "sender": true},
    "cpu_utilization_percent": {"host_total": 61.5, "host_user": 1.2, "host_system": 60.3,
                                "remote_total": 38.7, "remote_user": 0.9, "remote_system": 37.8}
  }
}`

func TestParseIPerf3(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    ThroughputResult
		wantErr string
	}{
		{"report", iperf3Sample, ThroughputResult{Seconds: 5.000112, BitsPerSecond: 27471690000.1,
			SenderBitsPerSecond: 27487578960.4, Retransmits: 3, MSS: 1448, ClientCPU: 61.5, ServerCPU: 38.7}, ""},
		{"forced mss", `{"start": {"tcp_mss_default": 1448, "tcp_mss": 1000}, "end": {}}`, ThroughputResult{MSS: 1000}, ""},
		{"iperf3 error", `{"start": {}, "end": {}, "error": "unable to connect to server: Connection refused"}`, ThroughputResult{}, ""},
		{"not json", `iperf3: error - unable to connect`, ThroughputResult{}, "parse iperf3 JSON report"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := parseIPerf3([]byte(tc.in))
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got ThroughputResult
			rep.fill(&got)
			if got != tc.want {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
			if strings.Contains(tc.in, `"error"`) && rep.Error == "" {
				t.Errorf("iperf3 error not carried")
			}
		})
	}
}

// TestVethPair checks the baseline's plumbing and that Down leaves nothing behind, even
// for a Down repeated.
func TestVethPair(t *testing.T) {
	testutil.RequireRoot(t)
	ctx := t.Context()
	p, err := VethPairUp(ctx, 1500)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Down(context.Background()) })
	var out strings.Builder
	cmd := exec.CommandContext(ctx, "ping", "-c1", "-W2", p.B.Addr.Addr().String())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := p.StartCmd("veth-a", cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("ping %s from %s: %v: %s", p.B.Addr, p.A.Netns, err, out.String())
	}
	if err := p.StartCmd("nope", exec.Command("true")); !errors.Is(err, topology.ErrNotFound) {
		t.Errorf("StartCmd(nope) = %v, want ErrNotFound", err)
	}
	if err := p.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Down(ctx); err != nil {
		t.Fatalf("second Down: %v", err)
	}
	if left, err := nsutil.ListPrefix("pp-" + p.ID + "-"); err != nil {
		t.Error(err)
	} else if len(left) > 0 {
		t.Errorf("namespaces left after Down: %v", left)
	}
	if _, err := os.Stat(filepath.Join(netns.StateRoot, p.ID)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("run dir left after Down: %v", err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestGetFlows serves a ring on a unix socket and reads it with the generated client:
// last/first N, a filter, then follow mode receiving a flow added afterwards.
func TestGetFlows(t *testing.T) {
	ring := NewRing(16)
	for i, v := range []flowpb.Verdict{flowpb.Verdict_FORWARDED, flowpb.Verdict_DROPPED, flowpb.Verdict_FORWARDED, flowpb.Verdict_DROPPED} {
		ring.Add(&flowpb.Flow{Verdict: v, NodeName: string(rune('a' + i))})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sock := filepath.Join(t.TempDir(), "hubble.sock")
	srv := NewServer(ring, "node1")
	go srv.Serve(ctx, sock)
	var conn *grpc.ClientConn
	var err error
	for range 50 {
		if conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials())); err == nil {
			if _, err = observerpb.NewObserverClient(conn).ServerStatus(ctx, &observerpb.ServerStatusRequest{}); err == nil {
				break
			}
			conn.Close()
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := observerpb.NewObserverClient(conn)
	read := func(req *observerpb.GetFlowsRequest, n int) string {
		t.Helper()
		st, err := c.GetFlows(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for range n {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("after %q: %v", got, err)
			}
			got += r.GetFlow().GetNodeName()
		}
		return got
	}
	for _, tc := range []struct {
		name string
		req  *observerpb.GetFlowsRequest
		n    int
		want string
	}{
		{"last 2", &observerpb.GetFlowsRequest{Number: 2}, 2, "cd"},
		{"first 3", &observerpb.GetFlowsRequest{Number: 3, First: true}, 3, "abc"},
		{"dropped", &observerpb.GetFlowsRequest{Number: 10, Whitelist: []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}}, 2, "bd"},
	} {
		if got := read(tc.req, tc.n); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
	st, err := c.GetFlows(ctx, &observerpb.GetFlowsRequest{Follow: true, Whitelist: []*flowpb.FlowFilter{{Verdict: []flowpb.Verdict{flowpb.Verdict_DROPPED}}}})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		ring.Add(&flowpb.Flow{Verdict: flowpb.Verdict_FORWARDED, NodeName: "e"})
		ring.Add(&flowpb.Flow{Verdict: flowpb.Verdict_DROPPED, NodeName: "f"})
	}()
	r, err := st.Recv()
	if err != nil || r.GetFlow().GetNodeName() != "f" {
		t.Fatalf("follow: got %v, %v; want the new dropped flow f", r, err)
	}
	s, err := c.ServerStatus(ctx, &observerpb.ServerStatusRequest{})
	if err != nil || s.GetNumFlows() != 6 || s.GetMaxFlows() != 16 || s.GetSeenFlows() != 6 {
		t.Fatalf("status %v, %v", s, err)
	}
}

// SPDX-License-Identifier: Apache-2.0

package hubble

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	flowpb "github.com/cilium/cilium/api/v1/flow"
	observerpb "github.com/cilium/cilium/api/v1/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	"podpath/internal/version"
)

// Server is Hubble's Observer service over a Ring: GetFlows and ServerStatus (plus
// gRPC health, which hubble status asks); the other calls answer Unimplemented.
type Server struct {
	observerpb.UnimplementedObserverServer
	Ring     *Ring
	NodeName string
	started  time.Time
}

// NewServer serves ring's flows as node's.
func NewServer(ring *Ring, node string) *Server {
	return &Server{Ring: ring, NodeName: node, started: time.Now()}
}

// ServerStatus reports the ring's fill, the flows seen and the uptime.
func (s *Server) ServerStatus(context.Context, *observerpb.ServerStatusRequest) (*observerpb.ServerStatusResponse, error) {
	held, capacity, seen := s.Ring.Stats()
	return &observerpb.ServerStatusResponse{NumFlows: held, MaxFlows: capacity, SeenFlows: seen,
		UptimeNs: uint64(time.Since(s.started)), Version: "podpath " + version.String()}, nil
}

// GetFlows sends the flows held that pass the filters (the last Number, or the first
// Number with First, all when 0 without Follow), then, with Follow, every new one
// until the client goes.
func (s *Server) GetFlows(req *observerpb.GetFlowsRequest, stream grpc.ServerStreamingServer[observerpb.GetFlowsResponse]) error {
	ctx := stream.Context()
	held, seq, wake := s.Ring.Snapshot()
	var picked []*flowpb.Flow
	for _, f := range held {
		if s.keep(req, f) {
			picked = append(picked, f)
		}
	}
	n := req.GetNumber()
	if n == 0 && req.GetFollow() && !req.GetFirst() && req.GetSince() == nil {
		picked = nil // follow alone: only new flows, as hubble observe -f
	}
	if n > 0 && uint64(len(picked)) > n {
		if req.GetFirst() {
			picked = picked[:n]
		} else {
			picked = picked[uint64(len(picked))-n:]
		}
	}
	for _, f := range picked {
		if err := s.send(stream, f); err != nil {
			return err
		}
	}
	if !req.GetFollow() {
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-wake:
		}
		var fresh []*flowpb.Flow
		fresh, seq, wake = s.Ring.Since(seq)
		for _, f := range fresh {
			if !s.keep(req, f) {
				continue
			}
			if err := s.send(stream, f); err != nil {
				return err
			}
		}
	}
}

func (s *Server) keep(req *observerpb.GetFlowsRequest, f *flowpb.Flow) bool {
	t := f.GetTime().AsTime()
	if since := req.GetSince(); since != nil && t.Before(since.AsTime()) {
		return false
	}
	if until := req.GetUntil(); until != nil && t.After(until.AsTime()) {
		return false
	}
	return Matches(f, req.GetWhitelist(), req.GetBlacklist())
}

func (s *Server) send(stream grpc.ServerStreamingServer[observerpb.GetFlowsResponse], f *flowpb.Flow) error {
	return stream.Send(&observerpb.GetFlowsResponse{
		ResponseTypes: &observerpb.GetFlowsResponse_Flow{Flow: f},
		NodeName:      s.NodeName,
		Time:          timestamppb.New(f.GetTime().AsTime()),
	})
}

// observerHealthName is the service name hubble status asks the health service about
// (Cilium's pkg/hubble/api/v1 ObserverServiceName, not the gRPC service's own name).
const observerHealthName = "hubble.server.Observer"

// Serve listens on the unix socket path (replacing a stale one) and serves until ctx
// ends.
func (s *Server) Serve(ctx context.Context, path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("hubble socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("hubble socket: %w", err)
	}
	g := grpc.NewServer()
	observerpb.RegisterObserverServer(g, s)
	// hubble status asks the gRPC health service first.
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(observerHealthName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, hs)
	go func() { <-ctx.Done(); g.Stop() }()
	if err := g.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("hubble serve: %w", err)
	}
	return nil
}

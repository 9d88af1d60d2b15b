// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"podpath/datapath/agent"
	"podpath/internal/strictyaml"
	"podpath/scenarios"
	"podpath/scenarios/probe"
)

func init() {
	scenarios.RegisterStep(scenarios.StepDef[udpCycleWith, udpCycleExpect]{
		Name: "udp-server-cycle",
		Summary: "UDP conntrack when the server pod is replaced (Kubernetes e2e \"should be able to preserve UDP traffic when " +
			"server pod cycles\"): a client sends continuously from one source port to a whoami service; its only backend pod is " +
			"deleted (endpoint removed from its agent) and another pod becomes the backend; the same flow reaches the new pod " +
			"within expect.withinSeconds (stale conntrack entries to the removed backend must not blackhole it)",
		Agents: true,
		With:   udpCycleWith{Frontend: "clusterIP", IntervalMs: 100},
		Expect: udpCycleExpect{WithinSeconds: 3},
		Run:    runUDPServerCycle,
	})
}

type udpCycleWith struct {
	From       scenarios.MemberRef  `json:"from" required:"true" doc:"the pod or client that sends"`
	Service    scenarios.ServiceRef `json:"service" required:"true" doc:"a UDP service with server whoami and exactly one backend: the pod that is replaced"`
	Frontend   string               `json:"frontend" oneOf:"clusterIP,nodePort" doc:"the address dialled: the ClusterIP, or node's InternalIP at the NodePort"`
	Node       scenarios.NodeRef    `json:"node" doc:"with frontend nodePort: the node dialled"`
	NewPod     scenarios.PodRef     `json:"newPod" required:"true" doc:"the pod that becomes the backend (a whoami server is started in it on the backend's port)"`
	IntervalMs int                  `json:"intervalMs" range:"10..1000" doc:"between datagrams"`
}

type udpCycleExpect struct {
	WithinSeconds float64 `json:"withinSeconds" range:"0.1..60" doc:"from the service update until the flow's first answer from the new pod"`
}

func (w *udpCycleWith) Validate(e strictyaml.FieldErrors) {
	if (w.Frontend == "nodePort") != (w.Node != "") {
		e.Add("node", "want a node with frontend nodePort, and none with %s", w.Frontend)
	}
	svc := scenarios.DecodingStage(e).Service(w.Service)
	if svc == nil {
		return
	}
	if svc.Protocol != "UDP" || svc.Server != "whoami" || len(svc.Backends) != 1 || w.Frontend == "nodePort" && svc.NodePort == 0 {
		e.Add("service", "service %s is %s with server %q and %d backends: want a UDP whoami service with one backend (and a nodePort with frontend nodePort)",
			w.Service, svc.Protocol, svc.Server, len(svc.Backends))
		return
	}
	if svc.Backends[0].Pod == w.NewPod || w.NewPod == scenarios.PodRef(w.From) {
		e.Add("newPod", "%s is the service's backend or the client: want another pod", w.NewPod)
	}
}

// udpAnswer is one answer the client got: when, and the pod that sent it.
type udpAnswer struct {
	at  time.Time
	pod string
}

// udpFlow sends a datagram every interval from one connected socket (one source
// port for the whole run) and records the answers.
type udpFlow struct {
	mu      sync.Mutex
	answers []udpAnswer
	sport   uint16
	stop    chan struct{}
	done    chan error
}

func (f *udpFlow) since(t time.Time, pod string) (time.Time, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range f.answers {
		if !a.at.Before(t) && a.pod == pod {
			return a.at, true
		}
	}
	return time.Time{}, false
}

func (f *udpFlow) count(pod string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.answers {
		if a.pod == pod {
			n++
		}
	}
	return n
}

// tail is the last n answers, for evidence.
func (f *udpFlow) tail(n int, t0 time.Time) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.answers[max(0, len(f.answers)-n):] {
		out = append(out, fmt.Sprintf("%+.2fs %s", a.at.Sub(t0).Seconds(), a.pod))
	}
	return fmt.Sprintf("%d answers in all; the last: %s", len(f.answers), strings.Join(out, ", "))
}

func startUDPFlow(s *scenarios.Stage, from string, dst netip.AddrPort, interval time.Duration) (*udpFlow, error) {
	f := &udpFlow{stop: make(chan struct{}), done: make(chan error, 1)}
	ready := make(chan error, 1)
	go func() {
		f.done <- s.T.Do(from, func() error {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
			if err == nil {
				err = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: int64(interval / time.Microsecond)})
			}
			if err == nil {
				err = unix.Connect(fd, &unix.SockaddrInet4{Port: int(dst.Port()), Addr: dst.Addr().As4()})
			}
			if err == nil {
				var sa unix.Sockaddr
				if sa, err = unix.Getsockname(fd); err == nil {
					f.sport = uint16(sa.(*unix.SockaddrInet4).Port)
				}
			}
			ready <- err
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			buf := make([]byte, 256)
			for i := 0; ; i++ {
				select {
				case <-f.stop:
					return nil
				default:
				}
				// ECONNREFUSED (an ICMP error while nobody serves) is no reason to stop.
				_, _ = unix.Write(fd, []byte(fmt.Sprintf("podpath udp-server-cycle %d", i)))
				deadline := time.Now().Add(interval)
				for time.Now().Before(deadline) {
					n, err := unix.Read(fd, buf)
					if err != nil {
						if errors.Is(err, unix.EAGAIN) {
							break
						}
						time.Sleep(time.Until(deadline))
						break
					}
					f.mu.Lock()
					f.answers = append(f.answers, udpAnswer{time.Now(), string(buf[:n])})
					f.mu.Unlock()
				}
			}
		})
	}()
	return f, <-ready
}

// runUDPServerCycle: the flow reaches the old pod, the old pod is removed from its
// agent and the service points at the new pod, and the same flow (same socket, same
// source port) must reach the new pod in time. The old pod and the service are
// restored afterwards for the steps that follow.
func runUDPServerCycle(ctx context.Context, s *scenarios.Stage, w udpCycleWith, e udpCycleExpect) error {
	agents, err := s.Agents()
	if err != nil {
		return err
	}
	svc := s.Services[string(w.Service)]
	dst, err := frontend(s.T, svc, w.Frontend, string(w.Node))
	if err != nil {
		return err
	}
	oldBE := svc.Backends[0]
	oldPod, ok := podByIP(s.T, oldBE.IP)
	if !ok {
		return fmt.Errorf("service %s: backend %s is no pod", svc.Name, oldBE.IP)
	}
	newPod, err := s.T.Pod(string(w.NewPod))
	if err != nil {
		return err
	}
	srv, err := probe.StartWhoami(s.T, probe.UDP, newPod.Name, oldBE.Port)
	if err != nil {
		return err
	}
	defer srv.Close()
	interval := time.Duration(w.IntervalMs) * time.Millisecond
	flow, err := startUDPFlow(s, string(w.From), dst, interval)
	if err != nil {
		return fmt.Errorf("udp flow from %s to %s: %w", w.From, dst, err)
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		close(flow.stop)
		return <-flow.done
	}
	defer stop()

	what := fmt.Sprintf("udp server cycle: %s -> %s (%s)", w.From, dst, w.Frontend)
	t0 := time.Now()
	var beforeErr error
	for flow.count(oldPod.Name) < 3 {
		if time.Since(t0) > 5*time.Second {
			beforeErr = fmt.Errorf("fewer than 3 answers from %s within 5 s: %s", oldPod.Name, flow.tail(10, t0))
			break
		}
		time.Sleep(interval)
	}
	s.Check(what+": before, the flow from one source port reaches the backend "+oldPod.Name,
		"whoami answers on the client's connected UDP socket", beforeErr)

	// The server pod is deleted (CNI DEL: its endpoint leaves the agent), and the
	// Service's endpoints name the new pod.
	if err := agents.Client(oldPod.Node).EndpointDelete(ctx, oldPod.Name); err != nil {
		return fmt.Errorf("delete %s from %s's agent: %w", oldPod.Name, oldPod.Node, err)
	}
	next := svc
	next.Backends = []agent.ServiceBackend{{IP: newPod.IP, Port: oldBE.Port}}
	if err := s.ServiceUpsert(ctx, next); err != nil {
		return err
	}
	t1 := time.Now()
	within := time.Duration(e.WithinSeconds * float64(time.Second))
	var afterErr error
	var took time.Duration
	for {
		if at, ok := flow.since(t1, newPod.Name); ok {
			took = at.Sub(t1)
			break
		}
		if time.Since(t1) > within {
			afterErr = fmt.Errorf("no answer from %s within %s of the update: %s", newPod.Name, within, flow.tail(10, t1))
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if afterErr == nil && took > within {
		afterErr = fmt.Errorf("the first answer from %s came %s after the update, more than %s", newPod.Name, took, within)
	}
	if afterErr == nil {
		s.Progress("%s: the flow (source port %d) reached %s %s after the update", what, flow.sport, newPod.Name, took.Round(time.Millisecond))
	}
	s.Check(fmt.Sprintf("%s: after %s is replaced by %s, the same flow (one source port) reaches %s within %gs", what, oldPod.Name, newPod.Name, newPod.Name, e.WithinSeconds),
		"whoami answers on the client's connected UDP socket, timed from the service update", afterErr)
	stopErr := stop()
	if afterErr == nil && stopErr != nil {
		s.Check(what+": the client's socket works throughout", "the client's UDP socket", stopErr)
	}

	// Restore: the old pod back on its agent, the service as it was.
	restore := errors.Join(agents.Client(oldPod.Node).EndpointAdd(ctx, agents.Endpoint(oldPod)), s.ServiceUpsert(ctx, svc))
	if restore != nil {
		return fmt.Errorf("restore %s and service %s: %w", oldPod.Name, svc.Name, restore)
	}
	return nil
}

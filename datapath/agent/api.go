// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"time"
)

// InputError is a request the agent refuses as invalid (HTTP 400); anything else that
// fails is the agent's own problem (HTTP 500).
type InputError struct{ Err error }

func (e *InputError) Error() string { return e.Err.Error() }
func (e *InputError) Unwrap() error { return e.Err }

func badInput(format string, args ...any) error {
	return &InputError{Err: fmt.Errorf(format, args...)}
}

var (
	// ErrNotFound: the object asked for does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrUnavailable: something the agent needs is not there yet; try again later
	// (HTTP 503).
	ErrUnavailable = errors.New("unavailable, try again later")
)

// handler serves the agent's API (HTTP+JSON over a unix socket):
//
//	GET    /v1/status
//	GET    /v1/endpoints          PUT/DELETE /v1/endpoints/{name}
//	GET    /v1/nodes              PUT/DELETE /v1/nodes/{name}
//	GET    /v1/services           PUT/DELETE /v1/services/{name}
//	PUT    /v1/bgp/policy         GET /v1/bgp/peers, /v1/bgp/routes (bgp.go)
//	GET    /v1/policies           PUT/DELETE /v1/policies/{name}
//	/v1/attachments...            the CNI side (attachmentRoutes)
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.Status(), nil)
	})
	mux.HandleFunc("GET /v1/endpoints", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.store.endpoints(), nil)
	})
	mux.HandleFunc("PUT /v1/endpoints/{name}", func(w http.ResponseWriter, r *http.Request) {
		var ep Endpoint
		if err := decode(r, &ep); err != nil {
			reply(w, nil, err)
			return
		}
		if ep.Name != r.PathValue("name") {
			reply(w, nil, badInput("endpoint name %q in the body differs from %q in the path", ep.Name, r.PathValue("name")))
			return
		}
		reply(w, nil, a.EndpointAdd(r.Context(), ep))
	})
	mux.HandleFunc("DELETE /v1/endpoints/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.EndpointDelete(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.store.nodes(), nil)
	})
	mux.HandleFunc("PUT /v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		var n Node
		if err := decode(r, &n); err != nil {
			reply(w, nil, err)
			return
		}
		if n.Name != r.PathValue("name") {
			reply(w, nil, badInput("node name %q in the body differs from %q in the path", n.Name, r.PathValue("name")))
			return
		}
		reply(w, nil, a.NodeUpsert(r.Context(), n))
	})
	mux.HandleFunc("DELETE /v1/nodes/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.NodeDelete(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("GET /v1/services", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.store.services(), nil)
	})
	mux.HandleFunc("PUT /v1/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		var s Service
		if err := decode(r, &s); err != nil {
			reply(w, nil, err)
			return
		}
		if s.Name != r.PathValue("name") {
			reply(w, nil, badInput("service name %q in the body differs from %q in the path", s.Name, r.PathValue("name")))
			return
		}
		reply(w, a.serviceWarnings([]Service{s}), a.ServiceUpsert(r.Context(), s))
	})
	mux.HandleFunc("PUT /v1/services", func(w http.ResponseWriter, r *http.Request) {
		var list []Service
		if err := decodeLimit(r, &list, maxBulkBody); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, a.serviceWarnings(list), a.ServicesUpsert(r.Context(), list))
	})
	mux.HandleFunc("DELETE /v1/services/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.ServiceDelete(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("GET /v1/policies", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.store.policies(), nil)
	})
	mux.HandleFunc("PUT /v1/policies/{name}", func(w http.ResponseWriter, r *http.Request) {
		var p Policy
		if err := decode(r, &p); err != nil {
			reply(w, nil, err)
			return
		}
		if p.Name != r.PathValue("name") {
			reply(w, nil, badInput("policy name %q in the body differs from %q in the path", p.Name, r.PathValue("name")))
			return
		}
		reply(w, nil, a.PolicyUpsert(r.Context(), p))
	})
	mux.HandleFunc("DELETE /v1/policies/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.PolicyDelete(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("GET /v1/egress-gateway-policies", func(w http.ResponseWriter, r *http.Request) {
		reply(w, a.store.egressGWPolicies(), nil)
	})
	mux.HandleFunc("PUT /v1/egress-gateway-policies/{name}", func(w http.ResponseWriter, r *http.Request) {
		var p Policy
		if err := decode(r, &p); err != nil {
			reply(w, nil, err)
			return
		}
		if p.Name != r.PathValue("name") {
			reply(w, nil, badInput("egress gateway policy name %q in the body differs from %q in the path", p.Name, r.PathValue("name")))
			return
		}
		reply(w, nil, a.EgressGatewayPolicyUpsert(r.Context(), p))
	})
	mux.HandleFunc("DELETE /v1/egress-gateway-policies/{name}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.EgressGatewayPolicyDelete(r.Context(), r.PathValue("name")))
	})
	mux.HandleFunc("GET /v1/egress-gateway", func(w http.ResponseWriter, r *http.Request) {
		es, err := a.EgressGatewayEntries()
		reply(w, es, err)
	})
	mux.HandleFunc("PUT /v1/bgp/policy", func(w http.ResponseWriter, r *http.Request) {
		var p BGPPeeringPolicy
		if err := decode(r, &p); err != nil {
			reply(w, nil, err)
			return
		}
		reply(w, nil, a.BGPPolicySet(r.Context(), p))
	})
	mux.HandleFunc("GET /v1/bgp/peers", func(w http.ResponseWriter, r *http.Request) {
		peers, err := a.BGPPeers(r.Context())
		reply(w, peers, err)
	})
	mux.HandleFunc("GET /v1/bgp/routes", func(w http.ResponseWriter, r *http.Request) {
		routes, err := a.BGPRoutes()
		reply(w, routes, err)
	})
	a.attachmentRoutes(mux)
	return mux
}

// maxBulkBody bounds a bulk request: 10,000 services of 10 backends are about 4 MiB.
const maxBulkBody = 64 << 20

// ServiceReply is the API's answer to a service upsert: what of the services podpath
// does not do as written (Service.Warnings); nil when there is nothing to say.
type ServiceReply struct {
	Warnings []string `json:"warnings"`
}

func (a *Agent) serviceWarnings(list []Service) any {
	var r ServiceReply
	for i := range list {
		r.Warnings = append(r.Warnings, list[i].Warnings()...)
		r.Warnings = append(r.Warnings, list[i].TopologyWarnings(a.cfg.ServiceTopology, a.opts.Zone)...)
	}
	if len(r.Warnings) == 0 {
		return nil
	}
	return r
}

func decode(r *http.Request, v any) error { return decodeLimit(r, v, 1<<20) }

func decodeLimit(r *http.Request, v any, limit int64) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badInput("decode request body: %v", err)
	}
	return nil
}

type apiError struct {
	Error string `json:"error"`
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	var in *InputError
	switch {
	case errors.As(err, &in):
		w.WriteHeader(http.StatusBadRequest)
		_ = json.NewEncoder(w).Encode(apiError{err.Error()})
	case errors.Is(err, ErrNotFound):
		w.WriteHeader(http.StatusNotFound)
		_ = json.NewEncoder(w).Encode(apiError{err.Error()})
	case errors.Is(err, ErrUnavailable):
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(apiError{err.Error()})
	case err != nil:
		w.WriteHeader(http.StatusInternalServerError)
		_ = json.NewEncoder(w).Encode(apiError{err.Error()})
	case v == nil:
		w.WriteHeader(http.StatusNoContent)
	default:
		_ = json.NewEncoder(w).Encode(v)
	}
}

// serve listens on the unix socket until ctx ends.
func (a *Agent) serve(ctx context.Context, socket string) error {
	_ = os.Remove(socket)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", socket, err)
	}
	srv := &http.Server{Handler: a.handler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve API: %w", err)
	}
	return nil
}

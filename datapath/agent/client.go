// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"podpath/datapath/maps"
)

// Client talks to an agent's API socket.
type Client struct {
	Socket string
	http   *http.Client
}

// NewClient returns a client for the agent listening on socket.
func NewClient(socket string) *Client {
	return &Client{Socket: socket, http: &http.Client{
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		}},
	}}
}

// defaultTimeout bounds a call whose context has no deadline of its own.
const defaultTimeout = 30 * time.Second

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultTimeout)
		defer cancel()
	}
	var body io.Reader
	if in != nil {
		data, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("agent API %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e apiError
		_ = json.NewDecoder(resp.Body).Decode(&e)
		switch resp.StatusCode {
		case http.StatusBadRequest:
			return &InputError{Err: fmt.Errorf("%s", e.Error)}
		case http.StatusNotFound:
			return fmt.Errorf("agent API %s %s: %s: %w", method, path, e.Error, ErrNotFound)
		case http.StatusServiceUnavailable:
			return fmt.Errorf("agent API %s %s: %s: %w", method, path, e.Error, ErrUnavailable)
		}
		return fmt.Errorf("agent API %s %s: %s: %s", method, path, resp.Status, e.Error)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// Status returns the agent's status (GET /v1/status).
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, http.MethodGet, "/v1/status", nil, &s)
}

// EndpointAdd plumbs and registers a pod (PUT /v1/endpoints/NAME).
func (c *Client) EndpointAdd(ctx context.Context, ep Endpoint) error {
	return c.do(ctx, http.MethodPut, "/v1/endpoints/"+url.PathEscape(ep.Name), ep, nil)
}

// EndpointDelete unplumbs a pod and removes its map entries.
func (c *Client) EndpointDelete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/endpoints/"+url.PathEscape(name), nil, nil)
}

// EndpointList returns the desired endpoints.
func (c *Client) EndpointList(ctx context.Context) ([]Endpoint, error) {
	var eps []Endpoint
	return eps, c.do(ctx, http.MethodGet, "/v1/endpoints", nil, &eps)
}

// NodeUpsert adds or updates a cluster node (PUT /v1/nodes/NAME).
func (c *Client) NodeUpsert(ctx context.Context, n Node) error {
	return c.do(ctx, http.MethodPut, "/v1/nodes/"+url.PathEscape(n.Name), n, nil)
}

// NodeDelete removes a node: its ipcache entries, node map entry and routes.
func (c *Client) NodeDelete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/nodes/"+url.PathEscape(name), nil, nil)
}

// NodeList returns the desired nodes.
func (c *Client) NodeList(ctx context.Context) ([]Node, error) {
	var ns []Node
	return ns, c.do(ctx, http.MethodGet, "/v1/nodes", nil, &ns)
}

// WaitReady polls the socket until the agent answers or ctx ends.
func (c *Client) WaitReady(ctx context.Context) (Status, error) {
	for {
		s, err := c.Status(ctx)
		if err == nil {
			return s, nil
		}
		select {
		case <-ctx.Done():
			return Status{}, fmt.Errorf("agent at %s not ready: %w (last error: %v)", c.Socket, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ServiceUpsert adds or updates a service (PUT /v1/services/NAME).
func (c *Client) ServiceUpsert(ctx context.Context, s Service) error {
	return c.do(ctx, http.MethodPut, "/v1/services/"+url.PathEscape(s.Name), s, nil)
}

// ServicesUpsert records and programs many services in one request (PUT /v1/services).
// Without a deadline in ctx it waits up to 5 minutes: 10,000 services take seconds.
func (c *Client) ServicesUpsert(ctx context.Context, list []Service) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
	}
	return c.do(ctx, http.MethodPut, "/v1/services", list, nil)
}

// ServiceDelete removes a service's frontends and unused backends.
func (c *Client) ServiceDelete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/services/"+url.PathEscape(name), nil, nil)
}

// BGPPolicySet applies a BGP peering policy (PUT /v1/bgp/policy).
func (c *Client) BGPPolicySet(ctx context.Context, p BGPPeeringPolicy) error {
	return c.do(ctx, http.MethodPut, "/v1/bgp/policy", p, nil)
}

// BGPPeers lists the agent's BGP sessions (GET /v1/bgp/peers).
func (c *Client) BGPPeers(ctx context.Context) ([]BGPPeerStatus, error) {
	var out []BGPPeerStatus
	return out, c.do(ctx, http.MethodGet, "/v1/bgp/peers", nil, &out)
}

// BGPRoutes lists the routes BGP installed in the node's table (GET /v1/bgp/routes).
func (c *Client) BGPRoutes(ctx context.Context) ([]BGPRoute, error) {
	var out []BGPRoute
	return out, c.do(ctx, http.MethodGet, "/v1/bgp/routes", nil, &out)
}

// PolicyUpsert records and programs a network policy (PUT /v1/policies/{name}).
func (c *Client) PolicyUpsert(ctx context.Context, p Policy) error {
	return c.do(ctx, http.MethodPut, "/v1/policies/"+url.PathEscape(p.Name), p, nil)
}

// EgressGatewayPolicyUpsert records a CiliumEgressGatewayPolicy (PUT
// /v1/egress-gateway-policies/{name}).
func (c *Client) EgressGatewayPolicyUpsert(ctx context.Context, p Policy) error {
	return c.do(ctx, http.MethodPut, "/v1/egress-gateway-policies/"+url.PathEscape(p.Name), p, nil)
}

// EgressGatewayPolicyDelete removes one (DELETE /v1/egress-gateway-policies/{name}).
func (c *Client) EgressGatewayPolicyDelete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/egress-gateway-policies/"+url.PathEscape(name), nil, nil)
}

// EgressGatewayEntries lists the egress gateway map (GET /v1/egress-gateway).
func (c *Client) EgressGatewayEntries(ctx context.Context) ([]maps.EgressGWEntry, error) {
	var out []maps.EgressGWEntry
	err := c.do(ctx, http.MethodGet, "/v1/egress-gateway", nil, &out)
	return out, err
}

// PolicyDelete removes a network policy (DELETE /v1/policies/{name}).
func (c *Client) PolicyDelete(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodDelete, "/v1/policies/"+url.PathEscape(name), nil, nil)
}

// Policies lists the recorded policies (GET /v1/policies).
func (c *Client) Policies(ctx context.Context) ([]Policy, error) {
	var out []Policy
	err := c.do(ctx, http.MethodGet, "/v1/policies", nil, &out)
	return out, err
}

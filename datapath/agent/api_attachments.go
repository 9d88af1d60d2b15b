// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"net/http"
	"net/url"
)

// attachmentRoutes serves the CNI side of the API (podpath-cni is its client):
//
//	GET    /v1/attachments
//	PUT    /v1/attachments/{containerID}/{ifName}      CNI ADD: body AttachmentRequest
//	GET    /v1/attachments/{containerID}/{ifName}      CNI CHECK (404: unknown)
//	DELETE /v1/attachments/{containerID}/{ifName}      CNI DEL (unknown: 204 too)
//	POST   /v1/attachments-gc                          CNI GC: body {"keep": [AttachmentKey]}
func (a *Agent) attachmentRoutes(mux *http.ServeMux) {
	key := func(r *http.Request) AttachmentKey {
		return AttachmentKey{ContainerID: r.PathValue("containerID"), IfName: r.PathValue("ifName")}
	}
	mux.HandleFunc("GET /v1/attachments", func(w http.ResponseWriter, r *http.Request) {
		atts, err := a.AttachmentList(r.Context())
		reply(w, atts, err)
	})
	mux.HandleFunc("PUT /v1/attachments/{containerID}/{ifName}", func(w http.ResponseWriter, r *http.Request) {
		var req AttachmentRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		if k := key(r); req.ContainerID != k.ContainerID || req.IfName != k.IfName {
			reply(w, nil, badInput("attachment %s/%s in the body differs from %s in the path", req.ContainerID, req.IfName, k))
			return
		}
		res, err := a.AttachmentAdd(r.Context(), req)
		reply(w, res, err)
	})
	mux.HandleFunc("GET /v1/attachments/{containerID}/{ifName}", func(w http.ResponseWriter, r *http.Request) {
		res, err := a.AttachmentGet(r.Context(), key(r))
		reply(w, res, err)
	})
	mux.HandleFunc("DELETE /v1/attachments/{containerID}/{ifName}", func(w http.ResponseWriter, r *http.Request) {
		reply(w, nil, a.AttachmentDelete(r.Context(), key(r)))
	})
	mux.HandleFunc("POST /v1/attachments-gc", func(w http.ResponseWriter, r *http.Request) {
		var req gcRequest
		if err := decode(r, &req); err != nil {
			reply(w, nil, err)
			return
		}
		gone, err := a.AttachmentGC(r.Context(), req.Keep)
		reply(w, gcReply{Removed: gone}, err)
	})
}

type gcRequest struct {
	Keep []AttachmentKey `json:"keep"`
}

type gcReply struct {
	Removed []Attachment `json:"removed"`
}

func attachmentPath(k AttachmentKey) string {
	return "/v1/attachments/" + url.PathEscape(k.ContainerID) + "/" + url.PathEscape(k.IfName)
}

// AttachmentAdd attaches a pod (PUT /v1/attachments/CONTAINER/IFNAME; CNI ADD).
func (c *Client) AttachmentAdd(ctx context.Context, req AttachmentRequest) (AttachmentResult, error) {
	var res AttachmentResult
	return res, c.do(ctx, http.MethodPut, attachmentPath(AttachmentKey{req.ContainerID, req.IfName}), req, &res)
}

// AttachmentGet returns an attachment with the problems the agent sees (CNI CHECK);
// an unknown one is ErrNotFound.
func (c *Client) AttachmentGet(ctx context.Context, k AttachmentKey) (AttachmentResult, error) {
	var res AttachmentResult
	return res, c.do(ctx, http.MethodGet, attachmentPath(k), nil, &res)
}

// AttachmentDelete detaches a pod (CNI DEL); an unknown attachment is no error.
func (c *Client) AttachmentDelete(ctx context.Context, k AttachmentKey) error {
	return c.do(ctx, http.MethodDelete, attachmentPath(k), nil, nil)
}

// AttachmentList returns the attachments CNI made.
func (c *Client) AttachmentList(ctx context.Context) ([]Attachment, error) {
	var atts []Attachment
	return atts, c.do(ctx, http.MethodGet, "/v1/attachments", nil, &atts)
}

// AttachmentGC detaches every attachment not in keep (CNI GC) and returns them.
func (c *Client) AttachmentGC(ctx context.Context, keep []AttachmentKey) ([]Attachment, error) {
	var out gcReply
	err := c.do(ctx, http.MethodPost, "/v1/attachments-gc", gcRequest{Keep: keep}, &out)
	return out.Removed, err
}

// ServiceList returns the desired services.
func (c *Client) ServiceList(ctx context.Context) ([]Service, error) {
	var ss []Service
	return ss, c.do(ctx, http.MethodGet, "/v1/services", nil, &ss)
}

// NodeList returns the desired nodes, as GET /v1/nodes does.
func (a *Agent) NodeList(ctx context.Context) ([]Node, error) { return a.store.nodes(), nil }

// ServiceList returns the desired services, as GET /v1/services does.
func (a *Agent) ServiceList(ctx context.Context) ([]Service, error) { return a.store.services(), nil }

// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/cilium/ebpf"
)

// The CNI side of the agent: podpath-cni hands every CNI ADD, DEL, CHECK and GC to the
// agent, which owns the node's pod addresses (agent-side IPAM, as in Cilium) and plumbs
// the pod through the same endpoint path as PUT /v1/endpoints.

// PodIfName is the only pod interface name the agent plumbs (kubelet's CNI_IFNAME).
const PodIfName = "eth0"

// PodSandbox is what an attachment is for: the runtime's container ID and interface
// name (CNI_CONTAINERID, CNI_IFNAME), the pod's network namespace and, under
// Kubernetes, the pod (CNI_ARGS K8S_POD_*).
type PodSandbox struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
	// Netns is the path of the pod's network namespace (CNI_NETNS).
	Netns     string `json:"netns"`
	Namespace string `json:"namespace,omitempty"`
	Pod       string `json:"pod,omitempty"`
	PodUID    string `json:"podUID,omitempty"`
}

// AttachmentRequest is a CNI ADD as podpath-cni hands it to the agent.
type AttachmentRequest struct {
	PodSandbox
	// RequestedIP, when set, is the address the runtime asks for; it wins over the
	// pod's annotation and the pool.
	RequestedIP netip.Addr `json:"requestedIP,omitzero"`
	// MTU of the pod's interface; 0: the agent's route MTU.
	MTU int `json:"mtu,omitempty"`
}

// Attachment is a pod interface attached through CNI: its sandbox, its address and the
// endpoint that plumbs it.
type Attachment struct {
	PodSandbox
	// Endpoint names the agent endpoint (GET /v1/endpoints) of this attachment.
	Endpoint string     `json:"endpoint"`
	IP       netip.Addr `json:"ip"`
	// AddressSource is AddressRequested, AddressAnnotation or AddressPool.
	AddressSource string `json:"addressSource"`
}

// AttachmentKey names an attachment as the CNI runtime does (GC's valid attachments).
type AttachmentKey struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifName"`
}

func (k AttachmentKey) String() string { return k.ContainerID + "/" + k.IfName }

func (a Attachment) key() string { return AttachmentKey{a.ContainerID, a.IfName}.String() }

// AttachmentResult is what podpath-cni needs to answer ADD and CHECK.
type AttachmentResult struct {
	Attachment
	Gateway  netip.Addr `json:"gateway"`
	HostVeth string     `json:"hostVeth"`
	HostMAC  string     `json:"hostMAC,omitempty"`
	PodMAC   string     `json:"podMAC,omitempty"`
	// MTU of the pod's interface and RouteMTU of its default route.
	MTU      int `json:"mtu"`
	RouteMTU int `json:"routeMTU"`
	// Problems the agent sees with the attachment on the node side (GET only).
	Problems []string `json:"problems,omitempty"`
}

// PodAddresses tells the agent which address a Kubernetes pod of this node asks for
// (the podpath.io/address annotation); the Kubernetes watcher implements it.
type PodAddresses interface {
	// PodAddress returns the address pod namespace/name (with uid, when known) asks
	// for; ok is false when it asks for none.
	PodAddress(ctx context.Context, namespace, name, uid string) (addr netip.Addr, ok bool, err error)
	// Reserved returns the addresses pods of this node ask for: the pool keeps them free.
	Reserved() []netip.Addr
}

// PodLabeler is what a PodAddresses source may also provide: a pod's labels, the
// namespace as io.kubernetes.pod.namespace among them (the Kubernetes watcher).
type PodLabeler interface {
	PodLabels(ctx context.Context, namespace, name string) (map[string]string, error)
}

// SetPodAddresses makes CNI ADD honour the addresses pods ask for. Call it before Run.
func (a *Agent) SetPodAddresses(p PodAddresses) { a.pods = p }

func (r *AttachmentRequest) validate() error {
	switch {
	case r.ContainerID == "" || strings.ContainsAny(r.ContainerID, "/ "):
		return fmt.Errorf("attachment: containerID %q: want a non-empty ID without '/' or spaces", r.ContainerID)
	case r.IfName != PodIfName:
		return fmt.Errorf("attachment %s: ifName %q: the agent plumbs the pod's interface as %s only", r.ContainerID, r.IfName, PodIfName)
	case !filepath.IsAbs(r.Netns):
		return fmt.Errorf("attachment %s: netns %q: want the absolute path of the pod's network namespace", r.ContainerID, r.Netns)
	case r.RequestedIP.IsValid() && !r.RequestedIP.Is4():
		return fmt.Errorf("attachment %s: requestedIP %s is not an IPv4 address", r.ContainerID, r.RequestedIP)
	}
	return nil
}

// attachmentEndpointName names the endpoint of an attachment: <pod>-<8 hex of a hash
// of the container ID> (one endpoint per pod sandbox, readable in endpoint lists), or
// cni-<16 hex> when there is no usable pod name.
func attachmentEndpointName(pod, containerID string) string {
	sum := sha256.Sum256([]byte(containerID))
	h := hex.EncodeToString(sum[:])
	p := strings.TrimRight(pod[:min(len(pod), 63-9)], ".-")
	if name := p + "-" + h[:8]; p != "" && nameRE.MatchString(name) {
		return name
	}
	return "cni-" + h[:16]
}

// AttachmentAdd attaches a pod (CNI ADD): it gives the attachment an address (the
// requested one, else the pod's annotation, else the next free one of the PodCIDR),
// records it in ipam.json and plumbs it as an endpoint. Adding the same attachment
// again (a retried ADD) keeps its address and reconciles the endpoint.
func (a *Agent) AttachmentAdd(ctx context.Context, req AttachmentRequest) (AttachmentResult, error) {
	if err := req.validate(); err != nil {
		return AttachmentResult{}, &InputError{Err: err}
	}
	a.cniMu.Lock()
	defer a.cniMu.Unlock()
	key := AttachmentKey{req.ContainerID, req.IfName}.String()
	att, existed := a.ipam.get(key)
	if existed && req.RequestedIP.IsValid() && req.RequestedIP != att.IP {
		return AttachmentResult{}, badInput("attachment %s: requested %s, but it was attached with %s", key, req.RequestedIP, att.IP)
	}
	var err error
	switch {
	case !existed:
		att, err = a.newAttachment(ctx, req)
	case att.Netns != req.Netns:
		att.Netns = req.Netns
		err = a.ipam.update(func(st *ipamState) error { st.Attachments[key] = att; return nil })
	}
	if err != nil {
		return AttachmentResult{}, err
	}
	ep := Endpoint{Name: att.Endpoint, Netns: att.Netns, IP: att.IP, MTU: req.MTU}
	if l, ok := a.pods.(PodLabeler); ok && req.Pod != "" {
		// The pod's labels give its identity; a pod the watcher cannot read yet gets
		// its namespace's unlabelled identity until the next ADD.
		if ep.Labels, err = l.PodLabels(ctx, req.Namespace, req.Pod); err != nil {
			a.opts.Log.Warn("pod labels", "pod", req.Namespace+"/"+req.Pod, "err", err)
		}
	}
	if err = a.EndpointAdd(ctx, ep); err != nil {
		if !existed {
			err = errors.Join(err, a.detach(ctx, att))
		}
		return AttachmentResult{}, fmt.Errorf("attachment %s: %w", key, err)
	}
	res := a.attachmentResult(att)
	if len(res.Problems) > 0 {
		return res, fmt.Errorf("attachment %s: %s", key, strings.Join(res.Problems, "; "))
	}
	return res, nil
}

// newAttachment records a new attachment for req with its address.
func (a *Agent) newAttachment(ctx context.Context, req AttachmentRequest) (Attachment, error) {
	att := Attachment{PodSandbox: req.PodSandbox, Endpoint: attachmentEndpointName(req.Pod, req.ContainerID)}
	want, source, err := a.wantedAddress(ctx, req)
	if err != nil {
		return att, err
	}
	att.AddressSource = source
	err = a.ipam.update(func(st *ipamState) error {
		var err error
		if att.IP, err = a.allocate(att.key(), want, source, st); err != nil {
			return err
		}
		st.Attachments[att.key()] = att
		return nil
	})
	return att, err
}

// wantedAddress is the address an attachment asks for and where the wish comes from:
// the runtime's request, else the pod's annotation; none: the pool.
func (a *Agent) wantedAddress(ctx context.Context, req AttachmentRequest) (netip.Addr, string, error) {
	if req.RequestedIP.IsValid() {
		return req.RequestedIP, AddressRequested, nil
	}
	if a.pods != nil && req.Pod != "" {
		ip, ok, err := a.pods.PodAddress(ctx, req.Namespace, req.Pod, req.PodUID)
		if err != nil {
			return netip.Addr{}, "", fmt.Errorf("attachment %s/%s: address of pod %s/%s: %w", req.ContainerID, req.IfName, req.Namespace, req.Pod, err)
		}
		if ok {
			return ip, AddressAnnotation, nil
		}
	}
	return netip.Addr{}, AddressPool, nil
}

// allocate gives attachment key the address want (which no endpoint or other
// attachment may hold), or without one the pool's next free address that no pod of
// the node asks for. st is the IPAM state being updated.
func (a *Agent) allocate(key string, want netip.Addr, source string, st *ipamState) (netip.Addr, error) {
	used := map[netip.Addr]string{}
	for _, ep := range a.store.endpoints() {
		used[ep.IP] = "endpoint " + ep.Name
	}
	for k, other := range st.Attachments {
		used[other.IP] = "attachment " + k
	}
	if want.IsValid() {
		if err := checkPoolAddress(a.opts.PodCIDR, want); err != nil {
			return netip.Addr{}, badInput("attachment %s: %s address: %v", key, source, err)
		}
		if by, ok := used[want]; ok {
			return netip.Addr{}, badInput("attachment %s: %s address %s is in use by %s", key, source, want, by)
		}
		return want, nil
	}
	var reserved []netip.Addr
	if a.pods != nil {
		reserved = a.pods.Reserved()
	}
	ip, err := pickAddress(a.opts.PodCIDR, st.Last, func(ip netip.Addr) bool {
		_, inUse := used[ip]
		return inUse || slices.Contains(reserved, ip)
	})
	if err != nil {
		return netip.Addr{}, fmt.Errorf("attachment %s: %w", key, err)
	}
	st.Last = ip
	return ip, nil
}

// attachmentResult describes att as plumbed, with the problems found on the node side.
func (a *Agent) attachmentResult(att Attachment) AttachmentResult {
	res := AttachmentResult{Attachment: att, Gateway: a.opts.PodCIDR.Masked().Addr().Next()}
	ep, ok := a.endpoint(att.Endpoint)
	if !ok {
		res.Problems = append(res.Problems, fmt.Sprintf("endpoint %s is not in the agent's desired state", att.Endpoint))
		return res
	}
	if ep.IP != att.IP {
		res.Problems = append(res.Problems, fmt.Sprintf("endpoint %s has address %s, the attachment %s", ep.Name, ep.IP, att.IP))
	}
	res.HostVeth, res.MTU, res.RouteMTU = ep.HostVeth, ep.MTU, 0
	if a.dp != nil {
		res.RouteMTU = a.dp.mtu.Route
	}
	if res.MTU == 0 {
		res.MTU = res.RouteMTU
	}
	res.RouteMTU = min(res.RouteMTU, res.MTU)
	if host, err := a.nl.LinkByName(ep.HostVeth); err != nil {
		res.Problems = append(res.Problems, fmt.Sprintf("host veth %s: %v", ep.HostVeth, err))
	} else {
		res.HostMAC = host.Attrs().HardwareAddr.String()
	}
	if mac, err := a.podMAC(ep); err != nil {
		res.Problems = append(res.Problems, err.Error())
	} else {
		res.PodMAC = mac.String()
	}
	a.mu.Lock()
	if p := a.problems["endpoint/"+ep.Name]; p != "" {
		res.Problems = append(res.Problems, p)
	}
	a.mu.Unlock()
	return res
}

func (a *Agent) endpoint(name string) (Endpoint, bool) {
	for _, ep := range a.store.endpoints() {
		if ep.Name == name {
			return ep, true
		}
	}
	return Endpoint{}, false
}

// AttachmentGet returns an attachment as plumbed, with the problems the agent sees
// (CNI CHECK); an unknown one is ErrNotFound.
func (a *Agent) AttachmentGet(ctx context.Context, k AttachmentKey) (AttachmentResult, error) {
	a.cniMu.Lock()
	defer a.cniMu.Unlock()
	att, ok := a.ipam.get(k.String())
	if !ok {
		return AttachmentResult{}, fmt.Errorf("attachment %s: %w", k, ErrNotFound)
	}
	return a.attachmentResult(att), nil
}

// AttachmentList returns the attachments CNI made.
func (a *Agent) AttachmentList(ctx context.Context) ([]Attachment, error) {
	return a.ipam.list(), nil
}

// AttachmentDelete detaches a pod (CNI DEL): its endpoint goes (veth, map entries) and
// its address returns to the pool. An unknown attachment is no error: DEL is idempotent.
func (a *Agent) AttachmentDelete(ctx context.Context, k AttachmentKey) error {
	a.cniMu.Lock()
	defer a.cniMu.Unlock()
	att, ok := a.ipam.get(k.String())
	if !ok {
		return nil
	}
	return a.detach(ctx, att)
}

// AttachmentGC detaches every attachment not in keep (CNI GC: keep lists the
// runtime's valid attachments) and returns those it detached.
func (a *Agent) AttachmentGC(ctx context.Context, keep []AttachmentKey) ([]Attachment, error) {
	a.cniMu.Lock()
	defer a.cniMu.Unlock()
	valid := map[string]bool{}
	for _, k := range keep {
		valid[k.String()] = true
	}
	var gone []Attachment
	var errs []error
	for _, att := range a.ipam.list() {
		if valid[att.key()] {
			continue
		}
		if err := a.detach(ctx, att); err != nil {
			errs = append(errs, err)
			continue
		}
		gone = append(gone, att)
	}
	return gone, errors.Join(errs...)
}

// detach removes att's endpoint, then its record; the caller holds cniMu.
func (a *Agent) detach(ctx context.Context, att Attachment) error {
	if _, ok := a.endpoint(att.Endpoint); ok {
		if err := ignoreMissing(a.EndpointDelete(ctx, att.Endpoint)); err != nil {
			return fmt.Errorf("attachment %s: %w", att.key(), err)
		}
	}
	return a.ipam.update(func(st *ipamState) error {
		delete(st.Attachments, att.key())
		return nil
	})
}

// ignoreMissing drops, from a joined error, map entries that were not there to delete
// (an endpoint whose plumbing failed never got them).
func ignoreMissing(err error) error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var keep []error
		for _, e := range j.Unwrap() {
			keep = append(keep, ignoreMissing(e))
		}
		return errors.Join(keep...)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return nil
	}
	return err
}

// SPDX-License-Identifier: Apache-2.0

package kvstore

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Cilium's key layout (Documentation/kvstore.rst): every key under cilium/state/.
const (
	NodesPrefix      = "cilium/state/nodes/v1/"
	IPPrefix         = "cilium/state/ip/v1/"
	IdentitiesPrefix = "cilium/state/identities/v1/"
	ServicesPrefix   = "cilium/state/services/v1/"
	// AddressSpace is the <ns> of ip/v1 keys: Cilium's default address space.
	AddressSpace = "default"
	// FirstIdentity is the first identity allocated for a label set (below: reserved).
	FirstIdentity = 256
	// MaxIdentity is the last identity a cluster allocates (the VNI has 24 bits;
	// Cilium's global range without cluster mesh ends at 65535).
	MaxIdentity = 65535
	// ClusterIDShift places cluster-id in bits 16-23 of an identity, as Cilium does: a
	// cluster allocates (id<<16)+256 .. (id<<16)+65535, so the VNI names the cluster.
	ClusterIDShift = 16
)

// IdentityRange is the range a cluster allocates from (cluster-id 0: no mesh).
func IdentityRange(clusterID uint32) (first, last uint32) {
	base := clusterID << ClusterIDShift
	return base + FirstIdentity, base + MaxIdentity
}

// ClusterOfIdentity is the cluster-id an identity carries (bits 16-23).
func ClusterOfIdentity(id uint32) uint32 { return (id >> ClusterIDShift) & 0xff }

// NodeKey is cilium/state/nodes/v1/<cluster>/<node>.
func NodeKey(cluster, node string) string { return NodesPrefix + cluster + "/" + node }

// IPKey is cilium/state/ip/v1/default/<ip>.
func IPKey(ip netip.Addr) string { return IPPrefix + AddressSpace + "/" + ip.String() }

// IdentityIDKey is the master key of an identity: id/<id> -> labels.
func IdentityIDKey(id uint32) string {
	return IdentitiesPrefix + "id/" + strconv.FormatUint(uint64(id), 10)
}

// ServiceDelete removes a service of this cluster.
func (s *Store) ServiceDelete(ctx context.Context, namespace, name string) error {
	return s.Delete(ctx, ServiceKey(s.opts.Cluster, namespace, name))
}

// IdentityValueKey is a node's slave key: value/<labels>/<nodeIP> -> id.
func IdentityValueKey(labels, nodeIP string) string {
	return IdentitiesPrefix + "value/" + labels + "/" + nodeIP
}

// ServiceKey is cilium/state/services/v1/<cluster>/<namespace>/<name>.
func ServiceKey(cluster, namespace, name string) string {
	return ServicesPrefix + cluster + "/" + namespace + "/" + name
}

// IPIdentityPair is the value of an ip/v1 key, as Cilium writes it.
type IPIdentityPair struct {
	IP           string  `json:"IP"`
	Mask         *string `json:"Mask"`
	HostIP       string  `json:"HostIP"`
	ID           uint32  `json:"ID"`
	Key          uint8   `json:"Key"`
	Metadata     string  `json:"Metadata"`
	K8sNamespace string  `json:"K8sNamespace,omitempty"`
	K8sPodName   string  `json:"K8sPodName,omitempty"`
}

// NodeAddress is one address of a node value.
type NodeAddress struct {
	Type string `json:"Type"`
	IP   string `json:"IP"`
}

// IPNet is a CIDR as Go's net.IPNet marshals (base64 mask), as Cilium's node value has it.
type IPNet struct {
	IP   string `json:"IP"`
	Mask []byte `json:"Mask"`
}

// NodeValue is the value of a nodes/v1 key.
type NodeValue struct {
	Name          string        `json:"Name"`
	Cluster       string        `json:"Cluster"`
	IPAddresses   []NodeAddress `json:"IPAddresses"`
	IPv4AllocCIDR *IPNet        `json:"IPv4AllocCIDR"`
	ClusterID     uint32        `json:"ClusterID"`
}

// NewNodeValue describes a node with its InternalIP and PodCIDR.
func NewNodeValue(name, cluster string, clusterID uint32, ip netip.Addr, podCIDR netip.Prefix) NodeValue {
	return NodeValue{Name: name, Cluster: cluster, ClusterID: clusterID, IPAddresses: []NodeAddress{{Type: "InternalIP", IP: ip.String()}},
		IPv4AllocCIDR: &IPNet{IP: podCIDR.Addr().String(), Mask: net.CIDRMask(podCIDR.Bits(), 32)}}
}

// InternalIP is the node's InternalIP address.
func (v NodeValue) InternalIP() (netip.Addr, error) {
	for _, a := range v.IPAddresses {
		if a.Type == "InternalIP" {
			return netip.ParseAddr(a.IP)
		}
	}
	return netip.Addr{}, fmt.Errorf("node %s: no InternalIP", v.Name)
}

// PodCIDR is the node's IPv4AllocCIDR.
func (v NodeValue) PodCIDR() (netip.Prefix, error) {
	if v.IPv4AllocCIDR == nil {
		return netip.Prefix{}, fmt.Errorf("node %s: no IPv4AllocCIDR", v.Name)
	}
	a, err := netip.ParseAddr(v.IPv4AllocCIDR.IP)
	if err != nil || len(v.IPv4AllocCIDR.Mask) != 4 {
		return netip.Prefix{}, fmt.Errorf("node %s: IPv4AllocCIDR %v: not IPv4", v.Name, v.IPv4AllocCIDR)
	}
	ones, _ := net.IPMask(v.IPv4AllocCIDR.Mask).Size()
	return netip.PrefixFrom(a, ones), nil
}

// ParseNodeEvent decodes a nodes/v1 event: the node's name and, unless deleted, its value.
func ParseNodeEvent(ev Event) (string, *NodeValue, error) {
	name := ev.Key[strings.LastIndex(ev.Key, "/")+1:]
	if ev.Value == nil {
		return name, nil, nil
	}
	var v NodeValue
	if err := json.Unmarshal(ev.Value, &v); err != nil {
		return name, nil, fmt.Errorf("node key %s: %w", ev.Key, err)
	}
	return name, &v, nil
}

// ParseServiceEvent decodes a services/v1 event: namespace/name and, unless deleted,
// the service.
func ParseServiceEvent(ev Event) (string, *ClusterService, error) {
	parts := strings.Split(strings.TrimPrefix(ev.Key, ServicesPrefix), "/")
	if len(parts) != 3 {
		return "", nil, fmt.Errorf("service key %s: want %s<cluster>/<namespace>/<name>", ev.Key, ServicesPrefix)
	}
	id := parts[1] + "/" + parts[2]
	if ev.Value == nil {
		return id, nil, nil
	}
	var v ClusterService
	if err := json.Unmarshal(ev.Value, &v); err != nil {
		return id, nil, fmt.Errorf("service key %s: %w", ev.Key, err)
	}
	return id, &v, nil
}

// PortConfig is one port of a service value.
type PortConfig struct {
	Protocol string `json:"Protocol"`
	Port     uint16 `json:"Port"`
}

// ClusterService is the value of a services/v1 key: frontends and backends by address,
// ports by name.
type ClusterService struct {
	Cluster   string                           `json:"cluster"`
	Namespace string                           `json:"namespace"`
	Name      string                           `json:"name"`
	Frontends map[string]map[string]PortConfig `json:"frontends"`
	Backends  map[string]map[string]PortConfig `json:"backends"`
	Labels    map[string]string                `json:"labels"`
	Selector  map[string]string                `json:"selector"`
	// IncludeExternal: a global service (its backends are merged across clusters).
	IncludeExternal bool `json:"includeExternal"`
	// Shared: this cluster's backends are offered to the other clusters.
	Shared    bool   `json:"shared"`
	ClusterID uint32 `json:"clusterID"`
}

// RegisterNode writes this node's key under the lease.
func (s *Store) RegisterNode(ctx context.Context, v NodeValue) error {
	b, _ := json.Marshal(v)
	return s.Put(ctx, NodeKey(s.opts.Cluster, v.Name), string(b))
}

// EndpointUpsert writes ip -> identity for a local pod.
func (s *Store) EndpointUpsert(ctx context.Context, ip netip.Addr, id uint32, pod string) error {
	b, _ := json.Marshal(IPIdentityPair{IP: ip.String(), HostIP: s.opts.NodeIP, ID: id, K8sNamespace: "default", K8sPodName: pod})
	return s.Put(ctx, IPKey(ip), string(b))
}

// EndpointDelete removes a local pod's ip key.
func (s *Store) EndpointDelete(ctx context.Context, ip netip.Addr) error {
	return s.Delete(ctx, IPKey(ip))
}

// ServiceUpsert writes a service of this cluster.
func (s *Store) ServiceUpsert(ctx context.Context, v ClusterService) error {
	v.Cluster, v.ClusterID = s.opts.Cluster, s.opts.ClusterID
	b, _ := json.Marshal(v)
	return s.Put(ctx, ServiceKey(v.Cluster, v.Namespace, v.Name), string(b))
}

// ParseIPEvent decodes an ip/v1 event: the address and, unless deleted, its pair.
func ParseIPEvent(ev Event) (netip.Addr, *IPIdentityPair, error) {
	a, err := netip.ParseAddr(ev.Key[strings.LastIndex(ev.Key, "/")+1:])
	if err != nil {
		return netip.Addr{}, nil, fmt.Errorf("ip key %s: %w", ev.Key, err)
	}
	if ev.Value == nil {
		return a, nil, nil
	}
	var p IPIdentityPair
	if err := json.Unmarshal(ev.Value, &p); err != nil {
		return a, nil, fmt.Errorf("ip key %s: %w", ev.Key, err)
	}
	return a, &p, nil
}

// Allocator gives a security identity to a canonical label set (CanonicalLabels):
// the same set gets the same identity on every node. Policy's local allocator and
// this one are swapped by identity-allocation-mode.
type Allocator interface {
	AllocateIdentity(ctx context.Context, labels string) (uint32, error)
}

var _ Allocator = (*Store)(nil)

// lockSession is the session whose lease holds allocation locks ("lock lease-ID").
func (s *Store) lockSession(ctx context.Context) (*concurrency.Session, error) {
	s.mu.Lock()
	sess := s.session
	s.mu.Unlock()
	if sess != nil {
		select {
		case <-sess.Done():
		default:
			return sess, nil
		}
	}
	// The grant has a deadline (NewSession's own would wait for etcd as long as its
	// context lives); the session keeps the lease alive beyond this call.
	c, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	g, err := s.cli.Grant(c, int64(s.opts.LeaseTTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("etcd lock lease: %w", err)
	}
	sess, err = concurrency.NewSession(s.cli, concurrency.WithLease(g.ID), concurrency.WithContext(context.WithoutCancel(ctx)))
	if err != nil {
		return nil, fmt.Errorf("etcd lock session: %w", err)
	}
	s.mu.Lock()
	s.session = sess
	s.status.LockLease = fmt.Sprintf("%x", int64(sess.Lease()))
	s.mu.Unlock()
	return sess, nil
}

// AllocateIdentity allocates (or finds) the identity of labels in etcd: under a lock
// on the label set (locks/<labels>), an existing value/<labels>/ key gives the id;
// else the lowest free id from FirstIdentity is claimed with a transaction that
// succeeds only if id/<id> does not exist. Either way this node's slave key
// value/<labels>/<nodeIP> is written under its lease.
func (s *Store) AllocateIdentity(ctx context.Context, labels string) (uint32, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sess, err := s.lockSession(ctx)
	if err != nil {
		return 0, err
	}
	mu := concurrency.NewMutex(sess, IdentitiesPrefix+"locks/"+labels)
	if err := mu.Lock(ctx); err != nil {
		return 0, fmt.Errorf("etcd lock %s: %w", labels, err)
	}
	defer mu.Unlock(context.WithoutCancel(ctx))
	id, err := s.lookupIdentity(ctx, labels)
	if err != nil {
		return 0, err
	}
	if id == 0 {
		if id, err = s.claimIdentity(ctx, labels); err != nil {
			return 0, err
		}
	}
	if err := s.Put(ctx, IdentityValueKey(labels, s.opts.NodeIP), strconv.FormatUint(uint64(id), 10)); err != nil {
		return 0, err
	}
	return id, nil
}

// lookupIdentity returns the id some node's slave key gives labels (0: none).
func (s *Store) lookupIdentity(ctx context.Context, labels string) (uint32, error) {
	r, err := s.cli.Get(ctx, IdentitiesPrefix+"value/"+labels+"/", clientv3.WithPrefix(), clientv3.WithLimit(1))
	if err != nil {
		return 0, fmt.Errorf("etcd get identity of %s: %w", labels, err)
	}
	if len(r.Kvs) == 0 {
		return 0, nil
	}
	id, err := strconv.ParseUint(string(r.Kvs[0].Value), 10, 32)
	if err != nil {
		return 0, fmt.Errorf("identity key %s: %w", r.Kvs[0].Key, err)
	}
	return uint32(id), nil
}

// claimIdentity creates the master key of the lowest free id for labels.
func (s *Store) claimIdentity(ctx context.Context, labels string) (uint32, error) {
	r, err := s.cli.Get(ctx, IdentitiesPrefix+"id/", clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd list identities: %w", err)
	}
	used := map[uint32]bool{}
	for _, kv := range r.Kvs {
		if n, err := strconv.ParseUint(string(kv.Key)[len(IdentitiesPrefix+"id/"):], 10, 32); err == nil {
			used[uint32(n)] = true
		}
	}
	first, last := IdentityRange(s.opts.ClusterID)
	for id := first; id <= last; id++ {
		if used[id] {
			continue
		}
		k := IdentityIDKey(id)
		t, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, labels)).Commit()
		if err != nil {
			return 0, fmt.Errorf("etcd claim identity %d: %w", id, err)
		}
		if t.Succeeded {
			return id, nil
		}
	}
	return 0, fmt.Errorf("identities: none free in %d..%d", first, last)
}

// SPDX-License-Identifier: Apache-2.0

package maps

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"

	"podpath/datapath/bpfobj"
)

// The layouts of bpf/lib/maps.h as bpf2go generates them; every object that
// includes the header has the same ones (sizes are checked against BTF in tests).
type (
	endpointKey  = bpfobj.LxcEndpointKey
	endpointInfo = bpfobj.LxcEndpointInfo
	ipcacheKey   = bpfobj.LxcIpcacheKey
	ipcacheInfo  = bpfobj.LxcIpcacheInfo
	nodeKey      = bpfobj.LxcNodeKey
	nodeInfo     = bpfobj.LxcNodeInfo
)

// Maps are one node's shared datapath maps. The zero value is unusable: get one from
// loader.Datapath.Maps or OpenPinned.
type Maps struct {
	Endpoints *ebpf.Map // endpoints: local pod IPv4 -> veth, MACs, identity
	IPCache   *ebpf.Map // ipcache: IPv4 prefix -> identity, owning node
	Nodes     *ebpf.Map // nodes: node IPv4 -> node id
}

// OpenPinned opens the maps a loader pinned under pinPath (a bpffs directory).
// Close the result when done.
func OpenPinned(pinPath string) (*Maps, error) {
	m := &Maps{}
	for _, e := range []struct {
		name string
		dst  **ebpf.Map
	}{{"endpoints", &m.Endpoints}, {"ipcache", &m.IPCache}, {"nodes", &m.Nodes}} {
		mp, err := ebpf.LoadPinnedMap(filepath.Join(pinPath, e.name), nil)
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("open pinned map %s: %w", e.name, err)
		}
		*e.dst = mp
	}
	return m, nil
}

// Close closes the map handles. Do not close the Maps of a loader.Datapath: the
// Datapath owns them.
func (m *Maps) Close() error {
	var errs []error
	for _, mp := range []*ebpf.Map{m.Endpoints, m.IPCache, m.Nodes} {
		if mp != nil {
			errs = append(errs, mp.Close())
		}
	}
	return errors.Join(errs...)
}

// EndpointFlags are enum endpoint_flags of bpf/lib/maps.h.
type EndpointFlags uint32

// EndpointHost marks the node's own addresses: traffic to them goes to the stack.
const EndpointHost = EndpointFlags(bpfobj.LxcEndpointFlagsENDPOINT_F_HOST)

// Endpoint is a local endpoint: a pod of this node (or the node itself).
type Endpoint struct {
	IP       netip.Addr       // the pod's IPv4
	Ifindex  uint32           // its host-side veth, in the node's namespace
	MAC      net.HardwareAddr // the pod's eth0
	HostMAC  net.HardwareAddr // the host-side veth: the pod's router
	Identity uint32           // security identity
	Flags    EndpointFlags
}

// IPCacheEntry maps an IPv4 prefix to its security identity and the node that owns it.
type IPCacheEntry struct {
	Prefix   netip.Prefix
	Identity uint32
	// TunnelEndpoint is the owning node's IP; the zero Addr means local or world.
	TunnelEndpoint netip.Addr
	Flags          uint32
}

// Node is a cluster node by underlay IPv4.
type Node struct {
	IP    netip.Addr
	ID    uint32
	Flags uint32
	// MTU is the tunnel MTU towards this node (node_info.mtu): the largest inner IPv4
	// packet that crosses the underlay path to it once encapsulated. 0 means the
	// global tunnel MTU; a value only ever lowers it.
	MTU uint32
}

// be32 is an IPv4 address as a __be32 field: the wire bytes in memory order.
func be32(a netip.Addr) uint32 {
	b := a.As4()
	return binary.NativeEndian.Uint32(b[:])
}

func addrFromBE32(v uint32) netip.Addr {
	var b [4]byte
	binary.NativeEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

func ipv4(op string, a netip.Addr) error {
	if !a.Is4() {
		return fmt.Errorf("%s: %s is not an IPv4 address", op, a)
	}
	return nil
}

func mac6(op, what string, m net.HardwareAddr) ([6]uint8, error) {
	var out [6]uint8
	if len(m) != 6 {
		return out, fmt.Errorf("%s: %s MAC %q is not 6 bytes", op, what, m)
	}
	copy(out[:], m)
	return out, nil
}

// EndpointUpsert adds or replaces ep
// (`bpftool map update pinned PINPATH/endpoints key IP value INFO`). A pod endpoint
// needs its veth ifindex and both MACs; a host endpoint (EndpointHost) needs neither.
func (m *Maps) EndpointUpsert(ep Endpoint) error {
	op := fmt.Sprintf("endpoint upsert %s", ep.IP)
	if err := ipv4(op, ep.IP); err != nil {
		return err
	}
	info := endpointInfo{Ifindex: ep.Ifindex, SecIdentity: ep.Identity, Flags: uint32(ep.Flags)}
	if ep.Flags&EndpointHost == 0 || ep.MAC != nil || ep.HostMAC != nil {
		var err error
		if info.Mac, err = mac6(op, "pod", ep.MAC); err != nil {
			return err
		}
		if info.NodeMac, err = mac6(op, "host veth", ep.HostMAC); err != nil {
			return err
		}
	}
	if ep.Flags&EndpointHost == 0 && ep.Ifindex == 0 {
		return fmt.Errorf("%s: a pod endpoint needs the ifindex of its host-side veth", op)
	}
	if err := m.Endpoints.Put(endpointKey{Ip4: be32(ep.IP)}, info); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// EndpointDelete removes the endpoint with address ip
// (`bpftool map delete pinned PINPATH/endpoints key IP`). Deleting a missing one
// returns an error that matches ebpf.ErrKeyNotExist.
func (m *Maps) EndpointDelete(ip netip.Addr) error {
	op := fmt.Sprintf("endpoint delete %s", ip)
	if err := ipv4(op, ip); err != nil {
		return err
	}
	if err := m.Endpoints.Delete(endpointKey{Ip4: be32(ip)}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// EndpointLookup returns the endpoint with address ip
// (`bpftool map lookup pinned PINPATH/endpoints key IP`); a missing one is an error
// that matches ebpf.ErrKeyNotExist.
func (m *Maps) EndpointLookup(ip netip.Addr) (Endpoint, error) {
	op := fmt.Sprintf("endpoint lookup %s", ip)
	if err := ipv4(op, ip); err != nil {
		return Endpoint{}, err
	}
	var info endpointInfo
	if err := m.Endpoints.Lookup(endpointKey{Ip4: be32(ip)}, &info); err != nil {
		return Endpoint{}, fmt.Errorf("%s: %w", op, err)
	}
	return endpointFrom(endpointKey{Ip4: be32(ip)}, info), nil
}

func endpointFrom(k endpointKey, v endpointInfo) Endpoint {
	return Endpoint{
		IP:       addrFromBE32(k.Ip4),
		Ifindex:  v.Ifindex,
		MAC:      net.HardwareAddr(slices.Clone(v.Mac[:])),
		HostMAC:  net.HardwareAddr(slices.Clone(v.NodeMac[:])),
		Identity: v.SecIdentity,
		Flags:    EndpointFlags(v.Flags),
	}
}

// EndpointList returns every endpoint, by address (`bpftool map dump pinned PINPATH/endpoints`).
func (m *Maps) EndpointList() ([]Endpoint, error) {
	var (
		k   endpointKey
		v   endpointInfo
		out []Endpoint
	)
	it := m.Endpoints.Iterate()
	for it.Next(&k, &v) {
		out = append(out, endpointFrom(k, v))
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("endpoint list: %w", err)
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return a.IP.Compare(b.IP) })
	return out, nil
}

func prefixKey(op string, p netip.Prefix) (ipcacheKey, error) {
	if !p.IsValid() || !p.Addr().Is4() {
		return ipcacheKey{}, fmt.Errorf("%s: %s is not an IPv4 prefix", op, p)
	}
	p = p.Masked()
	return ipcacheKey{Prefixlen: uint32(p.Bits()), Ip4: be32(p.Addr())}, nil
}

// IPCacheUpsert adds or replaces the entry for e.Prefix (host bits are ignored)
// (`bpftool map update pinned PINPATH/ipcache key PREFIXLEN IP value INFO`).
func (m *Maps) IPCacheUpsert(e IPCacheEntry) error {
	op := fmt.Sprintf("ipcache upsert %s", e.Prefix)
	k, err := prefixKey(op, e.Prefix)
	if err != nil {
		return err
	}
	v := ipcacheInfo{SecIdentity: e.Identity, Flags: e.Flags}
	if e.TunnelEndpoint.IsValid() {
		if err := ipv4(op+": tunnel endpoint", e.TunnelEndpoint); err != nil {
			return err
		}
		v.TunnelEndpoint = be32(e.TunnelEndpoint)
	}
	if err := m.IPCache.Put(k, v); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// IPCacheDelete removes the entry for exactly p
// (`bpftool map delete pinned PINPATH/ipcache key PREFIXLEN IP`).
func (m *Maps) IPCacheDelete(p netip.Prefix) error {
	op := fmt.Sprintf("ipcache delete %s", p)
	k, err := prefixKey(op, p)
	if err != nil {
		return err
	}
	if err := m.IPCache.Delete(k); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// IPCacheList returns every entry, by prefix (`bpftool map dump pinned PINPATH/ipcache`).
func (m *Maps) IPCacheList() ([]IPCacheEntry, error) {
	var (
		k   ipcacheKey
		v   ipcacheInfo
		out []IPCacheEntry
	)
	it := m.IPCache.Iterate()
	for it.Next(&k, &v) {
		e := IPCacheEntry{
			Prefix:   netip.PrefixFrom(addrFromBE32(k.Ip4), int(k.Prefixlen)),
			Identity: v.SecIdentity,
			Flags:    v.Flags,
		}
		if v.TunnelEndpoint != 0 {
			e.TunnelEndpoint = addrFromBE32(v.TunnelEndpoint)
		}
		out = append(out, e)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("ipcache list: %w", err)
	}
	slices.SortFunc(out, func(a, b IPCacheEntry) int {
		if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
			return c
		}
		return a.Prefix.Bits() - b.Prefix.Bits()
	})
	return out, nil
}

// NodeUpsert adds or replaces n (`bpftool map update pinned PINPATH/nodes key IP value INFO`).
func (m *Maps) NodeUpsert(n Node) error {
	op := fmt.Sprintf("node upsert %s", n.IP)
	if err := ipv4(op, n.IP); err != nil {
		return err
	}
	if err := m.Nodes.Put(nodeKey{Ip4: be32(n.IP)}, nodeInfo{NodeId: n.ID, Flags: n.Flags, Mtu: n.MTU}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// NodeDelete removes the node with address ip (`bpftool map delete pinned PINPATH/nodes key IP`).
func (m *Maps) NodeDelete(ip netip.Addr) error {
	op := fmt.Sprintf("node delete %s", ip)
	if err := ipv4(op, ip); err != nil {
		return err
	}
	if err := m.Nodes.Delete(nodeKey{Ip4: be32(ip)}); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	return nil
}

// NodeList returns every node, by address (`bpftool map dump pinned PINPATH/nodes`).
func (m *Maps) NodeList() ([]Node, error) {
	var (
		k   nodeKey
		v   nodeInfo
		out []Node
	)
	it := m.Nodes.Iterate()
	for it.Next(&k, &v) {
		out = append(out, Node{IP: addrFromBE32(k.Ip4), ID: v.NodeId, Flags: v.Flags, MTU: v.Mtu})
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("node list: %w", err)
	}
	slices.SortFunc(out, func(a, b Node) int { return a.IP.Compare(b.IP) })
	return out, nil
}

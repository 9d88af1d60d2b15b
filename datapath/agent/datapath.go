// SPDX-License-Identifier: Apache-2.0

package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/loader"
	"podpath/datapath/maps"
)

// datapath is the agent's view of the loaded programs: pinned maps under BPFFS/maps
// and one pinned tcx link per program and device under BPFFS/links, so programs stay
// attached while no agent runs, and a new agent swaps its programs in atomically.
type datapath struct {
	dp      *loader.Datapath
	nl      *netlink.Handle
	bpffs   string
	links   map[string]link.Link // by pin name (linkPinName)
	adopted bool                 // at least one link was already pinned at start
	devices []string
	nodeIP  netip.Addr
	// nodePortAddrs are the addresses NodePort frontends answer on: the node IP
	// first, then every other IPv4 address of the devices (multi-NIC nodes).
	nodePortAddrs []netip.Addr
	podCIDR       netip.Prefix // this node's pods: the backends of Local traffic policies
	// topologyZone is the node's zone when enable-service-topology is on, else "":
	// the zone whose hinted backends this node's frontends take.
	topologyZone string
	// subnet is the node IP's own interface subnet (tunnel-mode cross-subnet).
	subnet netip.Prefix
	mtu    MTUs
	// health are the health check node port servers, by service name.
	healthMu sync.Mutex
	health   map[string]*healthPort
	vxlan    netlink.Link // cilium_vxlan with VXLAN tunnelling, else nil
	cfg      bpfconfig.Config
	// xdpOn are the devices bpf_xdp is attached to (bpf-lb-acceleration); xdpOff
	// those best-effort left without, with the reason.
	xdpOn, xdpOff []string
	// gen is dp_gen: the FIB generation (fibwatch.go) and the backend generation
	// (services.go) that invalidate what the programs remember per flow.
	gen *ebpf.Map
	log *slog.Logger
}

// bpffsMagic is BPF_FS_MAGIC: pins only work on a bpf filesystem.
const bpffsMagic = 0xcafe4a11

func openDatapath(c *config.Config, opts Options, nodeID uint32) (*datapath, error) {
	var st unix.Statfs_t
	if err := os.MkdirAll(opts.BPFFS, 0o700); err != nil {
		return nil, fmt.Errorf("bpffs folder: %w", err)
	}
	if err := unix.Statfs(opts.BPFFS, &st); err != nil || uint32(st.Type) != bpffsMagic {
		return nil, fmt.Errorf("bpffs folder %s is not on a bpf filesystem (mount one: mount -t bpf bpffs DIR)", opts.BPFFS)
	}
	nl, err := netlink.NewHandle()
	if err != nil {
		return nil, err
	}
	d := &datapath{nl: nl, bpffs: opts.BPFFS, links: map[string]link.Link{}, devices: opts.Devices, podCIDR: opts.PodCIDR.Masked(), log: opts.Log}
	if d.log == nil {
		d.log = slog.Default()
	}
	if c.ServiceTopology {
		d.topologyZone = opts.Zone
	}
	if d.nodeIP = opts.NodeIP; !d.nodeIP.IsValid() {
		first, err := nl.LinkByName(opts.Devices[0])
		if err != nil {
			return nil, fmt.Errorf("device %s: %w", opts.Devices[0], err)
		}
		addrs, err := nl.AddrList(first, netlink.FAMILY_V4)
		if err != nil || len(addrs) == 0 {
			return nil, fmt.Errorf("device %s: no IPv4 address to use as the node IP", opts.Devices[0])
		}
		d.nodeIP, _ = netip.AddrFromSlice(addrs[0].IP.To4())
	}
	underlay, err := deviceWithAddr(nl, d.nodeIP)
	if err != nil {
		return nil, err
	}
	d.mtu = planMTU(c, underlay, d.nodeIP, 0)
	if d.nodePortAddrs, err = deviceAddrs(nl, d.nodeIP, opts.Devices); err != nil {
		return nil, err
	}

	if d.subnet, err = deviceSubnet(nl, d.nodeIP); err != nil {
		return nil, err
	}

	node := bpfconfig.Node{ID: nodeID, IP: d.nodeIP, TunnelMTU: d.mtu.Route, SubnetBits: d.subnet.Bits()}
	if c.RoutingMode == config.RoutingTunnel {
		node.TunnelMTU = d.mtu.Tunnel
	}
	if c.LBSock && c.LBSockHostnsOnly {
		if node.NetnsCookie, err = netnsCookie(); err != nil {
			return nil, err
		}
	}
	if c.RoutingMode == config.RoutingTunnel && c.TunnelProtocol == config.TunnelVXLAN {
		// The vxlan device must exist before the load: its ifindex is a constant.
		if d.vxlan, err = ensureVXLAN(nl, tunnelPort(c), d.mtu.Tunnel); err != nil {
			return nil, err
		}
		node.VXLANIfindex = d.vxlan.Attrs().Index
	}
	var sizes loader.MapSizes
	if d.cfg, sizes, err = datapathConfig(c, node); err != nil {
		return nil, err
	}
	for _, sub := range []string{"maps", "links"} {
		if err := os.MkdirAll(filepath.Join(opts.BPFFS, sub), 0o700); err != nil {
			return nil, fmt.Errorf("bpffs folder: %w", err)
		}
	}
	d.dp, err = loader.LoadDatapath(d.cfg, &loader.Options{PinPath: filepath.Join(opts.BPFFS, "maps"), MapSizes: sizes})
	if err != nil {
		return nil, err
	}
	if d.gen, err = maps.OpenGenerations(filepath.Join(opts.BPFFS, "maps")); err != nil {
		d.dp.Close()
		return nil, err
	}
	return d, nil
}

// datapathConfig is the start-up translation of the agent: the BPF configuration and
// map sizes openDatapath loads, from the validated config and the node's facts.
func datapathConfig(c *config.Config, node bpfconfig.Node) (bpfconfig.Config, loader.MapSizes, error) {
	var sizes loader.MapSizes
	cfg, err := bpfconfig.Build(c, node)
	if err != nil {
		return cfg, sizes, err
	}
	if c.KubeProxyReplacement == config.KPRTrue {
		sizes.CTTCP, sizes.CTAny = uint32(c.CTTCPMax), uint32(c.CTAnyMax)
	}
	if c.KubeProxyReplacement == config.KPRTrue || c.Masquerading() == config.MasqueradeBPF {
		sizes.SNAT = uint32(c.NATGlobalMax) // bpf-nat-global-max
	}
	return cfg, sizes, nil
}

// Close releases the agent's handles; pinned maps and links, and so the attached
// programs, stay.
func (d *datapath) Close() error {
	d.healthClose()
	var errs []error
	for _, l := range d.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, d.dp.Close())
	if d.gen != nil {
		errs = append(errs, d.gen.Close())
	}
	d.nl.Close()
	return errors.Join(errs...)
}

// attach puts prog on dev's tcx hook through a pinned link. A link already pinned for
// the same device is adopted and its program replaced in one step (BPF_LINK_UPDATE), so
// packets never meet a hook without a program; a stale pin (device recreated) is
// replaced.
func (d *datapath) attach(dev netlink.Link, prog *ebpf.Program, dir loader.Direction) error {
	name := linkPinName(dev.Attrs().Name, dir)
	pin := filepath.Join(d.bpffs, "links", name)
	if old, ok := d.links[name]; ok {
		if err := old.Update(prog); err == nil {
			return nil
		}
		_ = old.Unpin()
		old.Close()
		delete(d.links, name)
	}
	if l, err := link.LoadPinnedLink(pin, nil); err == nil {
		info, ierr := l.Info()
		if ierr == nil && tcxIfindex(info) == dev.Attrs().Index {
			if err := l.Update(prog); err != nil {
				l.Close()
				return fmt.Errorf("update pinned tcx link %s: %w", pin, err)
			}
			d.links[name] = l
			d.adopted = true
			return nil
		}
		_ = l.Unpin()
		l.Close()
	}
	l, err := loader.AttachTCX(prog, dev.Attrs().Index, dir)
	if err != nil {
		return fmt.Errorf("%s: %w", dev.Attrs().Name, err)
	}
	if err := l.Pin(pin); err != nil {
		l.Close()
		return fmt.Errorf("pin tcx link %s: %w", pin, err)
	}
	d.links[name] = l
	return nil
}

// linkPinName is <device>@<direction>: bpffs refuses names with a dot (EPERM), so a dot
// in a device name (eth0.100) becomes '_'.
func linkPinName(dev string, dir loader.Direction) string {
	return strings.ReplaceAll(dev, ".", "_") + "@" + dir.String()
}

func tcxIfindex(info *link.Info) int {
	if tcx := info.TCX(); tcx != nil {
		return int(tcx.Ifindex)
	}
	return -1
}

func (d *datapath) attachDevice(name string) error {
	dev, err := d.nl.LinkByName(name)
	if err != nil {
		return fmt.Errorf("device %s: %w", name, err)
	}
	return errors.Join(d.attach(dev, d.dp.FromNetdev, loader.Ingress), d.attach(dev, d.dp.ToNetdev, loader.Egress))
}

// attachOverlay puts from-overlay on the vxlan device, when there is one.
func (d *datapath) attachOverlay() error {
	if d.vxlan == nil {
		return nil
	}
	return d.attach(d.vxlan, d.dp.FromOverlay, loader.Ingress)
}

func (d *datapath) attachEndpoint(host netlink.Link) error {
	return errors.Join(d.attach(host, d.dp.FromContainer, loader.Ingress), d.attach(host, d.dp.ToContainer, loader.Egress))
}

func (d *datapath) detachEndpoint(hostVeth string) error {
	var errs []error
	for _, dir := range []loader.Direction{loader.Ingress, loader.Egress} {
		name := linkPinName(hostVeth, dir)
		if l, ok := d.links[name]; ok {
			errs = append(errs, l.Unpin(), l.Close())
			delete(d.links, name)
		} else if err := os.Remove(filepath.Join(d.bpffs, "links", name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (d *datapath) endpointUpsert(ep Endpoint, host netlink.Link, podMAC []byte) error {
	err := d.dp.Maps.EndpointUpsert(maps.Endpoint{
		IP: ep.IP, Ifindex: uint32(host.Attrs().Index), MAC: podMAC, HostMAC: host.Attrs().HardwareAddr, Identity: ep.Identity,
	})
	if err != nil {
		return err
	}
	return d.dp.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.PrefixFrom(ep.IP, 32), Identity: ep.Identity})
}

func (d *datapath) endpointDelete(ep Endpoint) error {
	return errors.Join(d.dp.Maps.EndpointDelete(ep.IP), d.dp.Maps.IPCacheDelete(netip.PrefixFrom(ep.IP, 32)))
}

// nodeUpsert programs a node: its IP in the node map and ipcache (host identity for
// this node, remote-node for others) and, for other nodes, their PodCIDR in the
// ipcache with the node as tunnel endpoint, as Cilium does without per-pod entries.
// mtu is the tunnel MTU towards the node (0: the global one; see pmtu.go).
func (d *datapath) nodeUpsert(n Node, local bool, mtu uint32, podIdentity func(map[string]string) (uint32, error)) error {
	if err := d.dp.Maps.NodeUpsert(maps.Node{IP: n.IP, ID: n.ID, MTU: mtu}); err != nil {
		return err
	}
	if local {
		return d.dp.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.PrefixFrom(n.IP, 32), Identity: identityHost})
	}
	errs := []error{
		d.dp.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.PrefixFrom(n.IP, 32), Identity: identityRemoteNode}),
		d.dp.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: n.PodCIDR, Identity: identityWorld, TunnelEndpoint: n.IP}),
	}
	// Every pod of the node by address, with the identity of its labels: what native
	// routing and policy read as a source's identity. Without podIdentity (kvstore
	// identities) the kvstore watch places them instead.
	for _, p := range n.Pods {
		if podIdentity == nil {
			break
		}
		id, err := podIdentity(p.Labels)
		if err == nil {
			err = d.dp.Maps.IPCacheUpsert(maps.IPCacheEntry{Prefix: netip.PrefixFrom(p.IP, 32), Identity: id, TunnelEndpoint: n.IP})
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (d *datapath) nodeDelete(n Node) error {
	errs := []error{
		d.dp.Maps.NodeDelete(n.IP),
		d.dp.Maps.IPCacheDelete(netip.PrefixFrom(n.IP, 32)),
		d.dp.Maps.IPCacheDelete(n.PodCIDR),
	}
	for _, p := range n.Pods {
		errs = append(errs, d.dp.Maps.IPCacheDelete(netip.PrefixFrom(p.IP, 32)))
	}
	return errors.Join(errs...)
}

// prune removes map entries and link pins that no desired endpoint or node accounts
// for: what was deleted while no agent ran.
func (d *datapath) prune(eps []Endpoint, nodes []Node) error {
	wantEP, wantPrefix, wantNode, wantLink := map[netip.Addr]bool{}, map[netip.Prefix]bool{}, map[netip.Addr]bool{}, map[string]bool{}
	want := func(dev string) {
		wantLink[linkPinName(dev, loader.Ingress)], wantLink[linkPinName(dev, loader.Egress)] = true, true
	}
	for _, dev := range d.devices {
		want(dev)
	}
	if d.vxlan != nil {
		wantLink[linkPinName(vxlanDevice, loader.Ingress)] = true
	}
	// socket-LB's cgroup links, pp_svc_in's, and the devices' XDP links: without its
	// pin an XDP link lives only as long as this agent's file descriptor, so a crash
	// would detach XDP and the next agent would have nothing to adopt.
	for name := range d.links {
		if strings.HasPrefix(name, "cgroup@") || strings.HasSuffix(name, "@"+xdpDir) || name == linkPinName(hostSvcPeer, loader.Ingress) {
			wantLink[name] = true
		}
	}
	for _, ep := range eps {
		wantEP[ep.IP] = true
		wantPrefix[netip.PrefixFrom(ep.IP, 32)] = true
		want(ep.HostVeth)
	}
	for _, n := range nodes {
		wantNode[n.IP] = true
		wantPrefix[netip.PrefixFrom(n.IP, 32)] = true
		wantPrefix[n.PodCIDR] = true
		for _, p := range n.Pods {
			wantPrefix[netip.PrefixFrom(p.IP, 32)] = true
		}
	}
	var errs []error
	have, err := d.dp.Maps.EndpointList()
	errs = append(errs, err)
	for _, e := range have {
		if !wantEP[e.IP] {
			errs = append(errs, d.dp.Maps.EndpointDelete(e.IP))
		}
	}
	cache, err := d.dp.Maps.IPCacheList()
	errs = append(errs, err)
	for _, e := range cache {
		if !wantPrefix[e.Prefix] {
			errs = append(errs, d.dp.Maps.IPCacheDelete(e.Prefix))
		}
	}
	known, err := d.dp.Maps.NodeList()
	errs = append(errs, err)
	for _, n := range known {
		if !wantNode[n.IP] {
			errs = append(errs, d.dp.Maps.NodeDelete(n.IP))
		}
	}
	pins, err := os.ReadDir(filepath.Join(d.bpffs, "links"))
	errs = append(errs, err)
	for _, p := range pins {
		if !wantLink[p.Name()] {
			errs = append(errs, os.Remove(filepath.Join(d.bpffs, "links", p.Name())))
		}
	}
	return errors.Join(errs...)
}

// attached lists program@device/direction for status.
func (d *datapath) attached() []string {
	var out []string
	for name := range d.links {
		dev, dir, _ := strings.Cut(name, "@")
		prog := "from-container"
		switch {
		case dir == xdpDir:
			prog = "xdp"
		case isDevice(d.devices, dev) && dir == "ingress":
			prog = "from-netdev"
		case isDevice(d.devices, dev):
			prog = "to-netdev"
		case dev == vxlanDevice:
			prog = "from-overlay"
		case dev == hostSvcPeer:
			prog = "from-host-svc"
		case dev == "cgroup":
			prog = "sock-" + dir
		case dir == "egress":
			prog = "to-container"
		}
		out = append(out, fmt.Sprintf("%s@%s/%s", prog, dev, dir))
	}
	sort.Strings(out)
	return out
}

func isDevice(devs []string, name string) bool {
	for _, d := range devs {
		if d == name {
			return true
		}
	}
	return false
}

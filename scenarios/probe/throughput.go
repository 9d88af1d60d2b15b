// SPDX-License-Identifier: Apache-2.0

package probe

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"podpath/internal/nsutil"
	"podpath/topology"
	topons "podpath/topology/netns"
)

// IPerf3Port is the port the iperf3 server listens on (iperf3's default).
const IPerf3Port = 5201

// listenTimeout bounds the wait for the iperf3 server to listen.
const listenTimeout = 5 * time.Second

// Starter starts a prepared command inside a member's network namespace, so that the
// process is born there. topology.Cluster and *VethPair are Starters.
type Starter interface {
	StartCmd(member string, cmd *exec.Cmd) error
}

var _ Starter = (topology.Cluster)(nil)

// ThroughputResult is one iperf3 run: a single TCP stream from client to server.
type ThroughputResult struct {
	Client, Server string
	ServerIP       netip.Addr
	// Seconds is the measured duration.
	Seconds float64
	// BitsPerSecond is the goodput the receiver saw (iperf3's end.sum_received).
	BitsPerSecond float64
	// SenderBitsPerSecond is what the sender pushed (end.sum_sent).
	SenderBitsPerSecond float64
	// Retransmits counted by the sender's TCP stack.
	Retransmits int
	// MSS is the sender's TCP maximum segment size; 0 when iperf3 did not report it.
	MSS int
	// CPU utilization in percent of one machine (all cores) of the client (host) and
	// the server (remote) process, as iperf3 measures it.
	ClientCPU, ServerCPU float64
}

// Gbps is the receiver's goodput in Gbit/s.
func (r ThroughputResult) Gbps() float64 { return r.BitsPerSecond / 1e9 }

func (r ThroughputResult) String() string {
	return fmt.Sprintf("%s -> %s (%s): %.2f Gbit/s, %d retransmits, mss %d, cpu client %.0f%% server %.0f%%",
		r.Client, r.Server, r.ServerIP, r.Gbps(), r.Retransmits, r.MSS, r.ClientCPU, r.ServerCPU)
}

// IPerf3 measures the throughput of one TCP stream from member client to member server
// for seconds seconds, unpinned, on port IPerf3Port. See IPerf3Test.Run.
func IPerf3(ctx context.Context, s Starter, client, server string, serverIP netip.Addr, seconds int) (ThroughputResult, error) {
	return IPerf3Test{Client: client, Server: server, ServerIP: serverIP, Seconds: seconds}.Run(ctx, s)
}

// IPerf3Test is one iperf3 measurement: a single TCP stream from Client to Server.
type IPerf3Test struct {
	// Client and Server are members of the Starter (pods, nodes, "veth-a", ...).
	Client, Server string
	// ServerIP is the address the server binds and the client connects to.
	ServerIP netip.Addr
	Seconds  int
	// Port of the server; IPerf3Port when zero.
	Port int
	// Connect, when set, is where the client connects instead of ServerIP:Port (a
	// service frontend that leads to the server).
	Connect netip.AddrPort
	// CPUs, when set, pins the client to CPUs[0] and the server to CPUs[1]
	// (`iperf3 -A c,s`): on a small machine the scheduler otherwise puts them on one
	// CPU in some runs and on two in others, and the results differ by half.
	CPUs []int
}

// Run starts `iperf3 -s -1 -B ServerIP` in Server's namespace, waits until it listens,
// runs `iperf3 -c ServerIP -t Seconds -J` in Client's namespace and parses its JSON
// report. Both processes are started inside their namespaces through s (a
// topology.Cluster, whose Down kills whatever outlives the run, or a *VethPair).
func (x IPerf3Test) Run(ctx context.Context, s Starter) (ThroughputResult, error) {
	res := ThroughputResult{Client: x.Client, Server: x.Server, ServerIP: x.ServerIP}
	fail := func(err error) (ThroughputResult, error) {
		return res, fmt.Errorf("iperf3 %s -> %s (%s): %w", x.Client, x.Server, x.ServerIP, err)
	}
	if x.Seconds <= 0 {
		return fail(fmt.Errorf("duration %ds: want at least 1", x.Seconds))
	}
	if x.CPUs != nil && len(x.CPUs) != 2 {
		return fail(fmt.Errorf("CPUs %v: want [client server]", x.CPUs))
	}
	if x.Port == 0 {
		x.Port = IPerf3Port
	}
	port := strconv.Itoa(x.Port)

	srvCtx, srvCancel := context.WithCancel(ctx)
	defer srvCancel()
	var srvOut bytes.Buffer
	srv := exec.CommandContext(srvCtx, "iperf3", "-s", "-1", "-B", x.ServerIP.String(), "-p", port)
	srv.Stdout, srv.Stderr = &srvOut, &srvOut
	if err := s.StartCmd(x.Server, srv); err != nil {
		return fail(err)
	}
	srvDone := make(chan error, 1)
	go func() { srvDone <- srv.Wait() }()
	// The one-off server exits after its client; kill it if it does not (a failure).
	defer func() {
		select {
		case <-srvDone:
		case <-time.After(5 * time.Second):
			srvCancel()
			<-srvDone
		}
	}()
	if err := waitListen(ctx, srv.Process.Pid, x.Port, srvDone); err != nil {
		return fail(fmt.Errorf("server in %s: %w: %s", x.Server, err, strings.TrimSpace(srvOut.String())))
	}

	cliCtx, cliCancel := context.WithTimeout(ctx, time.Duration(x.Seconds)*time.Second+30*time.Second)
	defer cliCancel()
	target, tport := x.ServerIP.String(), port
	if x.Connect.IsValid() {
		target, tport = x.Connect.Addr().String(), strconv.Itoa(int(x.Connect.Port()))
	}
	argv := []string{"iperf3", "-c", target, "-p", tport, "-t", strconv.Itoa(x.Seconds), "-J"}
	if x.CPUs != nil {
		argv = append(argv, "-A", fmt.Sprintf("%d,%d", x.CPUs[0], x.CPUs[1]))
	}
	var out, errOut bytes.Buffer
	cli := exec.CommandContext(cliCtx, argv[0], argv[1:]...)
	cli.Stdout, cli.Stderr = &out, &errOut
	if err := s.StartCmd(x.Client, cli); err != nil {
		return fail(err)
	}
	waitErr := cli.Wait()
	rep, perr := parseIPerf3(out.Bytes())
	switch {
	case perr == nil:
	case waitErr != nil:
		return fail(fmt.Errorf("client in %s: %w: %s", x.Client, waitErr, strings.TrimSpace(errOut.String()+" "+out.String())))
	default:
		return fail(perr)
	}
	if rep.Error != "" {
		return fail(fmt.Errorf("client in %s: %s", x.Client, rep.Error))
	}
	if waitErr != nil {
		return fail(fmt.Errorf("client in %s: %w", x.Client, waitErr))
	}
	rep.fill(&res)
	if res.BitsPerSecond <= 0 {
		return fail(errors.New("report has no received throughput (end.sum_received)"))
	}
	return res, nil
}

// iperf3Report is the part of `iperf3 -c -J` output that ThroughputResult needs.
type iperf3Report struct {
	Start struct {
		TCPMSSDefault int `json:"tcp_mss_default"`
		TCPMSS        int `json:"tcp_mss"`
	} `json:"start"`
	End struct {
		SumSent struct {
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
			Retransmits   int     `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Seconds       float64 `json:"seconds"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
		CPU struct {
			HostTotal   float64 `json:"host_total"`
			RemoteTotal float64 `json:"remote_total"`
		} `json:"cpu_utilization_percent"`
	} `json:"end"`
	Error string `json:"error"`
}

func parseIPerf3(data []byte) (*iperf3Report, error) {
	var rep iperf3Report
	if err := json.Unmarshal(data, &rep); err != nil {
		return nil, fmt.Errorf("parse iperf3 JSON report: %w", err)
	}
	return &rep, nil
}

func (rep *iperf3Report) fill(res *ThroughputResult) {
	e := rep.End
	res.Seconds = e.SumReceived.Seconds
	res.BitsPerSecond = e.SumReceived.BitsPerSecond
	res.SenderBitsPerSecond = e.SumSent.BitsPerSecond
	res.Retransmits = e.SumSent.Retransmits
	res.ClientCPU, res.ServerCPU = e.CPU.HostTotal, e.CPU.RemoteTotal
	res.MSS = rep.Start.TCPMSSDefault
	if rep.Start.TCPMSS != 0 { // set when the MSS was forced with -M
		res.MSS = rep.Start.TCPMSS
	}
}

// waitListen polls /proc/PID/net/tcp{,6}, which show the network namespace of process
// pid, until a socket listens on port. A probe connection would use up `iperf3 -s -1`.
func waitListen(ctx context.Context, pid, port int, exited <-chan error) error {
	ctx, cancel := context.WithTimeout(ctx, listenTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if listening(pid, port) {
			return nil
		}
		select {
		case err := <-exited:
			return fmt.Errorf("exited before listening on %d (%v)", port, err)
		case <-ctx.Done():
			return fmt.Errorf("not listening on %d after %v: %w", port, listenTimeout, ctx.Err())
		case <-tick.C:
		}
	}
}

func listening(pid, port int) bool {
	const tcpListen = "0A"
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{"tcp", "tcp6"} {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			// sl local_address rem_address st ...
			fields := strings.Fields(sc.Text())
			if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == tcpListen {
				return true
			}
		}
	}
	return false
}

// VethPair is the throughput baseline: two network namespaces joined directly by one
// veth pair, no bridge, no routing, no BPF. Its namespaces are pp-<id>-veth-a and
// pp-<id>-veth-b of a run claimed with topons.Claim: once the process that made the
// pair dies, `podpath clean` removes them like any crashed run.
type VethPair struct {
	ID string
	// A and B are the two ends; their members are named "veth-a" and "veth-b".
	A, B VethEnd
}

// VethEnd is one end of a VethPair.
type VethEnd struct {
	Member string // "veth-a" or "veth-b"
	Netns  string // pp-<id>-veth-a
	NsPath string
	Ifname string       // "veth0"
	Addr   netip.Prefix // 10.250.x.1/30 (A) or 10.250.x.2/30 (B)
	MTU    int
}

// VethPairUp creates two namespaces and one veth pair between them with MTU mtu (0:
// 1500), addresses 10.250.x.1/30 and .2/30 and both ends up and carrying
// (`ip netns add`, `ip link add veth0 netns A type veth peer veth0 netns B`). A failure
// removes whatever was made; on success the caller must Down the pair.
func VethPairUp(ctx context.Context, mtu int) (_ *VethPair, err error) {
	if mtu == 0 {
		mtu = 1500
	}
	id, err := topons.Claim("veth-pair", "veth-a", "veth-b")
	if err != nil {
		return nil, fmt.Errorf("veth pair up: %w", err)
	}
	x, _ := strconv.ParseUint(id[:2], 16, 8)
	base := netip.AddrFrom4([4]byte{10, 250, byte(x), 0})
	p := &VethPair{ID: id}
	p.A = VethEnd{Member: "veth-a", Ifname: "veth0", Addr: netip.PrefixFrom(base.Next(), 30), MTU: mtu}
	p.B = VethEnd{Member: "veth-b", Ifname: "veth0", Addr: netip.PrefixFrom(base.Next().Next(), 30), MTU: mtu}
	for _, e := range []*VethEnd{&p.A, &p.B} {
		e.Netns = topons.NetnsName(id, e.Member)
		e.NsPath = nsutil.Path(e.Netns)
	}
	defer func() {
		if err != nil {
			err = errors.Join(fmt.Errorf("veth pair up: %w", err), p.Down(context.WithoutCancel(ctx)))
		}
	}()
	for _, e := range []*VethEnd{&p.A, &p.B} {
		if err := nsutil.Create(e.Netns); err != nil {
			return nil, err
		}
	}
	ha, fa, err := handleAt(p.A.NsPath)
	if err != nil {
		return nil, err
	}
	defer ha.Close()
	defer fa.Close()
	hb, fb, err := handleAt(p.B.NsPath)
	if err != nil {
		return nil, err
	}
	defer hb.Close()
	defer fb.Close()
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU = p.A.Ifname, mtu
	// Distinct ifindexes on the two ends: see topology.firstIfindex on linkwatch delays.
	la.Index = 100
	veth := &netlink.Veth{LinkAttrs: la, PeerName: p.B.Ifname, PeerNamespace: netlink.NsFd(fb), PeerMTU: uint32(mtu), PeerTxQLen: -1}
	if err := ha.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("add veth %s in %s (peer in %s): %w", p.A.Ifname, p.A.Netns, p.B.Netns, err)
	}
	for _, s := range []struct {
		h *netlink.Handle
		e VethEnd
	}{{ha, p.A}, {hb, p.B}} {
		link, err := s.h.LinkByName(s.e.Ifname)
		if err != nil {
			return nil, fmt.Errorf("find %s in %s: %w", s.e.Ifname, s.e.Netns, err)
		}
		ipn := &net.IPNet{IP: s.e.Addr.Addr().AsSlice(), Mask: net.CIDRMask(s.e.Addr.Bits(), 32)}
		if err := s.h.AddrAdd(link, &netlink.Addr{IPNet: ipn}); err != nil {
			return nil, fmt.Errorf("add address %s to %s in %s: %w", s.e.Addr, s.e.Ifname, s.e.Netns, err)
		}
		if err := s.h.LinkSetUp(link); err != nil {
			return nil, fmt.Errorf("set %s up in %s: %w", s.e.Ifname, s.e.Netns, err)
		}
	}
	if err := waitOperUp(ctx, []*netlink.Handle{ha, hb}, p.A.Ifname); err != nil {
		return nil, err
	}
	return p, nil
}

// StartCmd starts cmd inside the namespace of member ("veth-a" or "veth-b"); Down kills
// it if it still runs. The caller Waits for it.
func (p *VethPair) StartCmd(member string, cmd *exec.Cmd) error {
	var e VethEnd
	switch member {
	case p.A.Member:
		e = p.A
	case p.B.Member:
		e = p.B
	default:
		return fmt.Errorf("veth pair %s: member %q: %w (want %s or %s)", p.ID, member, topology.ErrNotFound, p.A.Member, p.B.Member)
	}
	var startErr error
	if err := nsutil.Do(e.NsPath, func() error {
		startErr = cmd.Start()
		return nil
	}); err != nil {
		return fmt.Errorf("start %q in %s: %w", strings.Join(cmd.Args, " "), e.Netns, err)
	}
	if startErr != nil {
		return fmt.Errorf("start %q in %s: %w", strings.Join(cmd.Args, " "), e.Netns, startErr)
	}
	return nil
}

// Down kills every process inside the pair's namespaces, deletes them (the veth goes
// with them) and releases the run. Calling it again is a no-op.
func (p *VethPair) Down(ctx context.Context) error {
	if err := topons.Release(ctx, p.ID); err != nil {
		return fmt.Errorf("veth pair down %s: %w", p.ID, err)
	}
	return nil
}

// handleAt returns a netlink handle that targets the namespace at nsPath, and the
// namespace's handle (for PeerNamespace); close both.
func handleAt(nsPath string) (*netlink.Handle, netns.NsHandle, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, 0, fmt.Errorf("open netns %s: %w", nsPath, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, 0, fmt.Errorf("netlink handle in %s: %w", nsPath, err)
	}
	return h, ns, nil
}

// waitOperUp waits until ifname is operationally up in every handle's namespace.
func waitOperUp(ctx context.Context, hs []*netlink.Handle, ifname string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for _, h := range hs {
		for {
			link, err := h.LinkByName(ifname)
			if err != nil {
				return fmt.Errorf("find %s: %w", ifname, err)
			}
			if link.Attrs().OperState == netlink.OperUp {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s not up (%s): %w", ifname, link.Attrs().OperState, ctx.Err())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	return nil
}

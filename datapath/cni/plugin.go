// SPDX-License-Identifier: Apache-2.0

package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"

	"podpath/datapath/agent"
	"podpath/internal/version"
)

// podpath-cni's own error codes (the CNI spec leaves 100 and up to plugins).
const (
	// ErrAgentRefused: the agent refused the request (an address that is taken or
	// outside the node's PodCIDR, an interface name other than eth0, ...).
	ErrAgentRefused uint = 100
	// ErrAgentFailed: the agent accepted the request but failed to carry it out.
	ErrAgentFailed uint = 101
	// ErrCheckFailed: CHECK found the attachment not as ADD left it.
	ErrCheckFailed uint = 102
)

// SupportedVersions are the CNI versions podpath-cni speaks; results are converted
// to the request's cniVersion.
var SupportedVersions = cniversion.PluginSupports("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")

// agentTimeout bounds one command's calls to the agent; kubelet's own deadline is minutes.
const agentTimeout = 60 * time.Second

// Main runs the command the runtime asks for in CNI_COMMAND. Its error is the CNI
// error to print on stdout before exiting 1.
func Main() *types.Error {
	return skel.PluginMainFuncsWithError(skel.CNIFuncs{
		Add: cmdAdd, Del: cmdDel, Check: cmdCheck, GC: cmdGC, Status: cmdStatus,
	}, SupportedVersions, "podpath-cni "+version.String()+": hands pod attachments to the node's podpath-agent")
}

func client(conf *NetConf) (*agent.Client, context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), agentTimeout)
	return agent.NewClient(conf.AgentSocket), ctx, cancel
}

// agentError turns an agent call's error into a CNI error: an agent that is not there
// (no socket, nobody listening, no answer in time) or not ready says try again later.
func agentError(conf *NetConf, op string, err error) error {
	var in *agent.InputError
	code := ErrAgentFailed
	switch {
	case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, agent.ErrUnavailable):
		return types.NewError(types.ErrTryAgainLater, fmt.Sprintf("%s: podpath agent at %s is not available", op, conf.AgentSocket), err.Error())
	case errors.As(err, &in):
		code = ErrAgentRefused
	case errors.Is(err, agent.ErrNotFound):
		code = types.ErrUnknownContainer
	}
	return types.NewError(code, fmt.Sprintf("%s: %v", op, err), "")
}

// request reads stdin and CNI_ARGS into what the agent needs for ADD.
func request(args *skel.CmdArgs) (*NetConf, agent.AttachmentRequest, error) {
	conf, fromConf, err := parseConf(args.StdinData)
	if err != nil {
		return nil, agent.AttachmentRequest{}, err
	}
	ka, fromArgs, err := parseArgs(args.Args)
	if err != nil {
		return nil, agent.AttachmentRequest{}, err
	}
	if args.IfName != agent.PodIfName {
		return nil, agent.AttachmentRequest{}, types.NewError(types.ErrInvalidEnvironmentVariables,
			fmt.Sprintf("CNI_IFNAME %q: podpath plumbs the pod's interface as %s only", args.IfName, agent.PodIfName), "")
	}
	req := agent.AttachmentRequest{PodSandbox: agent.PodSandbox{
		ContainerID: args.ContainerID, IfName: args.IfName, Netns: args.Netns,
		Namespace: string(ka.K8S_POD_NAMESPACE), Pod: string(ka.K8S_POD_NAME), PodUID: string(ka.K8S_POD_UID),
	}, MTU: conf.MTU}
	switch {
	case fromConf != nil && fromArgs != nil && *fromConf != *fromArgs:
		return nil, req, types.NewError(types.ErrInvalidNetworkConfig,
			fmt.Sprintf("runtimeConfig.ips asks for %s, CNI_ARGS IP= for %s", *fromConf, *fromArgs), "")
	case fromConf != nil:
		req.RequestedIP = *fromConf
	case fromArgs != nil:
		req.RequestedIP = *fromArgs
	}
	return conf, req, nil
}

// cmdAdd asks the agent to attach the pod and prints the CNI result: the host veth and
// the pod's interface (index 1, in the sandbox), its /32 address with the node's pod
// gateway, and its default route.
func cmdAdd(args *skel.CmdArgs) error {
	conf, req, err := request(args)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	res, err := c.AttachmentAdd(ctx, req)
	if err != nil {
		return agentError(conf, "ADD", err)
	}
	return types.PrintResult(result(res, conf.CNIVersion), conf.CNIVersion)
}

// result renders the agent's answer as a CNI result. Interface and route MTUs are
// CNI 1.1 fields: older requests do not get them.
func result(r agent.AttachmentResult, cniVersion string) *current.Result {
	v11, _ := cniversion.GreaterThanOrEqualTo(cniVersion, "1.1.0")
	pod := &current.Interface{Name: r.IfName, Mac: r.PodMAC, Sandbox: r.Netns}
	def := &types.Route{Dst: ipNet(netip.IPv4Unspecified(), 0), GW: net.IP(r.Gateway.AsSlice())}
	if v11 {
		pod.Mtu, def.MTU = r.MTU, r.RouteMTU
	}
	return &current.Result{
		CNIVersion: current.ImplementedSpecVersion,
		Interfaces: []*current.Interface{{Name: r.HostVeth, Mac: r.HostMAC}, pod},
		IPs:        []*current.IPConfig{{Interface: current.Int(1), Address: ipNet(r.IP, 32), Gateway: net.IP(r.Gateway.AsSlice())}},
		Routes:     []*types.Route{def},
	}
}

// cmdDel asks the agent to detach the pod. It succeeds when the agent knows no such
// attachment (a repeated DEL, a pod whose ADD failed) and needs no netns: DEL may come
// after the runtime removed it.
func cmdDel(args *skel.CmdArgs) error {
	conf, _, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	if err := c.AttachmentDelete(ctx, agent.AttachmentKey{ContainerID: args.ContainerID, IfName: args.IfName}); err != nil {
		return agentError(conf, "DEL", err)
	}
	return nil
}

// cmdCheck compares prevResult with what the agent and the pod's namespace hold: the
// agent knows the attachment with the same address and sees no problem with its node
// side; in the pod, the interface is up with every address and route of prevResult.
func cmdCheck(args *skel.CmdArgs) error {
	conf, _, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	if conf.PrevResult == nil {
		return types.NewError(types.ErrInvalidNetworkConfig, "CHECK needs prevResult in the network config", "")
	}
	prev, err := current.NewResultFromResult(conf.PrevResult)
	if err != nil {
		return types.NewError(types.ErrDecodingFailure, "convert prevResult", err.Error())
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	key := agent.AttachmentKey{ContainerID: args.ContainerID, IfName: args.IfName}
	res, err := c.AttachmentGet(ctx, key)
	if err != nil {
		return agentError(conf, "CHECK", err)
	}
	failed := func(format string, a ...any) error {
		return types.NewError(ErrCheckFailed, fmt.Sprintf("CHECK %s: "+format, append([]any{key}, a...)...), "")
	}
	if len(res.Problems) > 0 {
		return failed("the agent reports: %v", res.Problems)
	}
	if res.Netns != args.Netns {
		return failed("attached in netns %s, CNI_NETNS is %s", res.Netns, args.Netns)
	}
	if err := prevMatches(prev, res); err != nil {
		return failed("prevResult: %v", err)
	}
	if err := checkPod(args.Netns, args.IfName, prev); err != nil {
		return failed("%v", err)
	}
	return nil
}

// prevMatches says whether prevResult describes the attachment: its address on the
// sandbox interface.
func prevMatches(prev *current.Result, res agent.AttachmentResult) error {
	for _, ipc := range prev.IPs {
		if ipc.Interface == nil || *ipc.Interface >= len(prev.Interfaces) {
			continue
		}
		ifc := prev.Interfaces[*ipc.Interface]
		if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok && a.Unmap() == res.IP && ifc.Name == res.IfName && ifc.Sandbox != "" {
			return nil
		}
	}
	return fmt.Errorf("no address %s on sandbox interface %s (the agent's attachment)", res.IP, res.IfName)
}

// cmdGC detaches every attachment the runtime does not list as valid.
func cmdGC(args *skel.CmdArgs) error {
	conf, _, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	keep := make([]agent.AttachmentKey, 0, len(conf.ValidAttachments))
	for _, v := range conf.ValidAttachments {
		keep = append(keep, agent.AttachmentKey{ContainerID: v.ContainerID, IfName: v.IfName})
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	gone, err := c.AttachmentGC(ctx, keep)
	for _, a := range gone {
		fmt.Fprintf(os.Stderr, "podpath-cni GC: detached %s/%s (%s, %s)\n", a.ContainerID, a.IfName, a.Endpoint, a.IP)
	}
	if err != nil {
		return agentError(conf, "GC", err)
	}
	return nil
}

// cmdStatus says whether pods can be attached: the agent answers (CNI error 50 if not).
func cmdStatus(args *skel.CmdArgs) error {
	conf, _, err := parseConf(args.StdinData)
	if err != nil {
		return err
	}
	c, ctx, cancel := client(conf)
	defer cancel()
	ctx, cancel2 := context.WithTimeout(ctx, 5*time.Second)
	defer cancel2()
	if _, err := c.Status(ctx); err != nil {
		return types.NewError(types.ErrPluginNotAvailable, fmt.Sprintf("podpath agent at %s does not answer", conf.AgentSocket), err.Error())
	}
	return nil
}

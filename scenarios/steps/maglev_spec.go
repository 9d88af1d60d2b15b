// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"podpath/datapath/agent"
	"podpath/datapath/bpfconfig"
	"podpath/datapath/config"
	"podpath/datapath/maglev"
	"podpath/datapath/maps"
	"podpath/internal/flowhash"
	"podpath/internal/maglevref"
	"podpath/scenarios"
)

// The spec oracle for bpf-lb-maglev-hash-seed and bpf-lb-maglev-table-size: a node's
// Maglev table, read from its pinned lb_maglev map, must equal the table computed
// here from the scenario's backends (addresses and weights as the scenario file
// gives them), the configured seed and the configured size with datapath/maglev, and
// the backend each flow reached on the wire must be table[lb_hash(flow) % M] with the
// flow hash of bpf/lib/lb_hash.h computed here in Go. datapath/maglev is a Go
// implementation of the published algorithm, independent of the BPF program and of
// what the agent reports; the agent uses it too, so the first comparison proves the
// agent fed it the configured seed and size, the second that the BPF program hashes
// with the configured seed and indexes a table of the configured size.

// checkMaglevSpec runs both comparisons for svcName on every node of via, with the
// flows those nodes answered (source port -> backend pod name, "" unanswered).
func checkMaglevSpec(s *scenarios.Stage, svcName string, client string, via []scenarios.NodeRef, flows []map[int]string) {
	svc := s.Services[svcName]
	cfg := effectiveConfig(s)
	m := cmp0(cfg.MaglevTableSize, maglev.DefaultTableSize)
	seed := cfg.MaglevHashSeed
	dst := vip(svc)
	var clientAddr netip.Addr
	if ifs, err := s.T.Interfaces(client); err == nil && len(ifs) > 0 {
		clientAddr = ifs[0].Address.Addr()
	}
	for i, node := range via {
		table, ids, err := maglevTableOf(s, string(node), svc)
		var want []uint32
		if err == nil {
			want, err = expectedMaglevTable(svc, ids, m, seed)
		}
		if err == nil {
			err = compareTables(table, want)
		}
		s.Check(fmt.Sprintf("Maglev spec: %s's table for %s equals the table computed from its %d backends, the configured seed and M=%d",
			node, svcName, len(svc.Backends), m),
			fmt.Sprintf("%s's pinned lb_maglev entry of %s against internal/maglevref.Table(backend IDs of lb_backends matched by address, seed %x, M %d)", node, dst, seed, m),
			err)
		if i >= len(flows) {
			continue
		}
		var ferr error
		checked := 0
		if err == nil && !clientAddr.IsValid() {
			ferr = fmt.Errorf("client %s has no address", client)
		} else if err == nil {
			checked, ferr = flowsMatchTable(s, flows[i], want, ids, clientAddr, dst, seed)
		} else {
			ferr = fmt.Errorf("no table to compare with: %w", err)
		}
		s.Check(fmt.Sprintf("Maglev spec: flows through %s reach table[lb_hash(flow, configured seed) %% %d] (%d flows compared)", node, m, checked),
			fmt.Sprintf("the backend each UDP flow's whoami answer named against the table computed for %s -> %s", clientAddr, dst), ferr)
	}
}

func cmp0(v, def int) int {
	if v == 0 {
		return def
	}
	return v
}

// maglevTableOf reads node's Maglev table of svc's external frontend and the IDs the
// lb_backends map gives the service's backends (by address and port).
func maglevTableOf(s *scenarios.Stage, node string, svc agent.Service) ([]uint32, map[netip.AddrPort]uint32, error) {
	lb, err := lbOpen(s, node)
	if err != nil {
		return nil, nil, err
	}
	defer lb.Close()
	proto := map[string]maps.Proto{"TCP": maps.ProtoTCP, "UDP": maps.ProtoUDP}[svc.Protocol]
	svcs, err := lb.ServiceList()
	if err != nil {
		return nil, nil, err
	}
	i := slices.IndexFunc(svcs, func(m maps.Service) bool {
		return m.Addr == vip(svc).Addr() && m.Port == vip(svc).Port() && m.Proto == proto
	})
	if i < 0 {
		return nil, nil, fmt.Errorf("no %s frontend %s in %s's lb_services", svc.Protocol, vip(svc), node)
	}
	table, err := lb.MaglevLookup(svcs[i].ID)
	if err != nil {
		return nil, nil, err
	}
	bes, err := lb.BackendList()
	if err != nil {
		return nil, nil, err
	}
	ids := map[netip.AddrPort]uint32{}
	for _, b := range bes {
		if b.Proto == proto {
			ids[netip.AddrPortFrom(b.Addr, b.Port)] = b.ID
		}
	}
	return table, ids, nil
}

// expectedMaglevTable is the table the spec predicts for svc's backends, computed by
// internal/maglevref (a second implementation written from the algorithm's
// description), never by datapath/maglev, the code whose tables the agents program.
func expectedMaglevTable(svc agent.Service, ids map[netip.AddrPort]uint32, m int, seed [maglev.SeedSize]byte) ([]uint32, error) {
	var bs []maglevref.Backend
	for _, b := range svc.Backends {
		id, ok := ids[netip.AddrPortFrom(b.IP, b.Port)]
		if !ok {
			return nil, fmt.Errorf("backend %s:%d of the scenario is not in lb_backends", b.IP, b.Port)
		}
		w := b.Weight
		if w == 0 {
			w = maglev.DefaultWeight
		}
		if b.State != "" && b.State != "active" {
			w = 0
		}
		bs = append(bs, maglevref.Backend{ID: id, Weight: w})
	}
	return maglevref.Table(bs, m, seed)
}

func compareTables(got, want []uint32) error {
	if len(got) != len(want) {
		return fmt.Errorf("table has %d entries, the configured size is %d", len(got), len(want))
	}
	diff := 0
	first := -1
	for i := range got {
		if got[i] != want[i] {
			diff++
			if first < 0 {
				first = i
			}
		}
	}
	if diff > 0 {
		return fmt.Errorf("%d of %d entries differ, first at %d: map %d, spec %d (a seed or size other than the configured one?)",
			diff, len(got), first, got[first], want[first])
	}
	return nil
}

// flowsMatchTable compares each answered flow's backend with the spec's choice.
func flowsMatchTable(s *scenarios.Stage, flows map[int]string, table []uint32, ids map[netip.AddrPort]uint32, client netip.Addr, dst netip.AddrPort, seed [maglev.SeedSize]byte) (int, error) {
	podOf := map[uint32]string{}
	for ap, id := range ids {
		if p, ok := podByIP(s.T, ap.Addr()); ok {
			podOf[id] = p.Name
		}
	}
	ports := make([]int, 0, len(flows))
	for port := range flows {
		ports = append(ports, port)
	}
	slices.Sort(ports)
	var errs []error
	checked, wrong := 0, 0
	for _, port := range ports {
		got := flows[port]
		if got == "" {
			continue
		}
		checked++
		h := lbHashSpec(seed, netip.AddrPortFrom(client, uint16(port)), dst, 17)
		want := podOf[table[h%uint32(len(table))]]
		if got != want {
			wrong++
			if len(errs) < 5 {
				errs = append(errs, fmt.Errorf("flow %s:%d -> %s reached %s, the table says %s", client, port, dst, got, want))
			}
		}
	}
	if checked == 0 {
		return 0, errors.New("no answered flow to compare")
	}
	if wrong > 0 {
		errs = append([]error{fmt.Errorf("%d of %d answered flows reached another backend than the spec's table says, e.g.:", wrong, checked)}, errs...)
	}
	return checked, errors.Join(errs...)
}

// lbHashSpec is the flow hash bpf/lib/lb_hash.h documents, computed in Go from that
// description (internal/flowhash), not by the datapath under test.
func lbHashSpec(seed [maglev.SeedSize]byte, src, dst netip.AddrPort, proto uint8) uint32 {
	return flowhash.LB(seed, src, dst, proto)
}

// snatExhaustion predicts from the spec how many of flows UDP flows (source ports
// firstFlowPort on, sent in that order) from client to svc, entering node, get no
// NodePort SNAT source port. Maglev (the configured seed and size, svc's backends)
// sends each flow to a backend; one on another node is reached with SNAT (modes snat
// and hybrid), and towards one backend address and port there are only as many
// source ports as the SNAT range holds (bpfconfig's default range: podpath has no key
// for it yet). nat.h's allocation is replayed: a flow's search starts at
// lb_hash(client, backend) % range and tries snatPortTries ports in a row, so it fails
// a little before the range is full. Such flows are dropped as DROP_SNAT_NO_PORT,
// which is right: the expectation says so instead of hiding them in a tolerance. why
// tells the demand per backend.
func snatExhaustion(s *scenarios.Stage, svc agent.Service, client, node string, flows int) (failed int, why string, err error) {
	cfg := effectiveConfig(s)
	if cfg.LBMode == config.LBModeDSR {
		return 0, "DSR: no SNAT", nil
	}
	m := cmp0(cfg.MaglevTableSize, maglev.DefaultTableSize)
	_, ids, err := maglevTableOf(s, node, svc)
	if err != nil {
		return 0, "", err
	}
	table, err := expectedMaglevTable(svc, ids, m, cfg.MaglevHashSeed)
	if err != nil {
		return 0, "", err
	}
	ifs, err := s.T.Interfaces(client)
	if err != nil || len(ifs) == 0 {
		return 0, "", fmt.Errorf("client %s has no address", client)
	}
	src := ifs[0].Address.Addr()
	backendOf := map[uint32]netip.AddrPort{}
	for ap, id := range ids {
		backendOf[id] = ap
	}
	const portMin, portMax = bpfconfig.DefaultSNATPortMin, bpfconfig.DefaultSNATPortMax
	rng := uint32(portMax - portMin + 1)
	used := map[netip.AddrPort][]bool{}
	demand := map[netip.AddrPort]int{}
	for port := firstFlowPort; port < firstFlowPort+flows; port++ {
		from := netip.AddrPortFrom(src, uint16(port))
		be := backendOf[table[lbHashSpec(cfg.MaglevHashSeed, from, vip(svc), 17)%uint32(len(table))]]
		if p, ok := podByIP(s.T, be.Addr()); !ok || p.Node == node {
			continue
		}
		demand[be]++
		if used[be] == nil {
			used[be] = make([]bool, rng)
		}
		off, ok := lbHashSpec(cfg.MaglevHashSeed, from, be, 17)%rng, false
		for range snatPortTries {
			if !used[be][off] {
				used[be][off], ok = true, true
				break
			}
			off = (off + 1) % rng
		}
		if !ok {
			failed++
		}
	}
	backends := make([]netip.AddrPort, 0, len(demand))
	for be := range demand {
		backends = append(backends, be)
	}
	slices.SortFunc(backends, netip.AddrPort.Compare)
	var parts []string
	for _, be := range backends {
		parts = append(parts, fmt.Sprintf("%d flows to %s", demand[be], be))
	}
	if len(parts) == 0 {
		return 0, "no flow needs SNAT", nil
	}
	return failed, fmt.Sprintf("%s through SNAT, %d source ports each, %d tries per flow", strings.Join(parts, ", "), rng, snatPortTries), nil
}

// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"fmt"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"podpath/scenarios"
)

// The ConfigMap of the seed document, pasted with its indentation lost and prose
// around it, configures a working cluster: VXLAN, BPF host routing.
var _ = Describe("the seed's cilium-config", Label("seed", "vxlan", "generic"), func() {
	It("drives a two-node cluster through the generic checks", func(ctx SpecContext) {
		seed, err := filepath.Abs("../datapath/config/testdata/seed-002-kubectl-edit.txt")
		Expect(err).NotTo(HaveOccurred())
		s, err := scenarios.Generic("../topology/catalog/l2-two-node-agent.yaml", seed)
		Expect(err).NotTo(HaveOccurred())
		r, err := scenarios.Execute(ctx, s, scenarios.Options{Artifacts: filepath.Join(artifacts, "seed"), Out: GinkgoWriter})
		Expect(err).NotTo(HaveOccurred())
		var failed []string
		for _, c := range r.Results {
			if !c.Passed {
				failed = append(failed, c.Name+": "+c.Evidence)
			}
		}
		Expect(failed).To(BeEmpty(), strings.Join(failed, "\n"))
		Expect(r.Passed()).To(BeNumerically(">=", 5))
	})

	// The seed sets enable-bpf-masquerade and enable-ipv4-masquerade "True" (its
	// cilium status: "Masquerading: BPF"): against a world that knows no PodCIDR, a
	// pod's traffic leaves with its node's address, by BPF (nftables counter 0).
	It("masquerades pods' traffic leaving the cluster in BPF", Label("masquerade"), func(ctx SpecContext) {
		seed, err := filepath.Abs("../datapath/config/testdata/seed-002-kubectl-edit.txt")
		Expect(err).NotTo(HaveOccurred())
		topo, err := filepath.Abs("../topology/catalog/masq-world-agent.yaml")
		Expect(err).NotTo(HaveOccurred())
		doc := fmt.Sprintf(`name: seed-masquerade
description: the seed's cilium-config masquerades in BPF
labels: [seed, masquerade]
stages:
  - name: seed
    topology: %q
    config: %q
    steps:
      - check: masquerade-egress
        with: {from: pod1a, to: world1}
        expect: {masqueraded: true, portMin: 32768, portMax: 60999}
      - check: masquerade-egress
        with: {from: pod1a, to: pod2, protocols: [tcp, icmp], label: pod to pod}
        expect: {masqueraded: false}
      - check: masquerade-mode
        with: {node: node1}
        expect: {mode: BPF}
`, topo, seed)
		f, err := scenarios.ParseScenario([]byte(doc), ".")
		Expect(err).NotTo(HaveOccurred())
		r, err := scenarios.Execute(ctx, f.Scenario(), scenarios.Options{Artifacts: filepath.Join(artifacts, "seed-masquerade"), Out: GinkgoWriter})
		Expect(err).NotTo(HaveOccurred())
		var failed []string
		for _, c := range r.Results {
			if !c.Passed {
				failed = append(failed, c.Name+": "+c.Evidence)
			}
		}
		Expect(failed).To(BeEmpty(), strings.Join(failed, "\n"))
		Expect(r.Passed()).To(BeNumerically(">=", 10))
	})
})

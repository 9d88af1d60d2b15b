// SPDX-License-Identifier: Apache-2.0

package e2e

import (
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
})

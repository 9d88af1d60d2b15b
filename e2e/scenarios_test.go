// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"os"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"podpath/scenarios"
	"podpath/scenarios/report"
	// Every step kind registers itself (scenarios.RegisterStep) when its package loads.
	_ "podpath/scenarios/steps"
)

// Every catalog scenario (scenarios/catalog/*.yaml, labels from the file) is one spec,
// labelled with its features, so CI can select subsets: -ginkgo.label-filter=native-routing.
var _ = Describe("scenario catalog", func() {
	for _, name := range scenarios.Names() {
		s, _ := scenarios.Lookup(name)
		// FlakeAttempts(2): on a shared 2-CPU machine a timing check now and then misses
		// (seen once in six runs: a restarted agent's BGP path not back within 45 s). A
		// scenario that fails and then passes is not hidden: ginkgo prints it as
		// [FLAKEY TEST] with the first attempt's failure, and the JUnit report keeps it.
		It(s.Name+": "+s.Description, Label(append([]string{"scenario"}, s.Labels...)...), FlakeAttempts(2), func(ctx SpecContext) {
			r, err := scenarios.Execute(ctx, s, scenarios.Options{
				Artifacts: filepath.Join(artifacts, s.Name), Out: GinkgoWriter,
			})
			Expect(err).NotTo(HaveOccurred())
			var failed []string
			for _, c := range r.Results {
				if !c.Passed {
					failed = append(failed, c.Name+"\n    looked at: "+c.LookedAt+"\n    "+c.Evidence)
				}
			}
			Expect(failed).To(BeEmpty(), "failed checks of %s:\n%s", s.Name, strings.Join(failed, "\n"))
			Expect(r.Passed()).To(BeNumerically(">", 0))
			// The trace records the run read are in its artifacts, names decoded.
			traces := r.Result().Traces
			Expect(traces).To(Equal(filepath.Join(artifacts, s.Name, report.TraceLogFile)))
			data, err := os.ReadFile(traces)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(data)).To(ContainSubstring(`"obsPoint":"OBS_FROM_`))
		})
	}
})

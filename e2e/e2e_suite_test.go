// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// artifacts is where pcaps go: $PODPATH_ARTIFACTS, or a temporary folder.
var artifacts string

func TestE2E(t *testing.T) {
	RegisterFailHandler(Fail)
	if os.Geteuid() != 0 {
		t.Skip("e2e suites need root (namespaces, BPF): run them as root")
	}
	artifacts = os.Getenv("PODPATH_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	}
	suite, reporter := GinkgoConfiguration()
	if junit := os.Getenv("PODPATH_JUNIT"); junit != "" {
		reporter.JUnitReport = junit
		_ = os.MkdirAll(filepath.Dir(junit), 0o755)
	}
	RunSpecs(t, "podpath e2e", suite, reporter)
}

var _ = BeforeSuite(func() {
	// The hubble scenario's witness: the stock CLI `make hubble` built into bin/.
	if os.Getenv("HUBBLE") == "" {
		if p, err := filepath.Abs("../bin/hubble"); err == nil {
			if _, err := os.Stat(p); err == nil {
				Expect(os.Setenv("HUBBLE", p)).To(Succeed())
			}
		}
	}
	if os.Getenv("PODPATH_AGENT") != "" {
		return
	}
	bin := filepath.Join(GinkgoT().TempDir(), "podpath-agent")
	out, err := exec.Command("go", "build", "-o", bin, "podpath/cmd/podpath-agent").CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "build podpath-agent: %s", out)
	Expect(os.Setenv("PODPATH_AGENT", bin)).To(Succeed())
})

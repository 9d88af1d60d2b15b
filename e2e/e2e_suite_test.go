// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"os"
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

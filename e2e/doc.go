// Package e2e holds the ginkgo suites that bring up topologies and check them packet by
// packet; labels per feature select subsets (-ginkgo.label-filter).
package e2e

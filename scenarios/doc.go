// Package scenarios holds the scenario catalog (topologies as data) and the checks that
// follow a packet hop by hop through a running topology.
package scenarios

// Package scenarios holds the scenario catalog as data (scenario files, topologies,
// cilium-configs), the step kinds scenario files use, and the runner that follows a
// packet hop by hop through a running topology; README.md describes the file format.
package scenarios

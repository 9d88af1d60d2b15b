// SPDX-License-Identifier: Apache-2.0

// Package benchreport turns `go test -bench` output into one table of paths, each with
// its cost (ns/pkt) or throughput (Gbit/s) and its ratio to a baseline measured in the
// same run, stores it as JSON and compares two such runs, benchstat-style.
package benchreport

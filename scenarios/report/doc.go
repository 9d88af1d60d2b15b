// SPDX-License-Identifier: Apache-2.0

// Package report holds what a scenario run leaves behind: check results, the
// conformance report (JSON, HTML, JUnit) and the trace log of the records the run read.
package report

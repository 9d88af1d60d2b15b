// Package testrun runs BPF programs on crafted packets through BPF_PROG_TEST_RUN:
// fixtures with expected verdict and output packet, diffs, and ns/packet benchmarks.
package testrun

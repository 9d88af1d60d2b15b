// Package testrun runs BPF programs on crafted packets through BPF_PROG_TEST_RUN:
// fixtures with expected verdict and output packet, diffs, ns/packet benchmarks, the
// checks every fuzz target makes (frames the kernel refuses, a trace record that
// agrees with the verdict, maps left unchanged) and the namespaces tests run in.
package testrun

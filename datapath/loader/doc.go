// Package loader loads podpath's BPF objects with their runtime constants set and
// attaches their programs to network devices with tcx.
package loader

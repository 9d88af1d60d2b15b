// Package bpfobj holds the compiled BPF objects of bpf/ and their bpf2go bindings.
package bpfobj

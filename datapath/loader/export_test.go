// SPDX-License-Identifier: Apache-2.0

package loader

// WithGeneveTestOption makes LoadDatapath set bpf_lxc's GENEVE_TEST_OPT: every Geneve
// packet then carries one Cilium-class test option (bpf/lib/encap.h), so fixtures
// exercise the option path. Tests only.
func WithGeneveTestOption(o *Options) *Options {
	o.geneveTestOpt = true
	return o
}

// SPDX-License-Identifier: Apache-2.0

package loader

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
)

func TestMissingFeatureIsNamedWithItsKernel(t *testing.T) {
	fake := []kernelFeature{
		{"bpf_redirect_peer helper", "5.10", func() error { return fmt.Errorf("probe: %w", ebpf.ErrNotSupported) }},
		{"bpf_redirect_neigh helper", "5.10", func() error { return nil }},
		{"ring buffer maps", "5.8", func() error { return errors.New("permission denied") }},
	}
	err := checkFeatures(fake)
	if err == nil {
		t.Fatal("want an error")
	}
	var mf *MissingFeatureError
	if !errors.As(err, &mf) || mf.Feature != "bpf_redirect_peer helper" || mf.MinKernel != "5.10" {
		t.Fatalf("want a MissingFeatureError for redirect_peer, got %v", err)
	}
	if !errors.Is(err, ebpf.ErrNotSupported) {
		t.Error("a missing feature should match ebpf.ErrNotSupported")
	}
	want := "bpf_redirect_peer helper is not supported by this kernel (requires Linux >= 5.10)\nprobe kernel for ring buffer maps: permission denied"
	if err.Error() != want {
		t.Errorf("error:\n%s\nwant:\n%s", err, want)
	}
	if got := fmt.Sprint(ErrTCXNotSupported); got != "tcx attach is not supported by this kernel (requires Linux >= 6.6)" {
		t.Errorf("tcx: %s", got)
	}
}

func TestThisKernelHasTheDatapathFeatures(t *testing.T) {
	if err := CheckFeatures(); err != nil {
		var mf *MissingFeatureError
		if errors.As(err, &mf) {
			t.Skipf("kernel lacks a datapath feature: %v", err)
		}
		t.Fatal(err)
	}
}

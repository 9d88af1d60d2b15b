// SPDX-License-Identifier: Apache-2.0

package loadertest

import (
	"testing"

	"podpath/datapath/bpfconfig"
	"podpath/datapath/bpfobj"
	"podpath/datapath/loader"
	"podpath/datapath/trace"
	"podpath/internal/testutil"
)

// LoadProbe loads bpf_probe with cfg and opens its trace reader, both closed when the
// test ends; it skips the test when not root.
func LoadProbe(t *testing.T, cfg bpfconfig.Config) (*bpfobj.ProbeObjects, *trace.Reader) {
	t.Helper()
	testutil.RequireRoot(t)
	objs, err := loader.LoadProbe(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { objs.Close() })
	rd, err := trace.NewReader(objs.TraceEvents)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rd.Close() })
	return objs, rd
}

// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
)

// KernelStructOffsets is the byte offset of every member of the running kernel's
// struct name, read from its BTF: to check a hand-mirrored layout (SkbContext) or to
// build a context at this kernel's offsets. It skips the test when the kernel has no
// BTF and fails it when BTF has no such struct.
func KernelStructOffsets(tb testing.TB, name string) map[string]uint32 {
	tb.Helper()
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		tb.Skipf("no kernel BTF: %v", err)
	}
	var s *btf.Struct
	if err := spec.TypeByName(name, &s); err != nil {
		tb.Fatalf("kernel BTF: struct %s: %v", name, err)
	}
	offsets := map[string]uint32{}
	for _, m := range s.Members {
		offsets[m.Name] = m.Offset.Bytes()
	}
	return offsets
}

// CheckMapLayouts checks the maps of object obj (its spec) against the Go side: each
// map named in want has the BTF key and value types want names ([2]string{key,
// value}), and each of those types is as many bytes in BTF as goSizes says (the
// binary.Size of its bpf2go type), as are the map's key and value sizes.
func CheckMapLayouts(tb testing.TB, obj string, spec *ebpf.CollectionSpec, want map[string][2]string, goSizes map[string]int) {
	tb.Helper()
	for mapName, kv := range want {
		ms := spec.Maps[mapName]
		if ms == nil {
			tb.Fatalf("%s: no map %s", obj, mapName)
		}
		for i, typ := range []btf.Type{ms.Key, ms.Value} {
			name := kv[i]
			if typ.TypeName() != name {
				tb.Errorf("%s: map %s key/value type is %s, want %s", obj, mapName, typ.TypeName(), name)
			}
			size, err := btf.Sizeof(typ)
			if err != nil {
				tb.Fatal(err)
			}
			if size != goSizes[name] {
				tb.Errorf("%s: %s is %d bytes in BTF, %d in Go", obj, name, size, goSizes[name])
			}
		}
		if int(ms.KeySize) != goSizes[kv[0]] || int(ms.ValueSize) != goSizes[kv[1]] {
			tb.Errorf("%s: map %s key/value sizes %d/%d differ from Go", obj, mapName, ms.KeySize, ms.ValueSize)
		}
	}
}

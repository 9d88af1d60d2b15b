// SPDX-License-Identifier: Apache-2.0

// Package btfnames names the values of the datapath's C enums from the BTF of the
// compiled objects, so Go never keeps a hand-written copy of an enum's names.
package btfnames

import (
	"fmt"
	"strings"
	"sync"

	"github.com/cilium/ebpf/btf"

	"podpath/datapath/bpfobj"
)

// Enum maps the values of one C enum to their names ("DROP_TRUNCATED_IPV4").
type Enum map[uint64]string

// FromTypes reads enum name from types (a CollectionSpec's Types). Values whose name
// starts with "__" (count sentinels) are left out.
func FromTypes(types *btf.Spec, name string) (Enum, error) {
	var enum *btf.Enum
	if err := types.TypeByName(name, &enum); err != nil {
		return nil, fmt.Errorf("read enum %s from BTF: %w", name, err)
	}
	e := make(Enum, len(enum.Values))
	for _, v := range enum.Values {
		if !strings.HasPrefix(v.Name, "__") {
			e[v.Value] = v.Name
		}
	}
	return e, nil
}

var (
	defaultTypes     *btf.Spec
	defaultTypesErr  error
	defaultTypesOnce sync.Once

	cacheMu sync.Mutex
	cache   = map[string]Enum{}
)

// DefaultTypes is the BTF of the committed bpf_lxc object, read once. bpf_lxc
// includes every library header (trace, drop reasons, lb, conntrack), and every
// object that includes a header carries the same enums.
func DefaultTypes() (*btf.Spec, error) {
	defaultTypesOnce.Do(func() {
		spec, err := bpfobj.LoadLxc()
		if err != nil {
			defaultTypesErr = fmt.Errorf("load bpf_lxc spec: %w", err)
			return
		}
		defaultTypes = spec.Types
	})
	return defaultTypes, defaultTypesErr
}

// Default reads enum name from DefaultTypes, once per enum.
func Default(name string) (Enum, error) {
	cacheMu.Lock()
	defer cacheMu.Unlock()
	if e, ok := cache[name]; ok {
		return e, nil
	}
	types, err := DefaultTypes()
	if err != nil {
		return nil, err
	}
	e, err := FromTypes(types, name)
	if err != nil {
		return nil, err
	}
	cache[name] = e
	return e, nil
}

// Short is the C name of v without prefix, lowercased, '_' as '-':
// Short(LB_BACKEND_TERMINATING, "LB_BACKEND_") = "terminating". A value without a
// name (or an enum that cannot be read) is kind(v).
func Short(enum, prefix string, v uint64, kind string) string {
	e, err := Default(enum)
	if name, ok := e[v]; err == nil && ok {
		return short(name, prefix)
	}
	return fmt.Sprintf("%s(%d)", kind, v)
}

// Flags names the bits of f, an enum of single-bit values, as Short does, joined by
// "|" in the order of their values; bits without a name are shown in hex.
func Flags(enum, prefix string, f uint64) string {
	e, _ := Default(enum)
	var s []string
	for bit := uint64(1); bit != 0 && bit <= f; bit <<= 1 {
		if name, ok := e[bit]; ok && f&bit != 0 {
			s = append(s, short(name, prefix))
			f &^= bit
		}
	}
	if f != 0 {
		s = append(s, fmt.Sprintf("%#x", f))
	}
	return strings.Join(s, "|")
}

func short(name, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, prefix)), "_", "-")
}

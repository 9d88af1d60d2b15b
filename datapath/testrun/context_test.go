// SPDX-License-Identifier: Apache-2.0

package testrun

import (
	"reflect"
	"testing"
)

// SkbContext hand-mirrors the head of struct __sk_buff: its offsets are checked
// against the running kernel's BTF.
func TestSkbContextMatchesKernelSkBuff(t *testing.T) {
	offsets := KernelStructOffsets(t, "__sk_buff")
	typ := reflect.TypeOf(SkbContext{})
	for goName, cName := range map[string]string{
		"Mark": "mark", "Priority": "priority", "IngressIfindex": "ingress_ifindex", "Ifindex": "ifindex",
	} {
		f, _ := typ.FieldByName(goName)
		if uint32(f.Offset) != offsets[cName] {
			t.Errorf("%s at offset %d, __sk_buff.%s at %d", goName, f.Offset, cName, offsets[cName])
		}
	}
	if got, want := typ.Size(), uintptr(offsets["ifindex"]+4); got != want {
		t.Errorf("SkbContext is %d bytes, want %d (up to and including ifindex)", got, want)
	}
}

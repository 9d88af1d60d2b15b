// SPDX-License-Identifier: Apache-2.0

package catalogfs

import (
	"slices"
	"strings"
	"testing"
	"testing/fstest"
)

func TestCatalog(t *testing.T) {
	fsys := fstest.MapFS{
		"b.yaml":     {Data: []byte("b: 1\n")},
		"a.yaml":     {Data: []byte("a: 1\n")},
		"notes.txt":  {Data: []byte("not a catalog file")},
		"sub/c.yaml": {Data: []byte("c: 1\n")},
		"dir.yaml/x": {Data: []byte("a directory, not a file")},
	}
	if got, want := Names(fsys), []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("Names = %v, want %v", got, want)
	}
	tests := []struct {
		name, want, err string
	}{
		{"a", "a: 1\n", ""},
		{"c", "", `catalog thing "c": not found (have: a, b)`},
		{"notes", "", `catalog thing "notes": not found`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Read(fsys, "catalog thing", tt.name)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("Read(%q) = %q, %v; want error %q", tt.name, got, err, tt.err)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("Read(%q) = %q, %v; want %q", tt.name, got, err, tt.want)
			}
		})
	}
}

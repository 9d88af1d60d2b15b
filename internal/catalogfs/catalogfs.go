// SPDX-License-Identifier: Apache-2.0

package catalogfs

import (
	"fmt"
	"io/fs"
	"slices"
	"strings"
)

// Names returns the names of the catalog files at the top of fsys, sorted.
func Names(fsys fs.FS) []string {
	entries, _ := fs.ReadDir(fsys, ".")
	var names []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok && !e.IsDir() {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	return names
}

// Read returns the catalog file name of fsys; if there is none, the error names the
// catalog (what, e.g. "catalog topology") and lists the names it has.
func Read(fsys fs.FS, what, name string) ([]byte, error) {
	data, err := fs.ReadFile(fsys, name+".yaml")
	if err != nil {
		return nil, fmt.Errorf("%s %q: not found (have: %s)", what, name, strings.Join(Names(fsys), ", "))
	}
	return data, nil
}

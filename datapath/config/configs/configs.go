// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed *.yaml
var files embed.FS

// Names lists the catalog's cilium-configs, sorted.
func Names() []string {
	entries, _ := files.ReadDir(".")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// Read returns the ConfigMap of catalog config name.
func Read(name string) ([]byte, error) {
	data, err := files.ReadFile(name + ".yaml")
	if err != nil {
		return nil, fmt.Errorf("catalog config %q: not found (have: %s)", name, strings.Join(Names(), ", "))
	}
	return data, nil
}

// Write writes catalog cilium-config name into dir and returns its path: agents read
// their ConfigMap from a file.
func Write(dir, name string) (string, error) {
	data, err := Read(name)
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, "cilium-config-"+name+".yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", fmt.Errorf("write config %s: %w", p, err)
	}
	return p, nil
}

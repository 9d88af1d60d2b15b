// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"embed"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed configs/*.yaml
var configFiles embed.FS

// Configs lists the cilium-config files shipped in the catalog.
func Configs() []string {
	entries, _ := configFiles.ReadDir("configs")
	var names []string
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// WriteConfig writes catalog cilium-config name into dir and returns its path: agents
// read their ConfigMap from a file.
func WriteConfig(dir, name string) (string, error) {
	data, err := configFiles.ReadFile(path.Join("configs", name+".yaml"))
	if err != nil {
		return "", fmt.Errorf("catalog config %q: not found (have: %s)", name, strings.Join(Configs(), ", "))
	}
	p := filepath.Join(dir, "cilium-config-"+name+".yaml")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		return "", fmt.Errorf("write config %s: %w", p, err)
	}
	return p, nil
}

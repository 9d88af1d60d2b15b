// SPDX-License-Identifier: Apache-2.0

package configs

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"

	"podpath/internal/catalogfs"
)

//go:embed *.yaml
var files embed.FS

// Names lists the catalog's cilium-configs, sorted.
func Names() []string { return catalogfs.Names(files) }

// Read returns the ConfigMap of catalog config name.
func Read(name string) ([]byte, error) { return catalogfs.Read(files, "catalog config", name) }

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

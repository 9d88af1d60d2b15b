// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"embed"
	"fmt"
	"sort"
	"strings"
	"sync"
)

// registry holds the catalog: the scenario files of catalog/, read once. Every scenario
// is a file (scenarios written in Go are scenario files built in code, like Generic);
// step kinds are what Go adds (RegisterStep).
var (
	registry    = map[string]*Scenario{}
	catalogOnce sync.Once
)

//go:embed catalog/*.yaml
var catalogFiles embed.FS

// loadCatalog reads the scenario files of catalog/ into the registry. The files are
// part of the program: one that does not parse is a defect (TestCatalog), so it panics.
func loadCatalog() {
	if len(stepKinds) == 0 {
		panic("scenarios: no step kind is registered: import _ \"podpath/scenarios/steps\" (the catalog's scenario files use them)")
	}
	entries, _ := catalogFiles.ReadDir("catalog")
	for _, e := range entries {
		data, _ := catalogFiles.ReadFile("catalog/" + e.Name())
		f, err := ParseScenario(data, "")
		if err != nil {
			panic(fmt.Sprintf("scenarios: catalog/%s:\n%v", e.Name(), err))
		}
		f.Source = "catalog/" + e.Name()
		if want := strings.TrimSuffix(e.Name(), ".yaml"); f.Name != want {
			panic(fmt.Sprintf("scenarios: catalog/%s: name %q, want the file's name %q", e.Name(), f.Name, want))
		}
		registry[f.Name] = f.Scenario()
	}
}

// CatalogFile returns the text of catalog scenario name's file (false when unknown).
func CatalogFile(name string) ([]byte, bool) {
	data, err := catalogFiles.ReadFile("catalog/" + name + ".yaml")
	return data, err == nil
}

// Lookup returns a catalog scenario by name.
func Lookup(name string) (*Scenario, error) {
	catalogOnce.Do(loadCatalog)
	s, ok := registry[name]
	if !ok {
		return nil, fmt.Errorf("unknown scenario %q (have: %s)", name, strings.Join(Names(), ", "))
	}
	return s, nil
}

// Names lists the catalog's scenarios.
func Names() []string {
	catalogOnce.Do(loadCatalog)
	var out []string
	for n := range registry {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

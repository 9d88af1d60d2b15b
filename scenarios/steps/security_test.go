// SPDX-License-Identifier: Apache-2.0

package steps

import (
	"reflect"
	"slices"
	"strings"
	"testing"

	"podpath/datapath/trace"
	"podpath/scenarios"
)

// Every kind names a drop reason and a hook the datapath really has (read from the
// BPF objects' BTF), so a renamed reason fails here and not as a puzzling check.
func TestForgedKindsNameRealReasons(t *testing.T) {
	names, err := trace.DefaultNames()
	if err != nil {
		t.Fatal(err)
	}
	points := map[string]bool{}
	for _, p := range names.ObsPoints {
		points[p] = true
	}
	for kind, fk := range forgedKinds {
		if fk.reason != "" {
			if _, err := names.DropReasonCode(fk.reason); err != nil {
				t.Errorf("%s: %v", kind, err)
			}
		} else if _, ok := forgedLetThrough[kind]; !ok {
			t.Errorf("%s: expects any drop but is not a documented gap: name its reason", kind)
		}
		if !points[fk.point] {
			t.Errorf("%s: hook %s is no obs_point", kind, fk.point)
		}
		if (fk.tunnel != "") != (strings.HasPrefix(kind, "vxlan-") || strings.HasPrefix(kind, "geneve-")) ||
			fk.tunnel != "" && !strings.HasPrefix(kind, fk.tunnel+"-") {
			t.Errorf("%s: tunnel %q does not match its name", kind, fk.tunnel)
		}
	}
	for kind := range forgedLetThrough {
		if _, ok := forgedKinds[kind]; !ok {
			t.Errorf("documented gap %s is no kind", kind)
		}
	}
}

// The kinds parameter accepts exactly the kinds there are.
func TestForgedKindsOneOf(t *testing.T) {
	f, ok := reflect.TypeFor[forgedWith]().FieldByName("Kinds")
	if !ok {
		t.Fatal("no Kinds field")
	}
	if got := f.Tag.Get("oneOf"); got != forgedKindNames {
		t.Errorf("oneOf tag of kinds:\n  %s\nthe kinds:\n  %s", got, forgedKindNames)
	}
}

// Every kind the datapath drops today is proven in a catalog scenario labelled
// security; the kinds it lets through are documented gaps.
func TestForgedCatalogCoverage(t *testing.T) {
	covered := map[string]string{}
	for _, name := range scenarios.Names() {
		data, _ := scenarios.CatalogFile(name)
		f, err := scenarios.ParseScenario(data, "")
		if err != nil {
			t.Fatalf("catalog %s: %v", name, err)
		}
		for _, st := range f.Stages {
			for _, step := range st.Steps {
				if step.Kind != "forged-packets" {
					continue
				}
				if !slices.Contains(f.Labels, "security") {
					t.Errorf("catalog %s sends forged packets without the label security", name)
				}
				var kinds []string
				switch w := step.With.(type) {
				case *forgedWith:
					kinds = w.Kinds
				case forgedWith:
					kinds = w.Kinds
				default:
					t.Fatalf("with of forged-packets is %T", step.With)
				}
				for _, k := range kinds {
					if why, ok := forgedLetThrough[k]; ok {
						t.Errorf("catalog %s: %s is a documented gap (%s): it cannot pass", name, k, why)
					}
					covered[k] = name
				}
			}
		}
	}
	for kind := range forgedKinds {
		if _, gap := forgedLetThrough[kind]; !gap && covered[kind] == "" {
			t.Errorf("kind %s is in no catalog scenario", kind)
		}
	}
}

func TestForgedWithValidation(t *testing.T) {
	const head = `name: s
description: d
labels: [security]
stages:
  - topology: l2-services-agent
    config: services-snat
    services:
      - {name: web, type: NodePort, clusterIP: 10.96.0.10, port: 80, protocol: TCP, nodePort: 30080, backends: [{pod: pod2a, port: 7777}]}
      - {name: dns, type: ClusterIP, clusterIP: 10.96.0.11, port: 53, protocol: UDP, backends: [{pod: pod2a, port: 7777}]}
    steps:
      - check: forged-packets
        with: `
	for _, tc := range []struct {
		name, with, want string
	}{
		{"ok", `{from: ext, via: node1, service: web, kinds: [bad-ihl, vxlan-unknown-peer]}`, ""},
		{"unknown kind", `{from: ext, via: node1, kinds: [vxlan-bogus]}`, `vxlan-bogus`},
		{"pod of another node", `{from: ext, via: node1, pod: pod2a, kinds: [vxlan-vni-zero]}`, "pod pod2a is on node2"},
		{"nodeport kind without service", `{from: ext, via: node1, kinds: [truncated-tcp]}`, "kind truncated-tcp aims at a NodePort"},
		{"service without nodePort", `{from: ext, via: node1, service: dns, kinds: [bad-ihl]}`, "want a TCP service with a nodePort"},
		{"peer is via", `{from: ext, via: node1, peer: node1, kinds: [vxlan-vni-zero]}`, "want a node other than via"},
		{"unknown node", `{from: ext, via: node9, kinds: [vxlan-vni-zero]}`, "node9"},
		{"no kinds", `{from: ext, via: node1}`, "kinds"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := scenarios.ParseScenario([]byte(head+tc.with+"\n"), "")
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want valid, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

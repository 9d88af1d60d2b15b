// SPDX-License-Identifier: Apache-2.0

package scenarios

import (
	"context"
	"fmt"

	"go.yaml.in/yaml/v3"

	"podpath/datapath/agent"
	"podpath/internal/strictyaml"
	"podpath/topology/agentrun"
)

// ObjectSpec is a Kubernetes object written inline in a stage, as `kubectl apply` takes
// it; the agents of every node program it before the first step. K is its kind: what it
// must parse as when the file is read (so a bad object fails there, with its field path,
// not at run time) and which agent call programs it.
type ObjectSpec[K objectKind] struct {
	// Name is the object's metadata.name.
	Name string
	// YAML is the object as written.
	YAML string
}

// objectKind is one kind of inline object (a zero-size type: its methods are the kind).
type objectKind interface {
	// parse checks the object and returns its metadata.name.
	parse(yaml []byte) (name string, err error)
	// upsert gives the object to every agent of the stage.
	upsert(ctx context.Context, a *agentrun.Agents, p agent.Policy) error
	// field is the stage key the objects are listed under, for error messages.
	field() string
}

// DecodeYAML keeps the object's YAML and checks it parses as its kind (errors name the
// field path and the accepted values).
func (o *ObjectSpec[K]) DecodeYAML(d *strictyaml.Decoder, n *yaml.Node, path string) {
	out, err := yaml.Marshal(n)
	if err != nil {
		d.Fail(n, path, "%v", err)
		return
	}
	var kind K
	name, err := kind.parse(out)
	if err != nil {
		d.Fail(n, path, "%v", err)
		return
	}
	o.Name, o.YAML = name, string(out)
}

// programObjects gives the stage's inline objects of one kind to its agents.
func programObjects[K objectKind](ctx context.Context, s *Stage, specs []ObjectSpec[K]) error {
	if len(specs) == 0 {
		return nil
	}
	a, err := s.Agents()
	if err != nil {
		return err
	}
	var kind K
	for i, o := range specs {
		if err := kind.upsert(ctx, a, agent.Policy{Name: o.Name, YAML: o.YAML}); err != nil {
			return fmt.Errorf("%s.%s[%d] (%s): %w", s.Spec.Path, kind.field(), i, o.Name, err)
		}
	}
	return nil
}
